/**
 * Scheduler: the daemon's durable download queue.
 *
 * Invariants:
 * - enqueue() resolves only once its jobs are on disk (JobStore.flush), so a
 *   caller (an inbox file about to be moved, an RPC reply) may rely on them.
 * - A URL has at most one queued-or-running job; enqueueing it again returns
 *   that job (a forced request upgrades a queued one).
 * - Dispatch order is (priority asc, sequence asc) among hosts with a free
 *   slot, within `concurrency` overall and `perHost` per hostname (see
 *   scheduler-slots.ts for stalled transfers).
 * - The scheduler is the only retry layer for daemon jobs: each try is one
 *   MediaCache fetch without retries of its own, and scheduler-retry.ts
 *   decides what is tried again and when. A job waiting for its next try is
 *   queued (nextRetryAt), not running: it holds no slot. E_DISK_FULL keeps the
 *   job queued and pauses all dispatch with a growing backoff (nothing fits
 *   until space is freed; the daemon stays up). Anything else fails the job.
 * - A job's `done` is never durable before its index record: the job store
 *   learns of it only after the index has flushed (commitDone).
 * - drain(): running jobs get `graceMs` to finish, then are aborted and put
 *   back to queued; a job is never reported failed because we shut down.
 */
import { EventEmitter } from 'node:events';
import { MediaCacheError, toMediaCacheError } from '../../core/errors.js';
import type { Logger } from '../../core/util/logger.js';
import type { ActiveDownload, JobInfo, JobState, JobsResult, QueueCounts, RpcEvent } from '../../core/protocol/rpc.js';
import type { MediaRecord } from '../../core/types.js';
import { parseMediaUrl } from '../../core/fetch/url.js';
import type { DownloadOptions } from '../../core/cache/media-cache.js';
import { DispatchQueue, type QueueRef } from './queue.js';
import { backoffMs } from './backoff.js';
import { listJobs, toJobInfo } from './list.js';
import { jobIdOf, type JobRecord, type JobStore, type PruneOptions } from './job-store.js';
import { RETRY_POLICY_DEFAULTS, maxAttemptsOf, retryDelayMs, shouldRetry, type RetryPolicy } from './retry-policy.js';
import { LAG_DEFAULTS, Slots, hostKeyOf, type SlotHolder } from './slots.js';
import { findStaleDone } from './repair.js';
import { CommitLoop, RetryClock } from './timers.js';
import { cancelJob, retryJobs, type ControlAccess } from './control.js';

export { toJobInfo };

/** What the scheduler needs from MediaCache (a MediaCache satisfies it). */
export interface Downloader {
  download(url: string, opts?: DownloadOptions): Promise<MediaRecord>;
  /**
   * The index the cache commits records to. When present, a job's `done` is
   * persisted only after `flush()` resolved, and start() checks that done
   * jobs of a crashed run have their record.
   */
  readonly index?: {
    flush(): Promise<void>;
    /** The embedded index's synchronous view, for the crash check (absent in cluster mode, whose jobs are not in this store). */
    readonly embedded?: { md5ForUrl(url: string): string | undefined } | undefined;
  };
}

export interface EnqueueItem {
  url: string;
  /** "rpc" or "<inbox file>:<line>". */
  source: string;
}

export interface EnqueueOptions {
  /** Lower runs first. */
  priority: number;
  force?: boolean;
  /** Pin each URL's content once it is cached (durable with the job). */
  pin?: boolean;
  /** Retries for these jobs (default: the scheduler's `retries`). */
  retries?: number;
}

export interface SchedulerOptions {
  cache: Downloader;
  store: JobStore;
  concurrency: number;
  perHost?: number;
  logger: Logger;
  now?: () => number;
  /** Minimum gap between job.progress events of one job (default 250 ms). */
  progressIntervalMs?: number;
  /** Backoff while the disk is full: first delay and cap (default 1 s, 30 s). */
  diskFullBaseMs?: number;
  diskFullMaxMs?: number;
  /** Retries after a retryable failure (default 3: at most 4 fetches per job). */
  retries?: number;
  /** Backoff between tries: first delay and cap, also the cap on Retry-After (default 5 s, 5 min). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Lag detection window in ms, 0 = off (default 3000), and the rate below which a transfer lags (default 2048 B/s). */
  lagWindowMs?: number;
  lagMinBytesPerSec?: number;
}

