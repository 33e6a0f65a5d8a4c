/**
 * Time-keeping helpers of the scheduler: the clock that wakes queued jobs at
 * their nextRetryAt (and ends a disk-full pause), and the loop that makes a
 * finished download `done` only after the index flushed.
 */

/**
 * Queued jobs waiting for a time, plus a global pause. One timer for all,
 * armed for the earliest; `onDue` gets the ids whose time has come (possibly
 * none, when only the pause ended).
 */
export class RetryClock {
  private readonly due = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private pausedUntil = 0;
  private stopped = false;

  constructor(
    private readonly now: () => number,
    private readonly onDue: (ids: string[]) => void,
  ) {}

  has(id: string): boolean {
    return this.due.has(id);
  }

  set(id: string, at: number): void {
    this.due.set(id, at);
    this.arm();
  }

  delete(id: string): void {
    this.due.delete(id);
  }

  /** Stop all dispatch until `until` (at least); returns the pause's end. */
  pause(until: number): number {
    this.pausedUntil = Math.max(this.pausedUntil, until);
    this.arm();
    return this.pausedUntil;
  }

  get paused(): boolean {
    return this.pausedUntil > this.now();
  }

  private arm(): void {
    let next = Infinity;
    for (const at of this.due.values()) next = Math.min(next, at);
    if (this.paused) next = Math.min(next, this.pausedUntil);
    if (next === this.timerAt && this.timer) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = next;
    if (next === Infinity || this.stopped) return;
    // Not unref'd: queued work waiting for its time is a reason to stay alive (stop() clears it).
    this.timer = setTimeout(() => this.fire(), Math.max(0, next - this.now()));
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.now();
    const ids: string[] = [];
    for (const [id, at] of this.due) {
      if (at > now) continue;
      this.due.delete(id);
      ids.push(id);
    }
    this.arm();
    this.onDue(ids);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }
}

/**
 * Finished downloads wait here for one `flush()` of the index; `settle`
 * then gets the batch and the flush error, if any. Items added while a
 * flush runs share the next one, so there is at most one flush in flight.
 */
export class CommitLoop<T> {
  private pending: T[] = [];
  private loop: Promise<void> | undefined;

  constructor(
    private readonly flush: () => Promise<void> | undefined,
    private readonly settle: (batch: T[], err: unknown) => void,
  ) {}

  add(item: T): Promise<void> {
    this.pending.push(item);
    this.loop ??= this.run();
    return this.loop;
  }

  /** Resolves once nothing waits for a flush. */
  async idle(): Promise<void> {
    await this.loop;
  }

  private async run(): Promise<void> {
    // Yield first, so `loop` is set before the loop can end and clear it.
    await null;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0);
      let err: unknown;
      try {
        await this.flush();
      } catch (e) {
        err = e ?? new Error('index flush failed');
      }
      this.settle(batch, err);
    }
    this.loop = undefined;
  }
}
