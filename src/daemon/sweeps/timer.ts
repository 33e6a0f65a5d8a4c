/**
 * Runs a sweep at each time a cron schedule names (`--sweep-schedule`).
 *
 * - Node timers overflow past 2^31-1 ms (~24.8 days) and fire at once; a
 *   longer wait is armed in capped pieces, re-checking the clock each time.
 * - A timer that fires early (capped piece, clock jump) just re-arms for the
 *   same target; one that fires late runs once, then aims at the next time
 *   after now, so a suspended laptop does not replay missed sweeps.
 * - A sweep still running at the next time is joined, not doubled (Sweeper.run).
 * - Timers are unref'd: the schedule never keeps the process alive.
 */
import { nextRun, parseCron, type CronSpec } from '../../core/util/cron.js';
import type { Logger } from '../../core/util/logger.js';
import type { SweepReport } from '../../core/protocol/rpc.js';

export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface TimerApi {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: TimerApi = {
  setTimeout: (fn, ms) => {
    const h = setTimeout(fn, ms);
    h.unref();
    return h;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface SweepTimerOptions {
  schedule: string;
  sweeper: { run(): Promise<SweepReport | undefined> };
  logger: Logger;
  now?: () => Date;
  /** Tests inject fake timers; default the real (unref'd) ones. */
  timers?: TimerApi;
}

export class SweepTimer {
  private spec: CronSpec;
  private readonly sweeper: { run(): Promise<SweepReport | undefined> };
  private readonly logger: Logger;
  private readonly now: () => Date;
  private readonly timers: TimerApi;
  private handle: unknown;
  private target: Date | undefined;
  private started = false;

  /** Throws E_BAD_REQUEST (with a hint) for a bad schedule. */
  constructor(o: SweepTimerOptions) {
    this.spec = parseCron(o.schedule);
    this.sweeper = o.sweeper;
    this.logger = o.logger;
    this.now = o.now ?? (() => new Date());
    this.timers = o.timers ?? realTimers;
  }

  get schedule(): string {
    return this.spec.expr;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.arm(nextRun(this.spec, this.now()));
  }

  stop(): void {
    this.started = false;
    this.clear();
    this.target = undefined;
  }

  /** Replace the schedule (SIGHUP reload). A bad one throws and the old one stays. */
  setSchedule(expr: string): void {
    const spec = parseCron(expr);
    this.spec = spec;
    this.logger.info('sweep schedule set', { schedule: spec.expr });
    if (this.started) {
      this.clear();
      this.arm(nextRun(spec, this.now()));
    }
  }

  /** When the next scheduled sweep will start (undefined when stopped). */
  nextRunAt(): Date | undefined {
    return this.target;
  }

  private clear(): void {
    if (this.handle !== undefined) this.timers.clearTimeout(this.handle);
    this.handle = undefined;
  }

  private arm(target: Date): void {
    this.target = target;
    const delay = Math.max(0, target.getTime() - this.now().getTime());
    this.handle = this.timers.setTimeout(() => this.fire(), Math.min(delay, MAX_TIMER_MS));
    this.logger.debug('next sweep armed', { at: target.toISOString(), inMs: delay });
  }

  private fire(): void {
    this.handle = undefined;
    if (!this.started || !this.target) return;
    const now = this.now();
    if (now.getTime() < this.target.getTime()) {
      this.arm(this.target);
      return;
    }
    const due = this.target;
    this.logger.info('scheduled sweep starting', { schedule: this.spec.expr, due: due.toISOString() });
    Promise.resolve().then(() => this.sweeper.run()).then(
      // undefined: skipped (in a cluster, another daemon holds the sweep lease).
      (r) => r && this.logger.debug('scheduled sweep ended', { id: r.id }),
      (e: unknown) => this.logger.error('scheduled sweep failed', { error: String(e) }),
    );
    // Next time strictly after both the slot just served and now.
    this.arm(nextRun(this.spec, now.getTime() > due.getTime() ? now : due));
  }
}
