/**
 * Carrying out an eviction plan (quota.ts decides) against the lowdb index
 * and the type folders, crash-safe:
 *
 *   1 mark each victim `evicting` (inside its md5's critical section,
 *     re-checked: still present, unpinned, not busy)
 *   2 flush the index: the marks are durable
 *   3 per victim, inside its critical section again: if it was used since
 *     the plan (or a commit cleared the mark), put it back as present;
 *     else unlink the file, then record it evicted (URLs and metadata kept)
 *
 * A crash anywhere leaves records flagged `evicting` at most; at open,
 * reconcileEvicting() settles each by what is on disk (file there with its
 * size: present, else evicted), so the index and the disk always agree.
 * Restoring an evicted record (cache.ts) uses the same flag around its
 * commit.
 */
import fs from 'node:fs';
import type { IndexDb } from '../entry-index/index-db.js';
import type { KeyedMutex } from '../util/async-locks.js';
import type { Logger } from '../util/logger.js';
import { planEviction, type Candidate, type EvictionPlan } from './policy.js';
import { storePath } from '../content/store.js';
import type { StoredRecord } from '../types.js';

export interface EvictorDeps {
  index: IndexDb;
  cacheDir: string;
  logger: Logger;
  now: () => number;
  /** The per-md5 critical section shared with commits, verifies and removes. */
  lock: KeyedMutex;
  /** Being downloaded, verified or read: never evicted. */
  busy: (md5: string) => boolean;
  /** When a record was last used, in-memory uses included. */
  lastUsed: (r: StoredRecord) => number;
  /** Test hook: called between the durable marks and the unlinks. */
  afterMark?: (md5s: string[]) => Promise<void> | void;
}

export interface EvictionOutcome {
  plan: EvictionPlan;
  evicted: Array<{ md5: string; size: number }>;
  bytes: number;
}

/** Yield to the event loop every this many ms while scanning a large index. */
const SCAN_SLICE_MS = 10;
const UNLINK_CONCURRENCY = 8;

async function unlinkIfThere(p: string): Promise<void> {
  try {
    await fs.promises.unlink(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

async function fileSize(p: string): Promise<number | undefined> {
  try {
    const st = await fs.promises.stat(p);
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}

/** Every present record as an eviction candidate (the scan yields now and then: a million records take a while). */
export async function collectCandidates(d: Pick<EvictorDeps, 'index' | 'busy' | 'lastUsed'>): Promise<Candidate[]> {
  const out: Candidate[] = [];
  let t0 = performance.now();
  let n = 0;
  for (const r of d.index.records()) {
    if (r.evictedAt === undefined && !r.evicting) {
      out.push({ md5: r.md5, size: r.fileSize, lastUsed: d.lastUsed(r), pinned: r.pinned === true, busy: d.busy(r.md5) });
    }
    if (++n % 256 === 0 && performance.now() - t0 >= SCAN_SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      t0 = performance.now();
    }
  }
  return out;
}

/** Free at least `need` bytes if unpinned, idle content allows (see the module comment for the steps). */
export async function evict(d: EvictorDeps, need: number): Promise<EvictionOutcome> {
  const plan = planEviction(await collectCandidates(d), need);
  const out: EvictionOutcome = { plan, evicted: [], bytes: 0 };
  if (plan.victims.length === 0) return out;
  const marked: Candidate[] = [];
  for (const v of plan.victims) {
    await d.lock.run(v.md5, async () => {
      const cur = d.index.get(v.md5);
      if (!cur || cur.evictedAt !== undefined || cur.evicting || cur.pinned || d.busy(v.md5)) return;
      d.index.put({ ...cur, evicting: true });
      marked.push(v);
    });
  }
  if (marked.length === 0) return out;
  await d.index.flush();
  await d.afterMark?.(marked.map((m) => m.md5));
  const at = new Date(d.now()).toISOString();
  // A few unlinks at once: one at a time, a large batch would hold up the commits waiting for room.
  await forEachLimit(marked, UNLINK_CONCURRENCY, async (v) => {
    await d.lock.run(v.md5, async () => {
      const cur = d.index.get(v.md5);
      if (!cur || !cur.evicting) return; // a commit put the file back meanwhile
      const { evicting: _e, ...present } = cur;
      if (cur.pinned || d.busy(v.md5) || d.lastUsed(cur) > v.lastUsed) {
        d.index.put(present);
        return;
      }
      await unlinkIfThere(storePath(d.cacheDir, cur));
      d.index.put({ ...present, evictedAt: at });
      out.evicted.push({ md5: v.md5, size: cur.fileSize });
      out.bytes += cur.fileSize;
    });
  });
  if (out.evicted.length) d.logger.info('evicted least recently used content', { files: out.evicted.length, bytes: out.bytes, need });
  return out;
}

/**
 * At open: settle every record a crash left `evicting`. Its file there with
 * the recorded size: present (an eviction rolled back, or a restore
 * finished); otherwise evicted (any partial file removed). Returns how many
 * were settled.
 */
export async function reconcileEvicting(index: IndexDb, cacheDir: string, now: () => number, logger: Logger): Promise<number> {
  const md5s = index.evictingMd5s();
  for (const md5 of md5s) {
    const cur = index.get(md5);
    if (!cur || !cur.evicting) continue;
    const { evicting: _e, ...rec } = cur;
    const p = storePath(cacheDir, cur);
    if ((await fileSize(p)) === cur.fileSize) {
      if (rec.evictedAt !== undefined) {
        delete rec.evictedAt;
        rec.restoredAt = new Date(now()).toISOString();
      }
      index.put(rec);
    } else {
      await fs.promises.rm(p, { force: true });
      index.put({ ...rec, evictedAt: rec.evictedAt ?? new Date(now()).toISOString() });
    }
  }
  if (md5s.length) {
    await index.flush();
    logger.info('settled records an interrupted eviction or restore left in flux', { records: md5s.length });
  }
  return md5s.length;
}
