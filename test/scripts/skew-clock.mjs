/**
 * Preloaded into a spawned daemon (`node --import`): moves this process's
 * wall clock so that the next whole minute is MC_TEST_CLOCK_LEAD_MS away
 * (default 3 s). A cron schedule of "* * * * *" then fires within seconds
 * instead of up to a minute, while the daemon's own timer logic runs as
 * shipped. Monotonic time (performance.now, timers) is untouched.
 */
const lead = Number(process.env.MC_TEST_CLOCK_LEAD_MS ?? 3000);
const RealDate = Date;
const real = RealDate.now();
const offset = (60_000 - (real % 60_000)) - lead;

class SkewedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + offset);
    else super(...args);
  }
  static now() {
    return RealDate.now() + offset;
  }
}
globalThis.Date = SkewedDate;
