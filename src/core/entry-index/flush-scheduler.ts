/**
 * When the index flushes: changes are coalesced into one flush a delay after
 * the first of them, flush() runs one at once (later calls join a flush that
 * has not started yet), and a failed flush is retried with backoff. What a
 * flush writes is the caller's `write` (IndexDb: meta.json and one journal
 * batch); it runs inside the journal's serial queue, so flushes never overlap
 * each other, a rotation or a rebuild.
 */
import type { Logger } from '../util/logger.js';

/** Upper bound of the adaptive flush delay (see changed()). */
const MAX_ADAPTIVE_DELAY_MS = 1000;

export interface FlushSchedulerOptions {
  delayMs: number;
  /** Runs `fn` after every journal operation queued before it. */
  serial: (fn: () => Promise<void>) => Promise<void>;
  /** One flush. */
  write: () => Promise<void>;
  /** Duration of the last flush that wrote something. */
  lastFlushMs: () => number;
  logger: Logger;
}

export class FlushScheduler {
  private timer: NodeJS.Timeout | undefined;
  private retryDelayMs = 0;
  /** A flush queued behind the running journal operation; later flush() calls join it. */
  private queued: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: FlushSchedulerOptions) {}

  /** A change was made in memory: flush it soon. */
  changed(): void {
    // Adaptive coalescing: wait at least 4x as long as the last flush took, so
    // a slow disk (fdatasync stuck behind other I/O) is not asked to sync
    // more than ~20% of the time. A journal append is cheap, so this is
    // normally delayMs. flush() is always immediate.
    this.schedule(Math.max(this.o.delayMs, Math.min(MAX_ADAPTIVE_DELAY_MS, this.o.lastFlushMs() * 4)));
  }

  /** Flush now (or join the flush already queued). */
  flush(): Promise<void> {
    this.clearTimer();
    if (this.queued) return this.queued;
    const run = this.o.serial(() => {
      this.queued = undefined;
      return this.o.write();
    });
    this.queued = run;
    return run;
  }

  /** The flush failed: retry with backoff (1 s doubling up to 30 s). */
  failed(): void {
    this.retryDelayMs = Math.min(30_000, Math.max(1000, this.retryDelayMs * 2));
    this.schedule(this.retryDelayMs, true);
  }

  succeeded(): void {
    this.retryDelayMs = 0;
  }

  /** No timer from now on (close). */
  stop(): void {
    this.stopped = true;
    this.clearTimer();
  }

  /**
   * Arm the flush timer. The normal timer keeps the process alive so a short
   * script's last records reach disk; a retry after a failure does not (a
   * full disk must not keep a finished process running forever).
   */
  private schedule(delayMs: number, retry = false): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush().catch((e: unknown) => {
        this.o.logger.error('index flush failed; will retry', { error: (e as Error)?.message ?? String(e) });
      });
    }, delayMs);
    if (retry) this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
