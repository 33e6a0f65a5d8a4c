/**
 * The IO half of a sweep: the six named steps, in order, each a function of
 * one shared SweepContext (sweep.ts builds it and times the steps).
 *
 *  1 missing    stat every record's file: absent -> repair list; wrong size -> corrupt
 *  2 rehash     re-hash the rest in worker threads, stalest first, until the deadline:
 *               SHA-256 against the record (equal SHA-256 = equal bytes, so the MD5
 *               name holds too); MD5 as well only for a file that fails
 *  3 quarantine move corrupt files to .quarantine/<day>/ (never deleted)
 *  4 repair     re-fetch missing/quarantined records from their URLs, verified by md5 AND sha256
 *  5 adopt      (sweep-adopt.ts) index well-formed unknown files in the type folders; quarantine anything else
 *  6 clean-tmp  remove .tmp/ leftovers older than a day
 *  7 metadata   (metadata/sweep-step.ts) read media metadata into records that lack it
 *
 * Races with downloads running at the same time: a file is only moved to
 * quarantine if it is still the very file that was judged (same inode, mtime
 * and size), a repair commits only while the record still exists, and an
 * adoption is skipped when a download indexed the md5 meanwhile.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import { toMediaCacheError } from '../errors.js';
import type { AnyHashOutcome, HashPool, Sha256Outcome } from '../hash/file-hash-pool.js';
import type { EntryStore } from '../entry-index/store.js';
import type { Logger } from '../util/logger.js';
import type { SweepReport, SweepStepName } from '../protocol/rpc.js';
import { isStaleTmp, pastDeadline, quarantineTarget, orderForRehash } from './plan.js';
import { repairRecord } from './repair.js';
import { storePath, tmpDirOf } from '../content/store.js';
import type { StoredRecord } from '../types.js';
import type { RefreshOutcome } from '../revalidate/refresh.js';
import { dueForRevalidation } from '../revalidate/plan.js';

/** What a sweep needs of a MediaCache (MediaCache satisfies it). */
export interface SweepTarget {
  readonly cacheDir: string;
  readonly index: EntryStore;
  /** This process's folder for partial downloads (default `<cacheDir>/.tmp`; per host in cluster mode). */
  readonly tmpDir?: string;
  readonly dispatcher: Dispatcher;
  readonly options: { readonly timeoutMs: number; readonly maxFileSize: number };
  readonly logger: Logger;
  /** Revalidation (MediaCache has it); the revalidate step is skipped without it. */
  refresh?(urlOrMd5: string, opts?: { signal?: AbortSignal }): Promise<RefreshOutcome[]>;
}

export interface StepTally {
  count: number;
  bytes: number;
}

/** A file judged bad, with the identity it had when judged. */
export interface Suspect {
  path: string;
  md5?: string;
  reason: string;
  ino: number;
  mtimeMs: number;
  size: number;
}

export interface SweepContext {
  readonly id: string;
  readonly cache: SweepTarget;
  readonly pool: HashPool;
  readonly logger: Logger;
  readonly now: () => Date;
  readonly startMs: number;
  readonly maxDurationMs: number;
  /** Recovery mode: adoption is not cut short by the deadline. */
  readonly adoptAll: boolean;
  readonly threads: number;
  readonly signal: AbortSignal;
  readonly report: SweepReport;
  readonly tally: Record<SweepStepName, StepTally>;
  progress(step: SweepStepName, done: number, total?: number): void;
  /** Filled by `missing` and `rehash`, read by later steps. Md5s only: a million records must not be copied. */
  toRehash: string[];
  suspects: Suspect[];
  needRepair: Set<string>;
}

export const nowIso = (ctx: SweepContext): string => ctx.now().toISOString();

export function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

export async function lstatOrUndefined(p: string): Promise<fs.Stats | undefined> {
  try {
    return await fs.promises.lstat(p);
  } catch (e) {
    if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return undefined;
    throw e;
  }
}

/** Run `fn` over `items` with at most `limit` at once (cheap IO such as stat). */
async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

/** Evicted (or being evicted) on purpose: its file's absence is not damage. */
async function evictedNow(ctx: SweepContext, md5: string): Promise<boolean> {
  const cur = await ctx.cache.index.get(md5);
  return cur !== undefined && (cur.evictedAt !== undefined || cur.evicting === true);
}

async function markMissing(ctx: SweepContext, rec: StoredRecord): Promise<void> {
  if (ctx.needRepair.has(rec.md5) || (await evictedNow(ctx, rec.md5))) return;
  ctx.report.missing.push(rec.md5);
  ctx.needRepair.add(rec.md5);
  ctx.tally.missing.count++;
  ctx.tally.missing.bytes += rec.fileSize;
}

