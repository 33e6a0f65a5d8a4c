/**
 * The RPC method table: one typed handler per method of core/protocol.ts,
 * each validating its params first (InvalidParamsError → -32602) and then
 * delegating to the engine. Handlers see the daemon only through
 * DaemonContext, so they can be built before main.ts wires real parts.
 */
import { MediaCacheError, isMediaCacheError } from '../../core/errors.js';
import { parseMediaUrl } from '../../core/fetch/url.js';
import type { MediaRecord, CacheStats } from '../../core/types.js';
import type { FileHashes } from '../../core/hash/file-hash.js';
import { HashPool } from '../../core/hash/file-hash-pool.js';
import { mapLimit } from '../../core/util/async-locks.js';
import {
  EVENT_NAMES,
  JOB_STATES,
  MIN_REMOVE_PREFIX,
  type ActiveDownload,
  type AddItem,
  type DamageReport,
  type EventName,
  type JobInfo,
  type JobState,
  type JobsResult,
  type QueueCounts,
  type RefreshItem,
  type RpcMethodName,
  type RpcMethods,
  type StatusResult,
  type ClusterView,
  type SweepReport,
  type VerifyFailure,
} from '../../core/protocol/rpc.js';
import type { DaemonConfig } from '../config.js';
import { InvalidParamsError, type RpcConnection } from './server.js';

/** Most URLs one `add` may carry (a bigger list belongs in an inbox file). */
export const MAX_ADD_URLS = 10_000;
/** Files `verify {all}` re-hashes at once, and the threads hashing them. */
const VERIFY_ALL_CONCURRENCY = 4;
const VERIFY_ALL_THREADS = 2;
/** The parts of the daemon the handlers use (MediaCache, Scheduler, Sweeper, SweepTimer). */
export interface DaemonContext {
  readonly version: string;
  readonly startedAt: Date;
  /** Current config (SIGHUP may replace it). */
  config(): DaemonConfig;
  readonly cache: {
    stats(): Promise<CacheStats>;
    find(md5OrPrefix: string): Promise<MediaRecord | undefined>;
    findByUrl(url: string): Promise<MediaRecord | undefined>;
    /** find() of many full md5s in one index read, by md5 (unknown ones left out). */
    findMany(md5s: readonly string[]): Promise<Map<string, MediaRecord>>;
    /** For each URL (already parsed), its cached record when the file is present (the cache-hit decision), in one index read. */
    lookupFreshMany(urls: readonly string[]): Promise<Array<MediaRecord | undefined>>;
    verify(
      md5OrPrefix: string,
      opts?: { hasher?: (path: string) => Promise<FileHashes | undefined> },
    ): Promise<{ ok: boolean; record: MediaRecord; reason?: 'missing' | 'mismatch' }>;
    remove(md5OrPrefix: string): Promise<MediaRecord>;
    readonly index: { records(): AsyncIterable<{ md5: string }> };
    /** Quota additions (optional so older test doubles still fit). */
    pin?(md5OrUrl: string, pinned?: boolean): Promise<MediaRecord>;
    pinWhenCached?(url: string): void;
    refresh?(urlOrMd5: string): Promise<RefreshItem[]>;
  };
  readonly scheduler: {
    enqueue(items: Array<{ url: string; source: string }>, o: { priority: number; force?: boolean; retries?: number }): Promise<JobInfo[]>;
    wait(jobIds: string[]): Promise<JobInfo[]>;
    list(o: { state?: JobState; limit?: number }): JobsResult | Promise<JobsResult>;
    counts(): QueueCounts;
    active(): ActiveDownload[];
    cancel(o: { id?: string; url?: string }): Promise<{ job: JobInfo; cancelled: boolean }>;
    retry(o: { id?: string; failed?: boolean }): Promise<JobInfo[]>;
    prune(o: { olderThanMs?: number; keep?: number }): Promise<{ pruned: number; remaining: number }>;
  };
  readonly sweeper: {
    readonly running: boolean;
    readonly lastReport?: SweepReport;
    start(): { id: string; joined: boolean; done: Promise<SweepReport> };
  };
  readonly sweepTimer?: { nextRunAt(): Date | undefined };
  /** Cluster mode: the view of the shared database and its daemons. */
  readonly cluster?: { view(): Promise<ClusterView> };
  /** What start-up found damaged (index, job store), when anything was. */
  damage?(): DamageReport | undefined;
}

