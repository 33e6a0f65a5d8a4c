import t from 'tap';
import { SweepTimer, MAX_TIMER_MS, type TimerApi } from '../../../src/daemon/sweeps/timer.js';
import { silentLogger } from '../../../src/core/util/logger.js';
import type { SweepReport } from '../../../src/core/protocol/rpc.js';

/** A fake clock and timer queue: time only moves when the test says so. */
function fakeTime(start: Date): { now: () => Date; timers: TimerApi; advance: (ms: number) => void; armed: () => number[]; set: (d: Date) => void } {
  let now = start.getTime();
  let seq = 0;
  const queue = new Map<number, { at: number; fn: () => void; delay: number }>();
  return {
    now: () => new Date(now),
    timers: {
      setTimeout: (fn, ms) => {
        const id = ++seq;
        queue.set(id, { at: now + ms, fn, delay: ms });
        return id;
      },
      clearTimeout: (h) => void queue.delete(h as number),
    },
    /** Move the clock forward, firing due timers in order (like a real event loop). */
    advance: (ms) => {
      const end = now + ms;
      for (;;) {
        const due = [...queue.entries()].filter(([, v]) => v.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        queue.delete(due[0]);
        now = Math.max(now, due[1].at);
        due[1].fn();
      }
      now = end;
    },
    armed: () => [...queue.values()].map((v) => v.delay),
    /** Jump the wall clock without firing anything (suspend, NTP step). */
    set: (d) => {
      now = d.getTime();
    },
  };
}

function fakeSweeper(): { run: () => Promise<SweepReport>; runs: Date[]; clock?: () => Date } {
  const s = {
    runs: [] as Date[],
    clock: undefined as (() => Date) | undefined,
    run: async (): Promise<SweepReport> => {
      s.runs.push(s.clock!());
      return { id: String(s.runs.length) } as SweepReport;
    },
  };
  return s;
}

const L = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0): Date => new Date(y, mo - 1, d, h, mi, s);

t.test('runs the sweeper at each scheduled time and reports the next one', async (t) => {
  const ft = fakeTime(L(2026, 5, 1, 2, 59, 30));
  const sw = fakeSweeper();
  sw.clock = ft.now;
  const timer = new SweepTimer({ schedule: '0 3 * * *', sweeper: sw, logger: silentLogger, now: ft.now, timers: ft.timers });
  t.equal(timer.nextRunAt(), undefined, 'nothing armed before start');
  timer.start();
  timer.start(); // idempotent
  t.same(timer.nextRunAt(), L(2026, 5, 1, 3, 0));
  t.same(ft.armed(), [30_000]);
  ft.advance(29_000);
  t.equal(sw.runs.length, 0);
  ft.advance(1_000);
  await Promise.resolve();
  await Promise.resolve();
  t.same(sw.runs, [L(2026, 5, 1, 3, 0)], 'ran at 03:00');
  t.same(timer.nextRunAt(), L(2026, 5, 2, 3, 0));
  ft.advance(24 * 3600_000);
  await new Promise((r) => setImmediate(r));
  t.same(sw.runs, [L(2026, 5, 1, 3, 0), L(2026, 5, 2, 3, 0)]);
  timer.stop();
  t.equal(timer.nextRunAt(), undefined);
  t.same(ft.armed(), [], 'stop clears the timer');
});

t.test('long waits are armed in pieces of at most 2^31-1 ms', async (t) => {
  const ft = fakeTime(L(2026, 1, 2, 0, 0));
  const sw = fakeSweeper();
  sw.clock = ft.now;
  // yearly: ~364 days away, far beyond 24.8 days
  const timer = new SweepTimer({ schedule: '@yearly', sweeper: sw, logger: silentLogger, now: ft.now, timers: ft.timers });
  timer.start();
  t.same(ft.armed(), [MAX_TIMER_MS]);
  let pieces = 0;
  while (sw.runs.length === 0 && pieces < 30) {
    ft.advance(ft.armed()[0]);
    await new Promise((r) => setImmediate(r));
    pieces++;
  }
  t.same(sw.runs, [L(2027, 1, 1, 0, 0)], 'ran exactly at the new year');
  t.ok(pieces >= 13, `re-armed ${pieces} times`);
  t.ok(ft.armed().every((d) => d <= MAX_TIMER_MS));
  timer.stop();
});

