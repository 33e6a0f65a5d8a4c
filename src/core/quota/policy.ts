/**
 * The quota policy, pure: limits and watermarks, how many bytes must go
 * before new content comes in, and which records go (least recently used,
 * never pinned or busy ones). No IO: evict.ts carries a plan out against a
 * storage backend, so another backend reuses these decisions as they are.
 *
 * Watermarks: past EARLY_RATIO x maxSize an eviction starts in the
 * background (downloads go on); past `maxSize` itself a download waits for
 * it. Either frees space down to LOW_WATER_RATIO x maxSize, so eviction runs
 * in batches rather than once per download. With `minFree`: the same with
 * 105% / 100% of minFree free, freeing until 110% is.
 */
import type { StoredRecord } from '../types.js';

export const LOW_WATER_RATIO = 0.9;
/** Past this share of maxSize (or under 105% of minFree free) eviction starts without making downloads wait. */
export const EARLY_RATIO = 0.95;
/** minFree past which eviction frees: minFree + minFree / FREE_TARGET_EXTRA (10% more). */
export const FREE_TARGET_EXTRA = 10;
/**
 * lastUsedAt is written to the index at most once per this long per record
 * (a hot file must not cost an index write per read); the in-memory order
 * is exact in between, and after a restart it is this precise.
 */
export const USE_WRITE_GRANULARITY_MS = 60_000;

export interface QuotaLimits {
  /** Bytes the cached files may take; 0 = no limit. */
  maxSize: number;
  /** Bytes that must stay free on the cache's filesystem; 0 = no limit. */
  minFree: number;
}

export function quotaEnabled(l: QuotaLimits): boolean {
  return l.maxSize > 0 || l.minFree > 0;
}

/** Eviction started by maxSize stops at or below this. */
export function lowWater(l: QuotaLimits): number {
  return Math.floor(l.maxSize * LOW_WATER_RATIO);
}

/** Whether content of `size` bytes could never fit (E_QUOTA). */
export function exceedsQuota(size: number, l: QuotaLimits): boolean {
  return l.maxSize > 0 && size > l.maxSize;
}

export interface UsageNow {
  /** Bytes of the cached (not evicted) files. */
  used: number;
  /** Bytes about to be added (downloads waiting to commit). */
  incoming: number;
  /** Free bytes on the filesystem, when known. */
  free?: number;
}

/** Bytes to evict before `incoming` may be added; 0 when it fits. */
export function bytesToFree(u: UsageNow, l: QuotaLimits): number {
  let need = 0;
  if (l.maxSize > 0 && u.used + u.incoming > l.maxSize) need = u.used + u.incoming - lowWater(l);
  if (l.minFree > 0 && u.free !== undefined && u.free - u.incoming < l.minFree) {
    need = Math.max(need, l.minFree + Math.ceil(l.minFree / FREE_TARGET_EXTRA) - (u.free - u.incoming));
  }
  return Math.max(0, need);
}

/**
 * Bytes to evict in the background now (past the early watermark, still
 * within the limits): 0 when below it. Frees to the same targets as
 * bytesToFree, so a download rarely finds the cache at its hard limit.
 */
export function bytesToFreeSoon(u: UsageNow, l: QuotaLimits): number {
  let need = 0;
  if (l.maxSize > 0 && u.used + u.incoming > Math.floor(l.maxSize * EARLY_RATIO)) need = u.used + u.incoming - lowWater(l);
  if (l.minFree > 0 && u.free !== undefined && u.free - u.incoming < l.minFree + Math.ceil(l.minFree / (2 * FREE_TARGET_EXTRA))) {
    need = Math.max(need, l.minFree + Math.ceil(l.minFree / FREE_TARGET_EXTRA) - (u.free - u.incoming));
  }
  return Math.max(0, need);
}

export interface Candidate {
  md5: string;
  size: number;
  /** ms since the epoch; see lastUsedMs. */
  lastUsed: number;
  pinned: boolean;
  /** Being downloaded, verified or read right now. */
  busy: boolean;
}

export interface EvictionPlan {
  victims: Candidate[];
  /** Bytes the victims free. */
  freed: number;
  /** Bytes still missing after every possible victim (0 when the plan meets the need). */
  short: number;
  /** Bytes of pinned content among the candidates. */
  pinnedBytes: number;
  /** Bytes skipped because they were busy. */
  busyBytes: number;
}

/** Least recently used first (ties by md5, so plans are deterministic); pinned and busy content never. */
export function planEviction(candidates: Iterable<Candidate>, need: number): EvictionPlan {
  const plan: EvictionPlan = { victims: [], freed: 0, short: 0, pinnedBytes: 0, busyBytes: 0 };
  const usable: Candidate[] = [];
  for (const c of candidates) {
    if (c.pinned) plan.pinnedBytes += c.size;
    else if (c.busy) plan.busyBytes += c.size;
    else usable.push(c);
  }
  if (need <= 0) return plan;
  usable.sort((a, b) => a.lastUsed - b.lastUsed || (a.md5 < b.md5 ? -1 : a.md5 > b.md5 ? 1 : 0));
  for (const c of usable) {
    if (plan.freed >= need) break;
    plan.victims.push(c);
    plan.freed += c.size;
  }
  plan.short = Math.max(0, need - plan.freed);
  return plan;
}

function ms(iso: string | undefined): number {
  if (iso === undefined) return Number.NaN;
  return Date.parse(iso);
}

/**
 * When a record was last used as the index knows it: lastUsedAt, else (an
 * index from before the quota) when it was fetched or restored. Unreadable
 * dates count as never.
 */
export function storedLastUsed(r: Pick<StoredRecord, 'lastUsedAt' | 'fetchedAt' | 'restoredAt'>): number {
  let best = -Infinity;
  for (const v of [ms(r.lastUsedAt), ms(r.restoredAt), ms(r.fetchedAt)]) if (!Number.isNaN(v) && v > best) best = v;
  return best;
}

/** Whether a use at `nowMs` is worth an index write given the stored time. */
export function useWorthWriting(storedMs: number, nowMs: number): boolean {
  return nowMs - storedMs >= USE_WRITE_GRANULARITY_MS;
}

/** Whether the record's file is meant to be on disk. */
export function isPresent(r: Pick<StoredRecord, 'evictedAt'>): boolean {
  return r.evictedAt === undefined;
}