export type HandlerTable = { [M in RpcMethodName]: (params: unknown, conn: RpcConnection) => Promise<RpcMethods[M]['result']> };

// ---- param validation ----

type Params = Record<string, unknown>;

function obj(method: string, p: unknown, allowed: readonly string[]): Params {
  if (p === undefined || p === null) return {};
  if (typeof p !== 'object' || Array.isArray(p)) throw new InvalidParamsError(`${method}: params must be an object like {${allowed.map((k) => `"${k}": …`).join(', ')}}`);
  for (const k of Object.keys(p)) {
    if (!allowed.includes(k)) throw new InvalidParamsError(`${method}: unknown param "${k}"; ${allowed.length ? `it takes ${allowed.join(', ')}` : 'it takes none'}`);
  }
  return p as Params;
}

function optBool(method: string, p: Params, k: string): boolean | undefined {
  const v = p[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new InvalidParamsError(`${method}: "${k}" must be true or false`);
  return v;
}

function optString(method: string, p: Params, k: string, what: string): string | undefined {
  const v = p[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.trim() === '') throw new InvalidParamsError(`${method}: "${k}" must be ${what}`);
  return v.trim();
}

const MD5ISH = /^[0-9a-fA-F]{1,32}$/;

function md5Param(method: string, p: Params, required: boolean): string | undefined {
  const v = optString(method, p, 'md5', 'an md5 or md5 prefix (hex)');
  if (v === undefined) {
    if (required) throw new InvalidParamsError(`${method}: "md5" is required`);
    return undefined;
  }
  if (!MD5ISH.test(v)) throw new InvalidParamsError(`${method}: "md5" must be 1-32 hex digits, got "${v}"`);
  return v.toLowerCase();
}

/** A whole number in [min, max], or undefined when absent. */
function optInt(method: string, p: Params, k: string, min: number, max: number): number | undefined {
  const v = p[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new InvalidParamsError(`${method}: "${k}" must be a whole number from ${min} to ${max}`);
  return v;
}

/** `add {priority}` is "higher runs sooner"; jobs store "lower runs first" (rpc 0, inbox 10). */
export const MAX_ADD_PRIORITY = 1000;
const MAX_RETRIES_PARAM = 100;

function addParams(p: unknown): { urls: string[]; wait: boolean; force: boolean; pin: boolean; priority: number; retries?: number } {
  const o = obj('add', p, ['urls', 'wait', 'force', 'pin', 'priority', 'retries']);
  const urls = o.urls;
  if (!Array.isArray(urls) || urls.length === 0) throw new InvalidParamsError('add: "urls" must be a non-empty array of URL strings');
  if (urls.length > MAX_ADD_URLS) throw new InvalidParamsError(`add: at most ${MAX_ADD_URLS} URLs per call (got ${urls.length}); drop larger lists into an inbox folder as a .urls file`);
  if (!urls.every((u) => typeof u === 'string')) throw new InvalidParamsError('add: every entry of "urls" must be a string');
  const priority = optInt('add', o, 'priority', -MAX_ADD_PRIORITY, MAX_ADD_PRIORITY) ?? 0;
  const retries = optInt('add', o, 'retries', 0, MAX_RETRIES_PARAM);
  return {
    urls: urls as string[],
    wait: optBool('add', o, 'wait') ?? false,
    force: optBool('add', o, 'force') ?? false,
    pin: optBool('add', o, 'pin') ?? false,
    // 0 - priority, not -priority: no -0 in the job table.
    priority: 0 - priority,
    ...(retries !== undefined ? { retries } : {}),
  };
}

const JOB_ID = /^j\d{1,15}$/;

function jobIdParam(method: string, p: Params): string | undefined {
  const v = optString(method, p, 'id', 'a job id like "j42"');
  if (v !== undefined && !JOB_ID.test(v)) throw new InvalidParamsError(`${method}: "id" must be a job id like "j42", got "${v}"`);
  return v;
}

// ---- helpers ----


function errorInfo(e: unknown, url?: string) {
  if (isMediaCacheError(e)) return e.toJSON();
  return { code: 'E_UNAVAILABLE' as const, message: e instanceof Error ? e.message : String(e), ...(url ? { url } : {}) };
}

/** Item for an ended job: the record when done (from `records`, by md5), the error when failed. */
function endedItem(url: string, j: JobInfo, records: Map<string, MediaRecord>): AddItem {
  const item: AddItem = { url, state: j.state, jobId: j.id };
  const rec = j.state === 'done' && j.md5 ? records.get(j.md5) : undefined;
  if (rec) item.record = { ...rec, url: rec.urls.includes(j.url) ? j.url : rec.url };
  if (j.error) item.error = j.error;
  return item;
}

function targetParam(method: string, v: string): string {
  if (v.includes('://')) return parseMediaUrl(v).href;
  if (!MD5ISH.test(v)) throw new InvalidParamsError(`${method}: "target" must be a URL or 1-32 hex digits of an md5, got "${v}"`);
  return v.toLowerCase();
}

async function pinOrUnpin(ctx: DaemonContext, method: 'pin' | 'unpin', p: unknown, pinned: boolean): Promise<MediaRecord> {
  const o = obj(method, p, ['target']);
  const target = optString(method, o, 'target', 'a URL, an md5 or an md5 prefix');
  if (target === undefined) throw new InvalidParamsError(`${method}: "target" (a URL, md5 or md5 prefix) is required`);
  if (!ctx.cache.pin) throw new MediaCacheError('E_UNAVAILABLE', 'this daemon cannot pin');
  return ctx.cache.pin(targetParam(method, target), pinned);
}

/** Quota, pinned and evicted figures for `status` (only what the cache reports). */
function quotaFields(s: CacheStats): Partial<Pick<StatusResult, 'quota' | 'pinned' | 'evicted'>> {
  const out: Partial<Pick<StatusResult, 'quota' | 'pinned' | 'evicted'>> = {};
  if (s.quota) out.quota = s.quota;
  if (s.pinned) out.pinned = s.pinned;
  if (s.evicted) out.evicted = s.evicted;
  return out;
}

// ---- the table ----

export function createHandlers(ctx: DaemonContext): HandlerTable {
  return {
    async add(p) {
      const { urls, wait, force, pin, priority, retries } = addParams(p);
      const items: AddItem[] = new Array(urls.length);
      const toQueue: Array<{ i: number; url: string }> = [];
      const pinQueue: Array<{ i: number; url: string }> = [];
      const parsed: Array<{ i: number; url: string }> = [];
      urls.forEach((raw, i) => {
        try {
          parsed.push({ i, url: parseMediaUrl(raw).href });
        } catch (e) {
          items[i] = { url: raw, state: 'failed', error: errorInfo(e, raw) };
        }
      });
      // A hit only when the file is there (one stat each): a deleted file is fetched again;
      // lookupFresh counts as a use (the quota keeps recently used content), evicted content downloads again.
      const hits = force ? [] : await ctx.cache.lookupFreshMany(parsed.map((p) => p.url));
      parsed.forEach((p, k) => {
        const rec = hits[k];
        if (rec) {
          items[p.i] = { url: p.url, state: 'done', record: rec, cached: true };
          if (pin) pinQueue.push(p);
          return;
        }
        // The job keeps the pin durably; this covers a download of it already running.
        if (pin) ctx.cache.pinWhenCached?.(p.url);
        toQueue.push(p);
      });
      for (const q of pinQueue) {
        const rec = await ctx.cache.pin?.(q.url, true);
        if (rec) items[q.i] = { ...items[q.i]!, record: rec };
      }
      if (toQueue.length) {
        const jobs = await ctx.scheduler.enqueue(
          toQueue.map((q) => ({ url: q.url, source: 'rpc' })),
          { priority, force, ...(pin ? { pin } : {}), ...(retries !== undefined ? { retries } : {}) },
        );
        const ended = wait ? await ctx.scheduler.wait(jobs.map((j) => j.id)) : jobs;
        // The records of the done ones in one index read, not one per job.
        const doneMd5s = ended.flatMap((j) => (j.state === 'done' && j.md5 ? [j.md5] : []));
        const records = doneMd5s.length ? await ctx.cache.findMany(doneMd5s) : new Map<string, MediaRecord>();
        for (const [k, q] of toQueue.entries()) {
          const j = ended[k]!;
          items[q.i] = j.state === 'done' || j.state === 'failed' ? endedItem(q.url, j, records) : { url: q.url, state: j.state, jobId: j.id };
        }
      }
      return { items };
    },

    async stats(p) {
      obj('stats', p, []);
      return { ...(await ctx.cache.stats()), queue: ctx.scheduler.counts() };
    },

    async verify(p) {
      const o = obj('verify', p, ['md5', 'all']);
      const md5 = md5Param('verify', o, false);
      const all = optBool('verify', o, 'all') ?? false;
      if (md5 !== undefined && all) throw new InvalidParamsError('verify: give either "md5" or "all", not both');
      if (md5 !== undefined) {
        const r = await ctx.cache.verify(md5);
        return { checked: 1, ok: r.ok ? 1 : 0, bad: r.ok ? [] : [{ md5: r.record.md5, localPath: r.record.localPath, reason: r.reason ?? 'mismatch' }] };
      }
      if (!all) throw new InvalidParamsError('verify: give "md5" (an md5 or prefix) or "all": true');
      const md5s: string[] = [];
      for await (const r of ctx.cache.index.records()) md5s.push(r.md5);
      // Hashing in the sweep's kind of worker threads (at lower priority):
      // the socket and the downloads stay responsive however big the cache.
      const pool = new HashPool({ threads: VERIFY_ALL_THREADS });
      const hasher = (path: string): Promise<FileHashes | undefined> => pool.hash(path);
      const outcomes = await mapLimit(md5s, VERIFY_ALL_CONCURRENCY, async (m) => {
        try {
          return await ctx.cache.verify(m, { hasher });
        } catch (e) {
          if (isMediaCacheError(e) && e.code === 'E_NOT_FOUND') return undefined; // removed meanwhile
          throw e;
        }
      }).finally(() => pool.close());
      const bad: VerifyFailure[] = [];
      let checked = 0;
      let ok = 0;
      for (const r of outcomes) {
        if (!r) continue;
        checked++;
        if (r.ok) ok++;
        else bad.push({ md5: r.record.md5, localPath: r.record.localPath, reason: r.reason ?? 'mismatch' });
      }
      return { checked, ok, bad };
    },

    async find(p) {
      const o = obj('find', p, ['md5', 'url']);
      const md5 = md5Param('find', o, false);
      const url = optString('find', o, 'url', 'a URL');
      if (md5 === undefined && url === undefined) throw new InvalidParamsError('find: give "md5" (an md5 or prefix) or "url"');
      if (md5 !== undefined && url !== undefined) throw new InvalidParamsError('find: give either "md5" or "url", not both');
      const rec = md5 !== undefined ? await ctx.cache.find(md5) : await ctx.cache.findByUrl(url!);
      if (!rec) throw new MediaCacheError('E_NOT_FOUND', md5 !== undefined ? `no cached file with md5 ${md5}` : `no cached file for ${url}`, url ? { url } : {});
      return rec;
    },

    async jobs(p) {
      const o = obj('jobs', p, ['state', 'limit']);
      const state = o.state;
      if (state !== undefined && !(JOB_STATES as readonly unknown[]).includes(state)) throw new InvalidParamsError(`jobs: "state" must be one of ${JOB_STATES.join(', ')}`);
      const limit = o.limit;
      if (limit !== undefined && (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > 100_000)) {
        throw new InvalidParamsError('jobs: "limit" must be a whole number from 1 to 100000');
      }
      const q: { state?: JobState; limit?: number } = {};
      if (state !== undefined) q.state = state as JobState;
      if (limit !== undefined) q.limit = limit as number;
      return ctx.scheduler.list(q);
    },

    async sweep(p) {
      const o = obj('sweep', p, ['wait']);
      const wait = optBool('sweep', o, 'wait') ?? false;
      const s = ctx.sweeper.start();
      if (!s.id) await s.done; // the sweeper is closed (shutting down): its E_UNAVAILABLE
      if (!wait) {
        s.done.catch(() => undefined); // reported by the sweeper's own logging
        return { id: s.id, joined: s.joined };
      }
      const report = await s.done;
      return { id: s.id, joined: s.joined, report };
    },

    async status(p) {
      obj('status', p, []);
      const c = ctx.config();
      const paths: { cacheDir: string; indexDir: string; socket: string; inboxes: string[]; configFile?: string; logFile?: string } = {
        cacheDir: c.cacheDir,
        indexDir: c.indexDir,
        socket: c.socket,
        inboxes: [...c.inboxes],
      };
      if (c.configFile) paths.configFile = c.configFile;
      if (c.logFile) paths.logFile = c.logFile;
      const next = ctx.sweepTimer?.nextRunAt();
      const last = ctx.sweeper.lastReport;
      const damage = ctx.damage?.();
      return {
        version: ctx.version,
        pid: process.pid,
        startedAt: ctx.startedAt.toISOString(),
        uptimeMs: Date.now() - ctx.startedAt.getTime(),
        paths,
        config: { concurrency: c.concurrency, perHost: c.perHost, timeoutMs: c.timeoutMs, maxFileSize: c.maxFileSize, sweepSchedule: c.sweepSchedule, logLevel: c.logLevel },
        queue: ctx.scheduler.counts(),
        active: ctx.scheduler.active(),
        sweepRunning: ctx.sweeper.running,
        ...(last ? { lastSweep: last } : {}),
        ...(next ? { nextSweepAt: next.toISOString() } : {}),
        ...quotaFields(await ctx.cache.stats()),
        ...(damage ? { damage } : {}),
        ...(ctx.cluster ? { cluster: await ctx.cluster.view() } : {}),
      };
    },

    async pin(p) {
      return { record: await pinOrUnpin(ctx, 'pin', p, true) };
    },

    async unpin(p) {
      return { record: await pinOrUnpin(ctx, 'unpin', p, false) };
    },

    async refresh(p) {
      const o = obj('refresh', p, ['target']);
      const target = optString('refresh', o, 'target', 'a URL, an md5 or an md5 prefix');
      if (target === undefined) throw new InvalidParamsError('refresh: "target" (a URL, md5 or md5 prefix) is required');
      if (!ctx.cache.refresh) throw new MediaCacheError('E_UNAVAILABLE', 'this daemon cannot revalidate');
      return { items: await ctx.cache.refresh(targetParam('refresh', target)) };
    },

    async remove(p) {
      const o = obj('remove', p, ['md5']);
      const md5 = md5Param('remove', o, true)!;
      // Deleting by a short prefix is how the wrong file goes: ask for enough digits to mean one file.
      if (md5.length < MIN_REMOVE_PREFIX) {
        throw new InvalidParamsError(`remove: give at least ${MIN_REMOVE_PREFIX} hex digits of the md5 (or all 32), got "${md5}"`);
      }
      return { removed: await ctx.cache.remove(md5) };
    },

    async cancel(p) {
      const o = obj('cancel', p, ['id', 'url']);
      const id = jobIdParam('cancel', o);
      const url = optString('cancel', o, 'url', 'a URL');
      if ((id === undefined) === (url === undefined)) throw new InvalidParamsError('cancel: give either "id" (a job id) or "url"');
      return ctx.scheduler.cancel(id !== undefined ? { id } : { url: url! });
    },

    async retry(p) {
      const o = obj('retry', p, ['id', 'failed']);
      const id = jobIdParam('retry', o);
      const failed = optBool('retry', o, 'failed') ?? false;
      if ((id === undefined) === !failed) throw new InvalidParamsError('retry: give either "id" (a failed job) or "failed": true (every failed job)');
      return { jobs: await ctx.scheduler.retry(id !== undefined ? { id } : { failed: true }) };
    },

    async prune(p) {
      const o = obj('prune', p, ['olderThanMs', 'keep']);
      const olderThanMs = optInt('prune', o, 'olderThanMs', 0, Number.MAX_SAFE_INTEGER);
      const keep = optInt('prune', o, 'keep', 0, Number.MAX_SAFE_INTEGER);
      return ctx.scheduler.prune({ ...(olderThanMs !== undefined ? { olderThanMs } : {}), ...(keep !== undefined ? { keep } : {}) });
    },

    async subscribe(p, conn) {
      const o = obj('subscribe', p, ['events']);
      let events: EventName[] = [...EVENT_NAMES];
      if (o.events !== undefined) {
        if (!Array.isArray(o.events) || !o.events.every((e) => (EVENT_NAMES as readonly unknown[]).includes(e))) {
          throw new InvalidParamsError(`subscribe: "events" must be a list of ${EVENT_NAMES.join(', ')}`);
        }
        events = o.events as EventName[];
      }
      conn.subscribe(events);
      return { events: [...conn.subscriptions] };
    },
  };
}