interface Running extends SlotHolder {
  job: JobRecord;
  ctrl: AbortController;
  startedAt: number;
  lastEmit: number;
  /** Set by drain: whatever the outcome of an abort, the job goes back to queued. */
  requeue: boolean;
  /** Set by cancel: the job ends as failed with E_ABORTED. */
  cancel?: MediaCacheError;
  done: Promise<void>;
}

const ENDED: ReadonlySet<JobState> = new Set(['done', 'failed']);

function checkLimit(name: string, v: number, min = 1): number {
  if (!Number.isSafeInteger(v) || v < min) throw new MediaCacheError('E_BAD_REQUEST', `${name} must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

export class Scheduler extends EventEmitter {
  private readonly cache: Downloader;
  private readonly store: JobStore;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly o: Required<Pick<SchedulerOptions, 'progressIntervalMs' | 'diskFullBaseMs' | 'diskFullMaxMs'>>;
  readonly retryPolicy: Readonly<RetryPolicy>;
  private readonly slots: Slots;
  private readonly queue = new DispatchQueue();
  /** Current queue generation per queued job (stale entries are skipped). */
  private readonly gens = new Map<string, number>();
  /** Queued jobs waiting for their nextRetryAt, and the disk-full pause. */
  private readonly clock: RetryClock;
  private lagTimer: NodeJS.Timeout | undefined;
  /** Queued or running job per URL (dedup). */
  private readonly byUrl = new Map<string, JobRecord>();
  private readonly running = new Map<string, Running>();
  private readonly waiters = new Map<string, Array<(j: JobInfo) => void>>();
  /** Downloads finished, waiting for the index flush before they are done. */
  private readonly commits: CommitLoop<{ job: JobRecord; rec: MediaRecord }>;
  private diskFullStreak = 0;
  private started = false;
  private draining = false;

  constructor(o: SchedulerOptions) {
    super();
    this.cache = o.cache;
    this.store = o.store;
    this.log = o.logger;
    this.now = o.now ?? Date.now;
    const concurrency = checkLimit('concurrency', o.concurrency);
    this.slots = new Slots(concurrency, checkLimit('perHost', o.perHost ?? concurrency), {
      windowMs: o.lagWindowMs ?? LAG_DEFAULTS.windowMs,
      minBytesPerSec: o.lagMinBytesPerSec ?? LAG_DEFAULTS.minBytesPerSec,
    });
    this.o = {
      progressIntervalMs: o.progressIntervalMs ?? 250,
      diskFullBaseMs: o.diskFullBaseMs ?? 1000,
      diskFullMaxMs: o.diskFullMaxMs ?? 30_000,
    };
    this.clock = new RetryClock(this.now, (ids) => {
      for (const id of ids) {
        const j = this.store.get(id);
        // They were ahead of everything queued since: back to the front.
        if (j && j.state === 'queued') this.push(j, true);
      }
      this.pump();
    });
    // A job's `done` is never durable before its index record.
    this.commits = new CommitLoop(
      () => this.cache.index?.flush(),
      (batch, err) => {
        const e = err === undefined ? undefined : toMediaCacheError(err);
        for (const { job, rec } of batch) {
          if (e) this.failedTry(job, e, 'running');
          else this.markDone(job, rec);
        }
        this.pump();
      },
    );
    this.retryPolicy = Object.freeze({
      retries: checkLimit('retries', o.retries ?? RETRY_POLICY_DEFAULTS.retries, 0),
      baseMs: o.retryBaseMs ?? RETRY_POLICY_DEFAULTS.baseMs,
      maxMs: o.retryMaxMs ?? RETRY_POLICY_DEFAULTS.maxMs,
    });
  }

  /**
   * Load the stored queue, re-queue jobs a crash left running (and done jobs
   * a crash left without their index record), start dispatching.
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    let requeued = 0;
    const now = this.now();
    const nowIso = new Date(now).toISOString();
    const embedded = this.cache.index?.embedded;
    if (this.store.recoveredFromCrash && embedded) {
      const stale = findStaleDone(this.store.values(), embedded);
      for (const j of stale) {
        j.state = 'queued';
        j.updatedAt = nowIso;
        delete j.md5;
        this.store.put(j, 'done');
      }
      if (stale.length > 0) this.log.warn('jobs were done but their index records were lost in a crash; running them again', { count: stale.length, jobs: stale.slice(0, 10).map((j) => j.id) });
    }
    for (const j of this.store.values()) {
      if (j.state === 'running') {
        j.state = 'queued';
        j.updatedAt = nowIso;
        this.store.put(j, 'running');
        requeued++;
      }
      if (j.state !== 'queued') continue;
      this.byUrl.set(j.url, j);
      const at = j.nextRetryAt ? Date.parse(j.nextRetryAt) : 0;
      if (at > now) this.delay(j, at);
      else this.push(j);
    }
    if (requeued > 0) this.log.info('re-queued jobs left running by an earlier run', { count: requeued });
    this.pump();
  }

  async enqueue(items: EnqueueItem[], o: EnqueueOptions): Promise<JobInfo[]> {
    if (this.draining) throw new MediaCacheError('E_UNAVAILABLE', 'the daemon is shutting down; not taking new jobs');
    const force = o.force === true;
    const maxAttempts = 1 + (o.retries === undefined ? this.retryPolicy.retries : checkLimit('retries', o.retries, 0));
    const nowIso = new Date(this.now()).toISOString();
    const out: JobRecord[] = [];
    const events: RpcEvent[] = [];
    for (const item of items) {
      let href: string;
      try {
        href = parseMediaUrl(item.url).href;
      } catch (e) {
        const err = toMediaCacheError(e, item.url);
        const j = this.newJob(String(item.url), item.source, o.priority, nowIso, force, maxAttempts);
        j.state = 'failed';
        j.error = err.toJSON();
        this.store.put(j);
        out.push(j);
        events.push({ type: 'job.failed', job: toJobInfo(j), error: err.toJSON() });
        continue;
      }
      const existing = this.byUrl.get(href);
      if (existing && !(force && !existing.force && existing.state === 'running')) {
        this.mergeInto(existing, o.priority, force, nowIso, o.pin === true);
        out.push(existing);
        continue;
      }
      const j = this.newJob(href, item.source, o.priority, nowIso, force, maxAttempts);
      if (o.pin) j.pin = true;
      this.store.put(j);
      this.byUrl.set(href, j);
      this.push(j);
      out.push(j);
      events.push({ type: 'job.queued', job: toJobInfo(j) });
    }
    try {
      await this.store.flush();
    } catch (e) {
      // The jobs stay queued in memory and the store keeps retrying the
      // write; the caller learns they are not durable yet (ENOSPC → E_DISK_FULL).
      this.pump();
      throw toMediaCacheError(e);
    }
    for (const ev of events) this.emitEvent(ev);
    this.pump();
    return out.map(toJobInfo);
  }

  private newJob(url: string, source: string, priority: number, nowIso: string, force: boolean, maxAttempts: number): JobRecord {
    const seq = this.store.nextSeq();
    const j: JobRecord = { id: jobIdOf(seq), seq, url, state: 'queued', priority, attempts: 0, maxAttempts, createdAt: nowIso, updatedAt: nowIso, source };
    if (force) j.force = true;
    return j;
  }

  /** A second request for a queued/running URL: it may raise the priority or ask for force. */
  private mergeInto(j: JobRecord, priority: number, force: boolean, nowIso: string, pin: boolean): void {
    let changed = false;
    // A pin asked while the download runs still applies: the flag is read when it ends.
    if (pin && !j.pin && (j.state === 'queued' || j.state === 'running')) {
      j.pin = true;
      changed = true;
    }
    if (j.state !== 'queued') {
      if (changed) {
        j.updatedAt = nowIso;
        this.store.put(j);
      }
      return;
    }
    if (force && !j.force) {
      j.force = true;
      changed = true;
    }
    if (priority < j.priority) {
      j.priority = priority;
      changed = true;
      if (!this.clock.has(j.id)) this.push(j);
    }
    if (changed) {
      j.updatedAt = nowIso;
      this.store.put(j);
    }
  }

  private push(j: JobRecord, front = false): void {
    const gen = (this.gens.get(j.id) ?? 0) + 1;
    this.gens.set(j.id, gen);
    this.queue.add({ id: j.id, seq: j.seq, host: hostKeyOf(j.url), priority: j.priority, gen }, front);
  }

  private delay(j: JobRecord, at: number): void {
    this.gens.delete(j.id);
    this.clock.set(j.id, at);
  }

  private isLive = (r: QueueRef): boolean => {
    if (this.gens.get(r.id) !== r.gen) return false;
    const j = this.store.get(r.id);
    return j !== undefined && j.state === 'queued' && j.priority === r.priority;
  };

  private hasRoom = (host: string): boolean => this.slots.hasRoomFor(host);

  /** Start as many jobs as the limits allow. */
  private pump(): void {
    if (!this.started || this.draining) return;
    if (this.clock.paused) return;
    while (this.slots.hasRoom()) {
      const ref = this.queue.next(this.isLive, this.hasRoom);
      if (!ref) break;
      this.gens.delete(ref.id);
      this.run(this.store.get(ref.id)!, ref.host);
    }
  }

  private run(j: JobRecord, host: string): void {
    const now = this.now();
    j.state = 'running';
    j.attempts++;
    j.updatedAt = new Date(now).toISOString();
    delete j.nextRetryAt;
    delete j.bytes;
    delete j.totalBytes;
    this.store.put(j, 'queued', { lazy: true });
    const r: Running = {
      job: j, host, ctrl: new AbortController(), startedAt: now, lastEmit: 0, requeue: false, done: Promise.resolve(),
      bytes: () => j.bytes ?? 0, lagging: false, markAt: now, markBytes: 0,
    };
    this.slots.take(r, now);
    this.running.set(j.id, r);
    this.armLagTimer();
    const onProgress = (bytes: number, total?: number): void => this.progress(r, bytes, total);
    // One fetch per try: retries are ours (scheduler-retry.ts), not the cache's.
    // durable: false: the commit loop below makes the record durable (batched) before `done`.
    const opts: DownloadOptions = { signal: r.ctrl.signal, onProgress, retries: 0, durable: false };
    if (j.force) opts.force = true;
    if (j.pin) opts.pin = true;
    let p: Promise<MediaRecord>;
    try {
      p = this.cache.download(j.url, opts);
    } catch (e) {
      p = Promise.reject(e);
    }
    r.done = p.then(
      (rec) => this.finish(r, rec, undefined),
      (e: unknown) => this.finish(r, undefined, toMediaCacheError(e, j.url)),
    );
  }

  /** While downloads run, re-measure their rates; a newly lagging one lends its slot. */
  private armLagTimer(): void {
    const w = this.slots.lag.windowMs;
    if (this.lagTimer || w <= 0 || this.running.size === 0) return;
    this.lagTimer = setInterval(() => {
      if (this.running.size === 0) {
        clearInterval(this.lagTimer);
        this.lagTimer = undefined;
        return;
      }
      if (this.slots.sample(this.running.values(), this.now())) this.pump();
    }, Math.max(100, Math.floor(w / 3)));
    this.lagTimer.unref();
  }

  private progress(r: Running, bytes: number, total?: number): void {
    const j = r.job;
    j.bytes = bytes;
    if (total !== undefined) j.totalBytes = total;
    const now = this.now();
    if (now - r.lastEmit < this.o.progressIntervalMs && bytes !== total) return;
    r.lastEmit = now;
    const ev: RpcEvent = { type: 'job.progress', jobId: j.id, url: j.url, bytes, attempt: j.attempts };
    if (total !== undefined) ev.totalBytes = total;
    this.emitEvent(ev);
  }

  private finish(r: Running, rec: MediaRecord | undefined, err: MediaCacheError | undefined): Promise<void> | void {
    const j = r.job;
    this.running.delete(j.id);
    this.slots.release(r);
    if (rec) {
      this.diskFullStreak = 0;
      const p = this.commitDone(j, rec);
      this.pump();
      return p;
    }
    const e = r.cancel ?? err ?? new MediaCacheError('E_INTERNAL', 'download ended without a result');
    if (!r.cancel && (r.requeue || (this.draining && e.code === 'E_ABORTED'))) {
      // Shutting down: not an attempt, just not finished yet.
      j.state = 'queued';
      j.attempts = Math.max(0, j.attempts - 1);
      j.updatedAt = new Date(this.now()).toISOString();
      this.store.put(j, 'running');
      this.push(j, true);
    } else this.failedTry(j, e, 'running');
    this.pump();
  }

  /**
   * A try failed: pause for a full disk, wait for a retry, or fail the job.
   * `prev` is the job's state in the store.
   */
  private failedTry(j: JobRecord, e: MediaCacheError, prev: JobState): void {
    const now = this.now();
    j.updatedAt = new Date(now).toISOString();
    j.lastError = e.toJSON();
    if (e.code === 'E_DISK_FULL') {
      this.diskFullStreak++;
      const wait = backoffMs(this.diskFullStreak - 1, this.o.diskFullBaseMs, this.o.diskFullMaxMs);
      const until = this.clock.pause(now + wait);
      j.state = 'queued';
      j.pauses = (j.pauses ?? 0) + 1;
      j.nextRetryAt = new Date(until).toISOString();
      this.store.put(j, prev);
      this.push(j, true);
      this.log.warn('disk full: download kept queued, dispatch paused', { jobId: j.id, url: j.url, pauseMs: wait });
      this.emitEvent({ type: 'job.retrying', job: toJobInfo(j), error: e.toJSON(), delayMs: wait });
    } else if (shouldRetry(j, e, this.retryPolicy)) {
      const delayMs = retryDelayMs(j, e, this.retryPolicy);
      const at = now + delayMs;
      j.state = 'queued';
      j.nextRetryAt = new Date(at).toISOString();
      this.store.put(j, prev);
      this.delay(j, at);
      this.log.info('download failed; retrying later', { jobId: j.id, url: j.url, code: e.code, status: e.status, error: e.message, attempt: j.attempts, maxAttempts: maxAttemptsOf(j, this.retryPolicy), nextRetryAt: j.nextRetryAt });
      this.emitEvent({ type: 'job.retrying', job: toJobInfo(j), error: e.toJSON(), delayMs });
    } else {
      this.fail(j, e, prev);
    }
  }

  private fail(j: JobRecord, e: MediaCacheError, prev: JobState): void {
    j.state = 'failed';
    j.error = e.toJSON();
    j.lastError = e.toJSON();
    j.updatedAt = new Date(this.now()).toISOString();
    delete j.nextRetryAt;
    this.store.put(j, prev, { lazy: true });
    this.ended(j);
    this.log.warn('download failed', { jobId: j.id, url: j.url, code: e.code, status: e.status, error: e.message, attempts: j.attempts });
    this.emitEvent({ type: 'job.failed', job: toJobInfo(j), error: e.toJSON() });
  }

  /**
   * A download succeeded: the job becomes done once the index holds its
   * record durably, so the job store can never say `done` for a record a
   * crash lost. Jobs finishing while a flush runs share the next one.
   */
  private commitDone(j: JobRecord, rec: MediaRecord): Promise<void> {
    return this.commits.add({ job: j, rec });
  }

  private markDone(j: JobRecord, rec: MediaRecord): void {
    j.state = 'done';
    j.md5 = rec.md5;
    j.bytes = rec.fileSize;
    j.totalBytes = rec.fileSize;
    j.updatedAt = new Date(this.now()).toISOString();
    delete j.error;
    delete j.nextRetryAt;
    this.store.put(j, 'running', { lazy: true });
    this.ended(j);
    this.emitEvent({ type: 'job.done', job: toJobInfo(j), record: rec });
  }

  private ended(j: JobRecord): void {
    if (this.byUrl.get(j.url) === j) this.byUrl.delete(j.url);
    const ws = this.waiters.get(j.id);
    if (!ws) return;
    this.waiters.delete(j.id);
    const info = toJobInfo(j);
    for (const w of ws) w(info);
  }

  private emitEvent(ev: RpcEvent): void {
    try {
      this.emit('event', ev);
    } catch (e) {
      this.log.warn('event listener threw', { type: ev.type, error: String(e) });
    }
  }

  /** Resolves when every job has ended (done or failed). Unknown ids: E_NOT_FOUND. */
  wait(jobIds: string[]): Promise<JobInfo[]> {
    return Promise.all(
      jobIds.map((id) => {
        const j = this.store.get(id);
        if (!j) return Promise.reject(new MediaCacheError('E_NOT_FOUND', `no job ${id}`));
        if (ENDED.has(j.state)) return Promise.resolve(toJobInfo(j));
        return new Promise<JobInfo>((resolve) => {
          const ws = this.waiters.get(id);
          if (ws) ws.push(resolve);
          else this.waiters.set(id, [resolve]);
        });
      }),
    );
  }

  get(jobId: string): JobInfo | undefined {
    const j = this.store.get(jobId);
    return j && toJobInfo(j);
  }

  /** See listJobs: running, queued in dispatch order, then ended newest first. */
  list(o: { state?: JobState; limit?: number } = {}): JobsResult {
    return listJobs(this.store.values(), o);
  }

  counts(): QueueCounts {
    return this.store.counts();
  }

  active(): ActiveDownload[] {
    return [...this.running.values()].map((r) => {
      const a: ActiveDownload = { jobId: r.job.id, url: r.job.url, bytes: r.job.bytes ?? 0, startedAt: new Date(r.startedAt).toISOString() };
      if (r.job.totalBytes !== undefined) a.totalBytes = r.job.totalBytes;
      if (r.lagging) a.stalled = true;
      return a;
    });
  }

  get limits(): { concurrency: number; perHost: number } {
    return { concurrency: this.slots.concurrency, perHost: this.slots.perHost };
  }

  /** New limits apply to the next dispatch; running downloads are not interrupted. */
  setLimits(o: { concurrency?: number; perHost?: number }): void {
    if (o.concurrency !== undefined) this.slots.concurrency = checkLimit('concurrency', o.concurrency);
    if (o.perHost !== undefined) this.slots.perHost = checkLimit('perHost', o.perHost);
    this.pump();
  }

  // ---- job control (RPC cancel / retry; see scheduler-control.ts) ----

  private readonly control: ControlAccess = {
    store: () => this.store,
    byUrl: (url) => this.byUrl.get(url),
    running: (id) => this.running.get(id),
    unqueue: (id) => {
      this.clock.delete(id);
      this.gens.delete(id);
    },
    requeue: (j) => {
      this.byUrl.set(j.url, j);
      this.push(j);
    },
    fail: (j, e, prev) => this.fail(j, e, prev),
    commitsIdle: () => this.commits.idle(),
    emit: (ev) => this.emitEvent(ev),
    pump: () => this.pump(),
    now: () => this.now(),
    draining: () => this.draining,
  };

  /** See cancelJob. */
  cancel(o: { id?: string; url?: string }): Promise<{ job: JobInfo; cancelled: boolean }> {
    return cancelJob(this.control, o);
  }

  /** See retryJobs. */
  retry(o: { id?: string; failed?: boolean }): Promise<JobInfo[]> {
    return retryJobs(this.control, o);
  }

  /** Forget ended jobs now (see JobStore.prune), durably. */
  async prune(o: PruneOptions = {}): Promise<{ pruned: number; remaining: number }> {
    const pruned = this.store.prune(o);
    await this.store.flush();
    const c = this.store.counts();
    return { pruned, remaining: c.done + c.failed };
  }

  /** Stop dispatching; give running jobs `graceMs`, then abort and re-queue them; flush. */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    this.clock.stop();
    if (this.lagTimer) clearInterval(this.lagTimer);
    this.lagTimer = undefined;
    const all = (): Promise<unknown> => Promise.allSettled([...this.running.values()].map((r) => r.done));
    if (this.running.size > 0 && graceMs > 0) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([all(), new Promise<void>((r) => (t = setTimeout(r, graceMs)))]);
      clearTimeout(t);
    }
    if (this.running.size > 0) {
      this.log.info('aborting running downloads; they stay queued', { count: this.running.size });
      for (const r of this.running.values()) {
        r.requeue = true;
        r.ctrl.abort(new MediaCacheError('E_ABORTED', 'the daemon is shutting down'));
      }
      await all();
    }
    await this.commits.idle();
    await this.store.flush();
  }
}
