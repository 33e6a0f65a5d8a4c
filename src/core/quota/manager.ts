/**
 * The quota at run time, for one MediaCache: uses (lastUsedAt, coalesced),
 * reservations for downloads about to commit, holds on files being read,
 * free-space checks, and eviction runs (one at a time). Policy is in
 * quota.ts, the crash-safe steps in evict.ts.
 *
 * Invariant: committed bytes + reserved bytes stay within maxSize after
 * every eviction run, unless pinned (or busy) content alone is over it; that
 * state is logged once per occurrence and shown in `quota.blockedByPinned`.
 */
import fs from 'node:fs';
import type { IndexDb } from '../entry-index/index-db.js';
import type { KeyedMutex } from '../util/async-locks.js';
import type { Logger } from '../util/logger.js';
import { MediaCacheError } from '../errors.js';
import { evict, type EvictorDeps } from './evict.js';
import {
  bytesToFree,
  bytesToFreeSoon,
  exceedsQuota,
  lowWater,
  quotaEnabled,
  storedLastUsed,
  useWorthWriting,
  type QuotaLimits,
} from './policy.js';
import type { QuotaStatus, StoredRecord, TypeStats } from '../types.js';

/** Uses kept only in memory before they are all written at once. */
const TOUCH_MAP_MAX = 10_000;
/** A statfs result is reused for this long (plus the bytes reserved since). */
const FREE_CHECK_MS = 1000;

export interface QuotaManagerDeps {
  /**
   * The embedded index; absent in database (cluster) mode, where quotas are
   * refused at open and uses are not recorded.
   */
  index: IndexDb | undefined;
  cacheDir: string;
  logger: Logger;
  now: () => number;
  lock: KeyedMutex;
  limits: QuotaLimits;
  /** Test hook passed to evict(). */
  afterMark?: EvictorDeps['afterMark'];
}

export class QuotaManager {
  readonly limits: QuotaLimits;
  private readonly touches = new Map<string, number>();
  private readonly holds = new Map<string, number>();
  private reserved = 0;
  private running: Promise<number> | undefined;
  private free: { bytes: number; at: number } | undefined;
  private blocked = false;
  private unmet = false;
  private readonly evictedSinceStart: TypeStats = { count: 0, size: 0 };
  private lastEvictionAt: string | undefined;

  constructor(private readonly d: QuotaManagerDeps) {
    this.limits = Object.freeze({ ...d.limits });
  }

  /** The index limits are enforced on (only set when enabled: MediaCache refuses limits without an embedded index). */
  private get embedded(): IndexDb {
    if (!this.d.index) throw new MediaCacheError('E_BAD_REQUEST', 'cache size limits need the embedded index');
    return this.d.index;
  }

  get enabled(): boolean {
    return quotaEnabled(this.limits);
  }

  /** When `r` was last used, uses not yet written included. */
  lastUsed(r: StoredRecord): number {
    return Math.max(this.touches.get(r.md5) ?? -Infinity, storedLastUsed(r));
  }

  /** A use (found, hit, verified): exact in memory, written to the index at most once per USE_WRITE_GRANULARITY_MS. */
  touch(md5: string): void {
    const now = this.d.now();
    if (!this.d.index) return;
    this.touches.set(md5, now);
    const cur = this.d.index.get(md5);
    if (cur && cur.evictedAt === undefined && useWorthWriting(storedLastUsed(cur), now)) {
      this.d.index.put({ ...cur, lastUsedAt: new Date(now).toISOString() });
    }
    if (this.touches.size > TOUCH_MAP_MAX) this.writeTouches();
  }

  /** Write every remembered use into the index (at close, and when the map is full). */
  writeTouches(): void {
    if (!this.d.index) return;
    for (const [md5, t] of this.touches) {
      const cur = this.d.index.get(md5);
      if (cur && cur.evictedAt === undefined && t > storedLastUsed(cur)) this.d.index.put({ ...cur, lastUsedAt: new Date(t).toISOString() });
    }
    this.touches.clear();
  }

  /** Keep `md5` from being evicted until the returned function is called. */
  hold(md5: string): () => void {
    this.holds.set(md5, (this.holds.get(md5) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.holds.get(md5) ?? 1) - 1;
      if (n <= 0) this.holds.delete(md5);
      else this.holds.set(md5, n);
    };
  }

  busy(md5: string): boolean {
    return this.holds.has(md5);
  }

  /** E_QUOTA for content that could never be kept. */
  check(size: number, url?: string): void {
    if (exceedsQuota(size, this.limits)) {
      throw new MediaCacheError('E_QUOTA', `${size} bytes is more than the whole cache quota (--max-size ${this.limits.maxSize} bytes)`, url ? { url } : {});
    }
  }