function markCorrupt(ctx: SweepContext, s: Suspect): void {
  // One record is judged once per sweep (stat, then hash only if the stat was fine).
  if (s.md5) ctx.report.corrupt.push(s.md5);
  ctx.suspects.push(s);
}

/** Step 1: every record's file exists with its recorded size (a stat each; no reading). */
export async function stepMissing(ctx: SweepContext): Promise<void> {
  const index = ctx.cache.index;
  const light: Array<{ md5: string; verifiedAt: string }> = [];
  for await (const r of index.records()) if (r.evictedAt === undefined && !r.evicting) light.push({ md5: r.md5, verifiedAt: r.verifiedAt });
  const order = orderForRehash(light);
  let done = 0;
  const keep: Array<string | undefined> = new Array(order.length);
  await forEachLimit(order, 16, async ({ md5 }, i) => {
    ctx.signal.throwIfAborted();
    const rec = await index.get(md5);
    if (!rec || rec.evictedAt !== undefined || rec.evicting) return; // removed or evicted meanwhile
    const p = storePath(ctx.cache.cacheDir, rec);
    const st = await lstatOrUndefined(p);
    if (!st) await markMissing(ctx, rec);
    else if (!st.isFile()) markCorrupt(ctx, { path: p, md5: rec.md5, reason: 'not a regular file', ino: st.ino, mtimeMs: st.mtimeMs, size: st.size });
    else if (st.size !== rec.fileSize) {
      markCorrupt(ctx, { path: p, md5: rec.md5, reason: `size ${st.size} instead of ${rec.fileSize}`, ino: st.ino, mtimeMs: st.mtimeMs, size: st.size });
    } else keep[i] = md5;
    ctx.progress('missing', ++done, order.length);
  });
  // Stalest first, as ordered above.
  ctx.toRehash = keep.filter((m): m is string => m !== undefined);
}

/**
 * Hash files through the pool, keeping every thread busy, until `items` are
 * done or the deadline passes. At least one file per lane is always taken,
 * so a file that alone takes longer than the deadline is still checked and
 * an incremental sweep always makes progress. Returns false when cut short.
 */
export async function hashAll<T, P extends { path: string }, O extends Sha256Outcome>(
  ctx: SweepContext,
  items: readonly T[],
  /** What to hash for an item, or undefined to skip it (gone meanwhile). */
  prepare: (item: T) => P | undefined | Promise<P | undefined>,
  /** The pool call for one item (undefined: the file is gone). */
  hashOne: (prepared: P) => Promise<O | undefined>,
  onResult: (prepared: P, h: O | undefined) => Promise<void> | void,
  bounded: boolean,
): Promise<boolean> {
  let next = 0;
  let cut = false;
  const lane = async (): Promise<void> => {
    let mine = 0;
    for (;;) {
      if (next >= items.length) return;
      if (bounded && mine > 0 && pastDeadline(ctx.startMs, ctx.maxDurationMs, Date.now())) {
        cut = true;
        return;
      }
      ctx.signal.throwIfAborted();
      const job = await prepare(items[next++]);
      if (!job) continue;
      mine++;
      let h: O | undefined;
      try {
        h = await hashOne(job);
      } catch (e) {
        const err = toMediaCacheError(e);
        if (err.code === 'E_ABORTED') throw err;
        // Unreadable (EACCES, EIO): report, never quarantine what we could not read.
        ctx.logger.warn('sweep: cannot read file', { path: job.path, error: err.message });
        continue;
      }
      if (h) {
        ctx.report.checked++;
        ctx.report.bytesHashed += h.size;
      }
      await onResult(job, h);
    }
  };
  // Two lanes per thread: the pool queues a second file on each thread, so no
  // thread idles between files while its result travels back here.
  await Promise.all(Array.from({ length: 2 * Math.max(1, ctx.threads) }, lane));
  return !cut && next >= items.length;
}

/**
 * Step 2: re-hash files (size already matched), stalest verifiedAt first.
 *
 * Each file's SHA-256 is compared with the record's. The record's MD5 and
 * SHA-256 were computed over the same bytes when it was stored (download,
 * repair and adoption all check both), so an equal SHA-256 proves the bytes
 * are those bytes and the MD5 name still holds: hashing MD5 as well would
 * cost 2.3x the CPU (no hardware MD5) for no extra assurance. A file that
 * fails is hashed again with MD5 too, so the report says what it is now.
 * A record without a SHA-256 gets both at once.
 */
