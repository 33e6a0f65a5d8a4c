/**
 * `--sweep-rate` throttles a sweep only while downloads are running: an idle
 * daemon re-hashes at full disk speed, a busy one leaves the disk and CPU to
 * the downloads.
 */
interface ActiveSource {
  active(): readonly unknown[];
}
interface RateTarget {
  setOptions(o: { rateMBps?: number }): void;
}

export class IdleAwareSweepRate {
  private configured: number;
  private applied: number | undefined;
  private source?: ActiveSource;
  private target?: RateTarget;
  private pending = false;
  private timer?: NodeJS.Timeout;

  constructor(rateMBps: number) {
    this.configured = rateMBps;
  }

  /** The rate the sweep should run at now: the configured one while downloads run, else unlimited (0). */
  current(): number {
    return this.source && this.source.active().length > 0 ? this.configured : 0;
  }

  attach(source: ActiveSource, target: RateTarget, checkEveryMs = 1000): void {
    this.source = source;
    this.target = target;
    this.apply();
    // Events drive it; the timer only catches a state change no event announced.
    this.timer = setInterval(() => this.apply(), checkEveryMs);
    this.timer.unref();
  }

  /** SIGHUP changed --sweep-rate. */
  configure(rateMBps: number): void {
    this.configured = rateMBps;
    this.applied = undefined;
    this.apply();
  }

  /** Something changed in the scheduler; look once the current turn has settled. */
  poke(): void {
    if (this.pending) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      this.apply();
    });
  }

  private apply(): void {
    if (!this.target) return;
    const r = this.current();
    if (r === this.applied) return;
    this.applied = r;
    this.target.setOptions({ rateMBps: r });
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