  /**
   * Make room for `size` bytes about to be committed and hold them reserved
   * until the returned release is called (after the commit: the bytes are
   * then in the index's totals).
   */
  async reserve(size: number, url?: string): Promise<() => void> {
    if (!this.enabled) return () => undefined;
    this.check(size, url);
    this.reserved += size;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.reserved -= size;
    };
    try {
      await this.makeRoom();
    } catch (e) {
      release();
      throw e;
    }
    return release;
  }

  /**
   * Evict until the committed + reserved bytes fit, or nothing more can go.
   * Past the early watermark only, an eviction is started in the background
   * and the caller goes on.
   */
  async makeRoom(): Promise<void> {
    for (let round = 0; round < 8; round++) {
      const usage = { used: this.embedded.stats().totalSize, incoming: this.reserved, free: await this.freeBytes() };
      const need = bytesToFree(usage, this.limits);
      if (need <= 0) {
        if (!this.running) this.setBlocked(false, 0);
        const soon = bytesToFreeSoon(usage, this.limits);
        if (soon > 0 && !this.running) void this.start(soon).catch((e: unknown) => this.d.logger.warn('background eviction failed', { error: String(e) }));
        return;
      }
      if (this.running) {
        await this.running.catch(() => 0);
        continue;
      }
      if ((await this.start(need)) === 0) return; // nothing evictable: blocked (logged by runEviction)
    }
  }

  /** Resolves once no eviction is running (a background one included). */
  async idle(): Promise<void> {
    while (this.running) await this.running.catch(() => 0);
  }

  /** One eviction run at a time; resolves with the bytes it freed. */
  private start(need: number): Promise<number> {
    const run = this.runEviction(need).finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private async runEviction(need: number): Promise<number> {
    const out = await evict(
      {
        index: this.embedded,
        cacheDir: this.d.cacheDir,
        logger: this.d.logger,
        now: this.d.now,
        lock: this.d.lock,
        busy: (m) => this.busy(m),
        lastUsed: (r) => this.lastUsed(r),
        afterMark: this.d.afterMark,
      },
      need,
    );
    for (const e of out.evicted) this.touches.delete(e.md5);
    this.evictedSinceStart.count += out.evicted.length;
    this.evictedSinceStart.size += out.bytes;
    if (out.evicted.length) {
      this.lastEvictionAt = new Date(this.d.now()).toISOString();
      if (this.free) this.free.bytes += out.bytes;
    }
    this.setBlocked(out.bytes < need && out.plan.short > 0, out.plan.pinnedBytes);
    return out.bytes;
  }

  /** Whether the quota cannot be met (nothing evictable is left) and whether pinned content is why. */
  private setBlocked(blocked: boolean, pinnedBytes: number): void {
    const byPinned = blocked && pinnedBytes > 0;
    if (blocked && !this.unmet) {
      this.d.logger.warn(
        byPinned
          ? 'quota cannot be met: pinned content alone is over it; pinned content is never evicted (unpin some, or raise the limit)'
          : 'quota cannot be met: nothing is left to evict (the disk is fuller than --min-free allows, or the files in use are over the limit)',
        { maxSize: this.limits.maxSize, minFree: this.limits.minFree, used: this.embedded.stats().totalSize, pinnedBytes },
      );
    }
    this.unmet = blocked;
    this.blocked = byPinned;
  }

  private async freeBytes(): Promise<number | undefined> {
    if (this.limits.minFree <= 0) return undefined;
    const now = this.d.now();
    if (!this.free || now - this.free.at >= FREE_CHECK_MS) {
      try {
        const st = await fs.promises.statfs(this.d.cacheDir);
        this.free = { bytes: st.bavail * st.bsize, at: now };
      } catch (e) {
        this.d.logger.warn('cannot read free disk space; --min-free not applied this time', { error: String(e) });
        return undefined;
      }
    }
    // Reserved bytes are already on the disk (complete files in .tmp/): the
    // planner takes `incoming` off the free space, so it is added back here.
    return this.free.bytes + this.reserved;
  }

  status(): QuotaStatus {
    const s = this.embedded.stats();
    const out: QuotaStatus = {
      maxSize: this.limits.maxSize,
      minFree: this.limits.minFree,
      lowWater: lowWater(this.limits),
      used: s.totalSize,
      blockedByPinned: this.blocked,
      unmet: this.unmet,
      evictedSinceStart: { ...this.evictedSinceStart },
    };
    if (this.free) out.free = this.free.bytes;
    if (this.lastEvictionAt) out.lastEvictionAt = this.lastEvictionAt;
    return out;
  }
}
