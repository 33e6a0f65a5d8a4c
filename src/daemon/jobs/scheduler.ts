/**
 * Scheduler: the daemon's durable download queue (SPEC, Scheduler).
 *
 * Invariants:
 * - enqueue() resolves only once its jobs are on disk (JobStore.flush), so a
 *   caller (an inbox file about to be moved, an RPC reply) may rely on them.
 * - A URL has at most one queued-or-running job; enqueueing it again returns
 *   that job (a forced request upgrades a queued one).
 * - Dispatch order is (priority asc, sequence asc) among hosts with a free
 *   slot, within `concurrency` overall and `perHost` per host.
 * - MediaCache already retries a single download (network, 408, 429, 5xx).
 *   On top of that, E_DISK_FULL keeps the job queued and pauses all dispatch
 *   with a growing backoff (nothing fits until space is freed; the daemon stays
 *   up), and E_UNAVAILABLE / E_NETWORK keep the job queued with a per-job
 *   backoff for a few more attempts. Anything else ends the job as failed.
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
import { jobIdOf, type JobRecord, type JobStore } from './job-store.js';
import { backoffMs } from './backoff.js';
import { listJobs, toJobInfo } from './list.js';

export { toJobInfo };

/** The one thing the scheduler needs from MediaCache (a MediaCache satisfies it). */
export interface Downloader {
  download(url: string, opts?: DownloadOptions): Promise<MediaRecord>;
}

export interface EnqueueItem {
  url: string;
  /** "rpc" or "<inbox file>:<line>". */
  source: string;
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
  /** Backoff for E_UNAVAILABLE / E_NETWORK (default 5 s, 5 min) and how many scheduler attempts in all (default 5). */
  unavailableBaseMs?: number;
  unavailableMaxMs?: number;
  maxAttempts?: number;
}

interface Running {
  job: JobRecord;
  host: string;
  ctrl: AbortController;
  startedAt: number;
  lastEmit: number;
  /** Set by drain: whatever the outcome of an abort, the job goes back to queued. */
  requeue: boolean;
  done: Promise<void>;
}

const ENDED: ReadonlySet<JobState> = new Set(['done', 'failed']);
const UNAVAILABLE_CLASS = new Set(['E_UNAVAILABLE', 'E_NETWORK']);

function checkLimit(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new MediaCacheError('E_BAD_REQUEST', `${name} must be an integer >= 1, got ${String(v)}`);
  return v;
}

export class Scheduler extends EventEmitter {
  private readonly cache: Downloader;
  private readonly store: JobStore;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly o: Required<Pick<SchedulerOptions, 'progressIntervalMs' | 'diskFullBaseMs' | 'diskFullMaxMs' | 'unavailableBaseMs' | 'unavailableMaxMs' | 'maxAttempts'>>;
  private concurrency: number;
  private perHost: number;
  private readonly queue = new DispatchQueue();
  /** Current queue generation per queued job (stale entries are skipped). */
  private readonly gens = new Map<string, number>();
  /** Queued jobs waiting for their notBefore. */
  private readonly delayed = new Map<string, number>();
  private delayTimer: NodeJS.Timeout | undefined;
  private delayTimerAt = Infinity;
  /** Queued or running job per URL (dedup). */
  private readonly byUrl = new Map<string, JobRecord>();
  private readonly running = new Map<string, Running>();
  private readonly hostRunning = new Map<string, number>();
  private readonly waiters = new Map<string, Array<(j: JobInfo) => void>>();
  private pausedUntil = 0;
  private diskFullStreak = 0;
  private started = false;
  private draining = false;

  constructor(o: SchedulerOptions) {
    super();
    this.cache = o.cache;
    this.store = o.store;
    this.log = o.logger;
    this.now = o.now ?? Date.now;
    this.concurrency = checkLimit('concurrency', o.concurrency);
    this.perHost = checkLimit('perHost', o.perHost ?? o.concurrency);
    this.o = {
      progressIntervalMs: o.progressIntervalMs ?? 250,
      diskFullBaseMs: o.diskFullBaseMs ?? 1000,
      diskFullMaxMs: o.diskFullMaxMs ?? 30_000,
      unavailableBaseMs: o.unavailableBaseMs ?? 5000,
      unavailableMaxMs: o.unavailableMaxMs ?? 300_000,
      maxAttempts: o.maxAttempts ?? 5,
    };
  }

