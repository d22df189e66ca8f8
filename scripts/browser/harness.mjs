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

/** `call(method, path, body, token)` on `${base}/api/v1`: JSON in and out;
 * throws on an error status. */
export function apiClient(base) {
  return async function call(method, path, body, token) {
    const resp = await fetch(`${base}/api/v1${path}`, {
      method,
      headers: {
        ...(body ? { "content-type": "application/json" } : {}),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await resp.text();
    if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
}

/** A new host with a one-step recipe and a live session:
 * {user, token, session} (`user` is the sign-up answer). */
export async function liveSession(call, { title, recipe = "Omelette", prefix = "br" }) {
  const user = await call("POST", "/auth/register", {
    username: prefix + Math.random().toString(36).slice(2, 12), password: "browser-password",
  });
  const token = user.access_token;
  const made = await call("POST", "/recipes", { title: recipe, steps: [{ text: "Whisk", duration_s: 60 }] }, token);
  const session = await call("POST", "/sessions", { recipe_id: made.id, title }, token);
  await call("POST", `/sessions/${session.id}/start`, {}, token);
  return { user, token, session };
}
