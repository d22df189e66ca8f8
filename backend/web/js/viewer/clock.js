// The server's clock as seen from here: the countdown is derived from an
// absolute server deadline, so a local clock that is off would show the
// wrong time left.

const CLOCK_SAMPLE_TTL_MS = 60000;

// offset = server clock - local clock. A frame's `server_time_ms` minus its
// local arrival time is short by the one-way delay, so the largest recent
// sample is the least delayed one; old samples expire so drift is followed.
export const clock = {
  offset: 0,
  at: 0,
  observe(serverTimeMs) {
    if (typeof serverTimeMs !== "number") return;
    const now = Date.now();
    const sample = serverTimeMs - now;
    if (!this.at || sample > this.offset || now - this.at > CLOCK_SAMPLE_TTL_MS) {
      this.offset = sample;
      this.at = now;
    }
  },
  now() {
    return Date.now() + this.offset;
  },
};