export async function stepRehash(ctx: SweepContext): Promise<boolean> {
  const items = ctx.toRehash;
  let done = 0;
  const complete = await hashAll(
    ctx,
    items,
    async (md5) => {
      const rec = await ctx.cache.index.get(md5);
      return rec && rec.evictedAt === undefined && !rec.evicting ? { rec, path: storePath(ctx.cache.cacheDir, rec) } : undefined;
    },
    ({ rec, path: p }): Promise<AnyHashOutcome | undefined> =>
      rec.sha256 ? ctx.pool.hashSha256(p) : ctx.pool.hash(p),
    async ({ rec, path: p }, first) => {
      ctx.progress('rehash', ++done, items.length);
      if (!first) return markMissing(ctx, rec);
      ctx.tally.rehash.count++;
      ctx.tally.rehash.bytes += first.size;
      const fine = (x: AnyHashOutcome): boolean =>
        x.size === rec.fileSize && (!rec.sha256 || x.sha256 === rec.sha256) && (x.md5 === undefined || x.md5 === rec.md5);
      if (!fine(first)) {
        // Both digests for the report (rare: only files that failed).
        const h = first.md5 === undefined ? await ctx.pool.hash(p).catch(() => undefined) ?? first : first;
        const reason =
          h.size !== rec.fileSize
            ? `size ${h.size} instead of ${rec.fileSize}`
            : h.md5 !== undefined && h.md5 !== rec.md5
              ? `md5 is now ${h.md5}`
              : 'sha256 differs (the md5 still matches: an md5 collision or a damaged record)';
        ctx.logger.warn('sweep: corrupt file', { md5: rec.md5, path: p, reason });
        return markCorrupt(ctx, { path: p, md5: rec.md5, reason, ino: h.ino, mtimeMs: h.mtimeMs, size: h.size });
      }
      // Checked OK: record when, unless the record changed under us meanwhile.
      const cur = await ctx.cache.index.get(rec.md5);
      if (cur && cur.sha256 === rec.sha256) await ctx.cache.index.put({ ...cur, verifiedAt: nowIso(ctx) });
    },
    true,
  );
  return complete;
}

/** Move one file to quarantine if it is still the file that was judged. Returns the new path. */
export async function quarantine(ctx: SweepContext, s: Suspect): Promise<string | undefined> {
  const st = await lstatOrUndefined(s.path);
  if (!st || st.ino !== s.ino || st.mtimeMs !== s.mtimeMs || st.size !== s.size) {
    ctx.logger.info('sweep: file changed since it was checked; left in place', { path: s.path });
    return undefined;
  }
  const to = quarantineTarget(ctx.cache.cacheDir, path.basename(s.path), ctx.now(), (p) => fs.existsSync(p));
  await fs.promises.mkdir(path.dirname(to), { recursive: true });
  await fs.promises.rename(s.path, to);
  ctx.report.quarantined.push({ path: s.path, to, reason: s.reason });
  ctx.tally.quarantine.count++;
  ctx.tally.quarantine.bytes += s.size;
  ctx.logger.warn('sweep: quarantined', { path: s.path, to, reason: s.reason });
  return to;
}

/** Step 3: corrupt files leave the type folders (kept, never deleted). */
export async function stepQuarantine(ctx: SweepContext): Promise<void> {
  let done = 0;
  for (const s of ctx.suspects) {
    ctx.signal.throwIfAborted();
    try {
      if ((await quarantine(ctx, s)) && s.md5) ctx.needRepair.add(s.md5);
    } catch (e) {
      ctx.logger.error('sweep: cannot quarantine', { path: s.path, error: String(e) });
    }
    ctx.progress('quarantine', ++done, ctx.suspects.length);
  }
}

