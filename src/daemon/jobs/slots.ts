/**
 * Download slots: the global and per-host limits, and the rule that keeps
 * stalled transfers from starving the rest.
 *
 * Per-host limits are keyed by hostname (not host:port): two ports of one
 * machine share its limit.
 *
 * A running download is "lagging" when it received fewer than
 * `minBytesPerSec` over the last `windowMs` (no headers yet counts as zero).
 * Lagging downloads keep running but do not count against the limits, up to
 * as many again as the limit: so at most 2 x concurrency transfers are open,
 * and a slowloris origin (or a handful of them) cannot hold every slot while
 * fresh work waits. A lagging transfer that speeds up counts again.
 */

export interface SlotHolder {
  readonly host: string;
  /** Bytes received so far. */
  bytes(): number;
  lagging: boolean;
  /** Start of the current measuring window. */
  markAt: number;
  markBytes: number;
}

export interface LagOptions {
  /** Measuring window; 0 turns lag detection off (default 3000 ms). */
  windowMs: number;
  /** Below this rate over a window a transfer is lagging (default 2048 B/s). */
  minBytesPerSec: number;
}

export const LAG_DEFAULTS: Readonly<LagOptions> = Object.freeze({ windowMs: 3000, minBytesPerSec: 2048 });

interface Count {
  running: number;
  lagging: number;
}

export class Slots {
  private running = 0;
  private lagging = 0;
  private readonly hosts = new Map<string, Count>();

  constructor(
    public concurrency: number,
    public perHost: number,
    readonly lag: Readonly<LagOptions>,
  ) {}

  /** Whether one more download may start now (globally). */
  hasRoom(): boolean {
    return this.running - Math.min(this.lagging, this.concurrency) < this.concurrency;
  }

  /** Whether one more download for `host` may start now. */
  hasRoomFor(host: string): boolean {
    const c = this.hosts.get(host);
    return !c || c.running - Math.min(c.lagging, this.perHost) < this.perHost;
  }

  take(h: SlotHolder, now: number): void {
    h.lagging = false;
    h.markAt = now;
    h.markBytes = h.bytes();
    this.running++;
    const c = this.hosts.get(h.host);
    if (c) c.running++;
    else this.hosts.set(h.host, { running: 1, lagging: 0 });
  }

  release(h: SlotHolder): void {
    this.running--;
    if (h.lagging) this.lagging--;
    const c = this.hosts.get(h.host);
    if (!c) return;
    c.running--;
    if (h.lagging) c.lagging--;
    if (c.running <= 0) this.hosts.delete(h.host);
  }

  /**
   * Close every window that has run its length and re-classify its holder.
   * Returns true when some holder started lagging (a slot may have freed up).
   */
  sample(holders: Iterable<SlotHolder>, now: number): boolean {
    if (this.lag.windowMs <= 0) return false;
    let freed = false;
    for (const h of holders) {
      const span = now - h.markAt;
      if (span < this.lag.windowMs) continue;
      const bytes = h.bytes();
      const lagging = ((bytes - h.markBytes) * 1000) / span < this.lag.minBytesPerSec;
      h.markAt = now;
      h.markBytes = bytes;
      if (lagging === h.lagging) continue;
      h.lagging = lagging;
      const d = lagging ? 1 : -1;
      this.lagging += d;
      const c = this.hosts.get(h.host);
      if (c) c.lagging += d;
      if (lagging) freed = true;
    }
    return freed;
  }
}

/** The per-host key of a URL: its hostname, so two ports of one host share a limit. */
export function hostKeyOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return '';
  }
}