  /** Load the stored queue, re-queue jobs a crash left running, start dispatching. */
  start(): void {
    if (this.started) return;
    this.started = true;
    let requeued = 0;
    const now = this.now();
    for (const j of this.store.values()) {
      if (j.state === 'running') {
        j.state = 'queued';
        j.updatedAt = new Date(now).toISOString();
        this.store.put(j, 'running');
        requeued++;
      }
      if (j.state !== 'queued') continue;
      this.byUrl.set(j.url, j);
      const at = j.notBefore ? Date.parse(j.notBefore) : 0;
      if (at > now) this.delay(j, at);
      else this.push(j);
    }
    if (requeued > 0) this.log.info('re-queued jobs left running by an earlier run', { count: requeued });
    this.pump();
  }

  async enqueue(items: EnqueueItem[], o: { priority: number; force?: boolean }): Promise<JobInfo[]> {
    if (this.draining) throw new MediaCacheError('E_UNAVAILABLE', 'the daemon is shutting down; not taking new jobs');
    const force = o.force === true;
    const nowIso = new Date(this.now()).toISOString();
    const out: JobRecord[] = [];
    const events: RpcEvent[] = [];
    for (const item of items) {
      let href: string;
      try {
        href = parseMediaUrl(item.url).href;
      } catch (e) {
        const err = toMediaCacheError(e, item.url);
        const j = this.newJob(String(item.url), item.source, o.priority, nowIso, force);
        j.state = 'failed';
        j.error = err.toJSON();
        this.store.put(j);
        out.push(j);
        events.push({ type: 'job.failed', job: toJobInfo(j), error: err.toJSON() });
        continue;
      }
      const existing = this.byUrl.get(href);
      if (existing && !(force && !existing.force && existing.state === 'running')) {
        this.mergeInto(existing, o.priority, force, nowIso);
        out.push(existing);
        continue;
      }
      const j = this.newJob(href, item.source, o.priority, nowIso, force);
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

  private newJob(url: string, source: string, priority: number, nowIso: string, force: boolean): JobRecord {
    const seq = this.store.nextSeq();
    const j: JobRecord = { id: jobIdOf(seq), seq, url, state: 'queued', priority, attempts: 0, createdAt: nowIso, updatedAt: nowIso, source };
    if (force) j.force = true;
    return j;
  }

  /** A second request for a queued/running URL: it may raise the priority or ask for force. */
  private mergeInto(j: JobRecord, priority: number, force: boolean, nowIso: string): void {
    if (j.state !== 'queued') return;
    let changed = false;
    if (force && !j.force) {
      j.force = true;
      changed = true;
    }
    if (priority < j.priority) {
      j.priority = priority;
      changed = true;
      if (!this.delayed.has(j.id)) this.push(j);
    }
    if (changed) {
      j.updatedAt = nowIso;
      this.store.put(j);
    }
  }

  private push(j: JobRecord, front = false): void {
    const gen = (this.gens.get(j.id) ?? 0) + 1;
    this.gens.set(j.id, gen);
    this.queue.add({ id: j.id, seq: j.seq, host: hostOf(j.url), priority: j.priority, gen }, front);
  }

  private delay(j: JobRecord, at: number): void {
    this.gens.delete(j.id);
    this.delayed.set(j.id, at);
    this.armDelayTimer();
  }

  private armDelayTimer(): void {
    let next = Infinity;
    for (const at of this.delayed.values()) next = Math.min(next, at);
    if (this.pausedUntil > this.now()) next = Math.min(next, this.pausedUntil);
    if (next === this.delayTimerAt && this.delayTimer) return;
    if (this.delayTimer) clearTimeout(this.delayTimer);
    this.delayTimer = undefined;
    this.delayTimerAt = next;
    if (next === Infinity || this.draining) return;
    // Not unref'd: queued work waiting for its time is a reason to stay alive (drain clears it).
    this.delayTimer = setTimeout(() => this.onDelayTimer(), Math.max(0, next - this.now()));
  }

  private onDelayTimer(): void {
    this.delayTimer = undefined;
    this.delayTimerAt = Infinity;
    const now = this.now();
    for (const [id, at] of this.delayed) {
      if (at > now) continue;
      this.delayed.delete(id);
      const j = this.store.get(id);
      // They were ahead of everything queued since: back to the front.
      if (j && j.state === 'queued') this.push(j, true);
    }
    this.armDelayTimer();
    this.pump();
  }

  private isLive = (r: QueueRef): boolean => {
    if (this.gens.get(r.id) !== r.gen) return false;
    const j = this.store.get(r.id);
    return j !== undefined && j.state === 'queued' && j.priority === r.priority;
  };

  private hasRoom = (host: string): boolean => (this.hostRunning.get(host) ?? 0) < this.perHost;

  /** Start as many jobs as the limits allow. */
  private pump(): void {
    if (!this.started || this.draining) return;
    if (this.pausedUntil > this.now()) {
      this.armDelayTimer();
      return;
    }
    while (this.running.size < this.concurrency) {
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
    delete j.notBefore;
    delete j.bytes;
    delete j.totalBytes;
    this.store.put(j, 'queued', { lazy: true });
    this.hostRunning.set(host, (this.hostRunning.get(host) ?? 0) + 1);
    const r: Running = { job: j, host, ctrl: new AbortController(), startedAt: now, lastEmit: 0, requeue: false, done: Promise.resolve() };
    this.running.set(j.id, r);
    const onProgress = (bytes: number, total?: number): void => this.progress(r, bytes, total);
    const opts: DownloadOptions = { signal: r.ctrl.signal, onProgress };
    if (j.force) opts.force = true;
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

  private progress(r: Running, bytes: number, total?: number): void {
    const j = r.job;
    j.bytes = bytes;
    if (total !== undefined) j.totalBytes = total;
    const now = this.now();
    if (now - r.lastEmit < this.o.progressIntervalMs && bytes !== total) return;
    r.lastEmit = now;
    const ev: RpcEvent = { type: 'job.progress', jobId: j.id, url: j.url, bytes };
    if (total !== undefined) ev.totalBytes = total;
    this.emitEvent(ev);
  }

  private finish(r: Running, rec: MediaRecord | undefined, err: MediaCacheError | undefined): void {
    const j = r.job;
    this.running.delete(j.id);
    const left = (this.hostRunning.get(r.host) ?? 1) - 1;
    if (left > 0) this.hostRunning.set(r.host, left);
    else this.hostRunning.delete(r.host);
    const now = this.now();
    j.updatedAt = new Date(now).toISOString();

    if (rec) {
      this.diskFullStreak = 0;
      j.state = 'done';
      j.md5 = rec.md5;
      j.bytes = rec.fileSize;
      j.totalBytes = rec.fileSize;
      delete j.error;
      this.store.put(j, 'running', { lazy: true });
      this.ended(j);
      this.emitEvent({ type: 'job.done', job: toJobInfo(j), record: rec });
    } else if (err && (r.requeue || (this.draining && err.code === 'E_ABORTED'))) {
      // Shutting down: not an attempt, just not finished yet.
      j.state = 'queued';
      j.attempts = Math.max(0, j.attempts - 1);
      this.store.put(j, 'running');
      this.push(j, true);
    } else if (err && err.code === 'E_DISK_FULL') {
      this.diskFullStreak++;
      const wait = backoffMs(this.diskFullStreak - 1, this.o.diskFullBaseMs, this.o.diskFullMaxMs);
      this.pausedUntil = Math.max(this.pausedUntil, now + wait);
      j.state = 'queued';
      j.error = err.toJSON();
      j.notBefore = new Date(this.pausedUntil).toISOString();
      this.store.put(j, 'running');
      this.push(j, true);
      this.log.warn('disk full: download kept queued, dispatch paused', { jobId: j.id, url: j.url, pauseMs: wait });
      this.armDelayTimer();
    } else if (err && UNAVAILABLE_CLASS.has(err.code) && j.attempts < this.o.maxAttempts) {
      const at = now + backoffMs(j.attempts - 1, this.o.unavailableBaseMs, this.o.unavailableMaxMs);
      j.state = 'queued';
      j.error = err.toJSON();
      j.notBefore = new Date(at).toISOString();
      this.store.put(j, 'running');
      this.delay(j, at);
      this.log.info('download unavailable; retrying later', { jobId: j.id, url: j.url, code: err.code, notBefore: j.notBefore });
    } else {
      const e = err ?? new MediaCacheError('E_UNAVAILABLE', 'download ended without a result');
      j.state = 'failed';
      j.error = e.toJSON();
      this.store.put(j, 'running', { lazy: true });
      this.ended(j);
      this.log.info('download failed', { jobId: j.id, url: j.url, code: e.code, status: e.status, error: e.message });
      this.emitEvent({ type: 'job.failed', job: toJobInfo(j), error: e.toJSON() });
    }
    this.pump();
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
      return a;
    });
  }

  get limits(): { concurrency: number; perHost: number } {
    return { concurrency: this.concurrency, perHost: this.perHost };
  }

  /** New limits apply to the next dispatch; running downloads are not interrupted. */
  setLimits(o: { concurrency?: number; perHost?: number }): void {
    if (o.concurrency !== undefined) this.concurrency = checkLimit('concurrency', o.concurrency);
    if (o.perHost !== undefined) this.perHost = checkLimit('perHost', o.perHost);
    this.pump();
  }

  /** Stop dispatching; give running jobs `graceMs`, then abort and re-queue them; flush. */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    if (this.delayTimer) clearTimeout(this.delayTimer);
    this.delayTimer = undefined;
    this.delayTimerAt = Infinity;
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
    await this.store.flush();
  }
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
}