/** Step 4: restore missing and quarantined files from their URLs. */
export async function stepRepair(ctx: SweepContext): Promise<void> {
  const md5s = [...ctx.needRepair];
  const { cache } = ctx;
  let done = 0;
  for (const md5 of md5s) {
    ctx.signal.throwIfAborted();
    const rec = await cache.index.get(md5);
    const p = rec && storePath(cache.cacheDir, rec);
    // Removed or evicted meanwhile, or a download already put the bytes back.
    if (!rec || !p || rec.evictedAt !== undefined || rec.evicting || (await lstatOrUndefined(p))?.size === rec.fileSize) {
      ctx.progress('repair', ++done, md5s.length);
      continue;
    }
    const out = await repairRecord(rec, {
      cacheDir: cache.cacheDir,
      tmpDir: cache.tmpDir ?? tmpDirOf(cache.cacheDir),
      dispatcher: cache.dispatcher,
      timeoutMs: cache.options.timeoutMs,
      maxFileSize: cache.options.maxFileSize,
      logger: ctx.logger,
      signal: ctx.signal,
      stillWanted: async () => {
        const cur = await cache.index.get(md5);
        return cur?.sha256 === rec.sha256 && cur.evictedAt === undefined && !cur.evicting;
      },
    });
    for (const url of out.changed) ctx.report.changedUpstream.push({ md5, url });
    if (out.repairedFrom) {
      ctx.report.repaired.push({ md5, url: out.repairedFrom });
      ctx.tally.repair.count++;
      ctx.tally.repair.bytes += out.bytes;
      const cur = await cache.index.get(md5);
      if (cur) await cache.index.put({ ...cur, verifiedAt: nowIso(ctx) });
    } else if (out.error) {
      // The record stays (a later sweep retries); its file is absent, so the
      // cache re-fetches on the next download of its URL instead of serving it.
      ctx.report.unrepaired.push({ md5, error: out.error.toJSON() });
    }
    ctx.progress('repair', ++done, md5s.length);
  }
}

/** Step 6: partial downloads left by a crash or a kill, older than a day. */
export async function stepCleanTmp(ctx: SweepContext): Promise<void> {
  const dir = tmpDirOf(ctx.cache.cacheDir);
  let names: string[];
  try {
    names = await fs.promises.readdir(dir);
  } catch (e) {
    if (errno(e) === 'ENOENT') return;
    throw e;
  }
  const nowMs = ctx.now().getTime();
  let done = 0;
  for (const name of names) {
    const p = path.join(dir, name);
    const st = await lstatOrUndefined(p);
    if (st && isStaleTmp(st.mtimeMs, nowMs)) {
      try {
        await fs.promises.rm(p, { recursive: true, force: true });
        ctx.report.cleanedTmp++;
        ctx.tally['clean-tmp'].count++;
        ctx.tally['clean-tmp'].bytes += st.isFile() ? st.size : 0;
      } catch (e) {
        ctx.logger.warn('sweep: cannot remove tmp leftover', { path: p, error: String(e) });
      }
    }
    ctx.progress('clean-tmp', ++done, names.length);
  }
}

/**
 * Step 7 (only with revalidateAfterMs): ask the origins about content not
 * confirmed for that long, stalest first, until the deadline. A 304 costs
 * no body; changed content becomes its own record (see revalidate.ts).
 */
export async function stepRevalidate(ctx: SweepContext, revalidateAfterMs: number): Promise<boolean> {
  const refresh = ctx.cache.refresh?.bind(ctx.cache);
  const report = ctx.report;
  const stats = (report.revalidated ??= { asked: 0, notModified: 0, unchanged: 0, changed: 0, failed: 0 });
  report.movedUpstream ??= [];
  if (!refresh || !(revalidateAfterMs > 0)) return true;
  const nowMs = ctx.now().getTime();
  const due: Array<{ url: string; t: number }> = [];
  for await (const r of ctx.cache.index.records()) {
    if (!dueForRevalidation(r, nowMs, revalidateAfterMs)) continue;
    const t = Date.parse(r.revalidatedAt ?? r.fetchedAt);
    for (const url of r.urls) due.push({ url, t: Number.isNaN(t) ? -Infinity : t });
  }
  due.sort((a, b) => a.t - b.t);
  let done = 0;
  for (const { url } of due) {
    ctx.signal.throwIfAborted();
    if (pastDeadline(ctx.startMs, ctx.maxDurationMs, Date.now())) return false;
    stats.asked++;
    try {
      const [o] = await refresh(url, { signal: ctx.signal });
      if (o?.state === 'not-modified') stats.notModified++;
      else if (o?.state === 'unchanged') stats.unchanged++;
      else if (o?.state === 'changed') {
        stats.changed++;
        if (o.change) report.movedUpstream.push(o.change);
      }
      ctx.tally.revalidate.count++;
      ctx.tally.revalidate.bytes += o?.bytes ?? 0;
    } catch (e) {
      const err = toMediaCacheError(e, url);
      if (err.code === 'E_ABORTED') throw err;
      stats.failed++;
      ctx.logger.warn('sweep: revalidation failed', { url, code: err.code, error: err.message });
    }
    ctx.progress('revalidate', ++done, due.length);
  }
  return true;
}
