// What every browser suite counts and waits with: named checks that print
// `ok`/`FAIL`, a sleep, a poll, and the closing line test.sh adds up.

let passed = 0;
let failed = 0;

/** Records one check and prints it. */
export function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name} ${ok ? "" : detail}`);
}

/** Whether any check failed so far. */
export const anyFailed = () => failed > 0;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something truthy; returns it (or the last value). */
export async function waitFor(fn, ms = 10000, every = 100) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(every);
  }
  return last;
}

/** Prints "N passed, M failed" and exits with the verdict. */
export function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