t.test('an early wake re-arms; a late one runs once and skips missed slots', async (t) => {
  const ft = fakeTime(L(2026, 5, 1, 10, 0, 10));
  const sw = fakeSweeper();
  sw.clock = ft.now;
  const timer = new SweepTimer({ schedule: '*/5 * * * *', sweeper: sw, logger: silentLogger, now: ft.now, timers: ft.timers });
  timer.start();
  t.same(timer.nextRunAt(), L(2026, 5, 1, 10, 5));
  // The clock stepped back 2 minutes (NTP): the timer fires "on time" but the target is not reached yet.
  ft.set(L(2026, 5, 1, 9, 58, 10));
  ft.advance(ft.armed()[0]);
  await new Promise((r) => setImmediate(r));
  t.same(sw.runs, [], 'no early run');
  t.same(timer.nextRunAt(), L(2026, 5, 1, 10, 5), 'same target');
  // Suspended for an hour: wakes late, runs once, next slot is after now.
  ft.set(L(2026, 5, 1, 11, 3));
  ft.advance(0); // the overdue timer fires as soon as the process runs again
  await new Promise((r) => setImmediate(r));
  t.equal(sw.runs.length, 1, 'one catch-up run, not twelve');
  t.same(timer.nextRunAt(), L(2026, 5, 1, 11, 5));
  timer.stop();
});

t.test('setSchedule re-arms; a bad schedule throws and keeps the old one', async (t) => {
  const ft = fakeTime(L(2026, 5, 1, 10, 0));
  const sw = fakeSweeper();
  sw.clock = ft.now;
  t.throws(() => new SweepTimer({ schedule: 'every night', sweeper: sw, logger: silentLogger }), { code: 'E_BAD_REQUEST', message: /expected 5 fields/ });
  const timer = new SweepTimer({ schedule: '0 3 * * *', sweeper: sw, logger: silentLogger, now: ft.now, timers: ft.timers });
  timer.setSchedule('0 4 * * *'); // before start: nothing armed
  t.same(ft.armed(), []);
  timer.start();
  t.same(timer.nextRunAt(), L(2026, 5, 2, 4, 0));
  timer.setSchedule('30 10 * * *');
  t.same(timer.nextRunAt(), L(2026, 5, 1, 10, 30));
  t.equal(ft.armed().length, 1, 'old timer cleared');
  t.throws(() => timer.setSchedule('61 * * * *'), { code: 'E_BAD_REQUEST' });
  t.equal(timer.schedule, '30 10 * * *');
  t.same(timer.nextRunAt(), L(2026, 5, 1, 10, 30));
  timer.stop();
});

t.test('a failing sweep is logged and the schedule goes on', async (t) => {
  const ft = fakeTime(L(2026, 5, 1, 10, 0, 30));
  const errors: string[] = [];
  const logger = { ...silentLogger, error: (m: string) => void errors.push(m) };
  let calls = 0;
  const sweeper = {
    run: async (): Promise<SweepReport> => {
      calls++;
      throw new Error('disk on fire');
    },
  };
  const timer = new SweepTimer({ schedule: '* * * * *', sweeper, logger, now: ft.now, timers: ft.timers });
  timer.start();
  ft.advance(30_000);
  await new Promise((r) => setImmediate(r));
  ft.advance(60_000);
  await new Promise((r) => setImmediate(r));
  t.equal(calls, 2);
  t.same(errors, ['scheduled sweep failed', 'scheduled sweep failed']);
  timer.stop();
});

t.test('real timers (unref-ed) fire', async (t) => {
  // A clock 100 ms before a minute boundary, running at real speed.
  const offset = L(2026, 5, 1, 10, 0, 59).getTime() + 900 - Date.now();
  const now = (): Date => new Date(Date.now() + offset);
  let ran = 0;
  const timer = new SweepTimer({
    schedule: '* * * * *',
    sweeper: { run: async () => ({ id: String(++ran) }) as SweepReport },
    logger: silentLogger,
    now,
  });
  timer.start();
  const started = Date.now();
  // keep the loop alive ourselves: the timer is unref'd
  await new Promise<void>((resolve, reject) => {
    const iv = setInterval(() => {
      if (ran > 0) {
        clearInterval(iv);
        resolve();
      } else if (Date.now() - started > 5000) {
        clearInterval(iv);
        reject(new Error('timer did not fire'));
      }
    }, 10);
  });
  t.equal(ran, 1);
  t.same(timer.nextRunAt(), L(2026, 5, 1, 10, 2));
  timer.stop();
});
