/**
 * The scheduler of a daemon in cluster mode: jobs live in PostgreSQL
 * (PgQueue) and every daemon claims from the same queue. Same surface as the
 * embedded Scheduler for what the RPC handlers use (enqueue, wait, list,
 * counts, active, cancel, retry, prune, 'event'), so either can serve them.
 *
 * Invariants:
 * - A job runs on the daemon holding its lease; leases are renewed every
 *   leaseMs/3 while the download runs. A job missing from a renewal was
 *   taken over (this daemon was cut off too long): its download is aborted
 *   and its late result is refused by the queue.
 * - The per-host limit is the claim's: counted over the whole cluster.
 *   A Retry-After pauses the host for every daemon (deferHost).
 * - One retry layer: the download itself is called with retries 0; a
 *   retryable failure goes back to the queue with a backoff, at most
 *   `retries` times.
 * - While the database is away, claims and renewals fail (logged once) and
 *   are retried by the next tick; running downloads go on, and their result
 *   is written when the database is back, if the lease still holds.
 */
import { EventEmitter } from 'node:events';
import { MediaCacheError, toMediaCacheError } from '../../core/errors.js';
import { parseMediaUrl } from '../../core/fetch/url.js';
import type { ClaimedJob, PgJob, PgQueue } from '../../core/postgres/pg-queue.js';
import type { ActiveDownload, JobInfo, JobsResult, JobState, QueueCounts, RpcEvent } from '../../core/protocol/rpc.js';
import type { MediaRecord } from '../../core/types.js';
import type { Logger } from '../../core/util/logger.js';
import type { DownloadOptions } from '../../core/cache/media-cache.js';
import type { JobCompletion } from '../../core/entry-index/store.js';

export interface ClusterSchedulerOptions {
  cache: { download(url: string, opts?: DownloadOptions): Promise<MediaRecord>; findMany(md5s: readonly string[]): Promise<Map<string, MediaRecord>> };
  queue: PgQueue;
  nodeId: string;
  /** Downloads this daemon runs at once. */
  concurrency: number;
  /** Running jobs per origin host across the cluster (0 = no limit). */
  perHost: number;
  logger: Logger;
  /** Lease length (default 30 s): how long a killed daemon's jobs wait before others take them. */
  leaseMs?: number;
  /** Claim and wait polling interval (default 250 ms). */
  pollMs?: number;
  retries?: number;
  retryBaseMs?: number;
}

const MAX_RETRY_DELAY_MS = 5 * 60_000;

interface Running {
  job: PgJob;
  ctl: AbortController;
  startedAt: string;
  bytes: number;
  totalBytes?: number;
}

function publicJob(j: PgJob | ClaimedJob): JobInfo {
  const { host: _h, force: _f, batchId: _b, leaseOwner: _o, leaseExpiresAt: _e, doneBy: _d, endedAt: _t, urlMapped: _m, ...info } = j as PgJob & Partial<ClaimedJob>;
  return info;
}

export class ClusterScheduler extends EventEmitter {
  private readonly o: Required<Omit<ClusterSchedulerOptions, 'cache' | 'queue' | 'logger'>> & ClusterSchedulerOptions;
  private readonly running = new Map<string, Running>();
  private timers: NodeJS.Timeout[] = [];
  private claiming = false;
  /** A slot freed (or work queued) while a claim was in flight: claim again when it returns. */
  private claimAgain = false;
  private stopped = true;
  private dbDown = false;
  private lastCounts: QueueCounts = { queued: 0, running: 0, done: 0, failed: 0 };
  /** Jobs queued or run through this daemon, as last seen: get() answers from here (the inbox's reports). */
  private readonly known = new Map<string, JobInfo>();

  constructor(opts: ClusterSchedulerOptions) {
    super();
    this.o = { leaseMs: 30_000, pollMs: 250, retries: 3, retryBaseMs: 5000, ...opts };
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const every = (ms: number, fn: () => Promise<unknown>): void => {
      const t = setInterval(() => void fn().catch((e: unknown) => this.dbTrouble(e)), ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.o.pollMs, () => this.tick());
    every(Math.max(50, Math.floor(this.o.leaseMs / 3)), () => this.renew());
    every(1000, async () => {
      this.lastCounts = await this.o.queue.counts();
    });
    every(this.o.pollMs * 4, () => this.watch());
  }

  setLimits(l: { concurrency?: number; perHost?: number }): void {
    if (l.concurrency !== undefined) this.o.concurrency = l.concurrency;
    if (l.perHost !== undefined) this.o.perHost = l.perHost;
  }

  private dbTrouble(e: unknown): void {
    if (!this.dbDown) this.o.logger.warn('cluster queue unreachable; retrying', { error: String(e) });
    this.dbDown = true;
  }

  /**
   * Claim what this daemon has room for and start it. Runs on the poll
   * timer, and at once when a job ends or is queued here, so a freed slot
   * does not sit idle until the next poll.
   */
  private async tick(): Promise<void> {
    if (this.stopped) return;
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    const free = this.o.concurrency - this.running.size;
    if (free <= 0) return;
    this.claiming = true;
    let jobs: ClaimedJob[];
    try {
      jobs = await this.o.queue.claim(this.o.nodeId, free, { perHostLimit: this.o.perHost, leaseMs: this.o.leaseMs });
    } finally {
      this.claiming = false;
    }
    if (this.dbDown) this.o.logger.info('cluster queue reachable again');
    this.dbDown = false;
    for (const j of jobs) this.run(j);
    // Asked again meanwhile, and the last claim found work: more may be claimable now.
    if (this.claimAgain && jobs.length > 0) {
      this.claimAgain = false;
      await this.tick();
    }
    this.claimAgain = false;
  }

  /** tick() from an event (a job ended or was queued), errors counted as database trouble. */
  private claimSoon(): void {
    void this.tick().catch((e: unknown) => this.dbTrouble(e));
  }

  private async renew(): Promise<void> {
    if (this.running.size === 0) return;
    // Only jobs claimed before the renewal was sent are judged by it: one whose claim committed
    // while the UPDATE ran is outside that statement's snapshot, not lost.
    const asked = [...this.running.entries()];
    const held = new Set(await this.o.queue.renewLeases(this.o.nodeId, this.o.leaseMs));
    for (const [id, r] of asked) {
      if (this.running.get(id) === r && !held.has(id)) {
        this.o.logger.warn('job taken over by another daemon (lease lost); stopping it here', { id, url: r.job.url });
        r.ctl.abort(new MediaCacheError('E_ABORTED', 'lease lost'));
      }
    }
  }

  private run(job: ClaimedJob): void {
    const ctl = new AbortController();
    const entry: Running = { job, ctl, bytes: 0, startedAt: new Date().toISOString() };
    this.running.set(job.id, entry);
    void (async () => {
      try {
        // The completion rides in the record's transaction when the download commits one.
        const completion: JobCompletion = { nodeId: this.o.nodeId, jobId: job.id };
        const rec = await this.o.cache.download(job.url, {
          completeJob: completion,
          force: job.force,
          ...(job.urlMapped ? {} : { knownUncached: true }),
          retries: 0,
          signal: ctl.signal,
          onProgress: (bytes, total) => {
            entry.bytes = bytes;
            if (total !== undefined) entry.totalBytes = total;
          },
        });
        const done = completion.written ? completion.job : await this.untilWritten(() => this.o.queue.complete(this.o.nodeId, job.id, rec.md5));
        if (done) this.emitEvent({ type: 'job.done', job: publicJob(done), record: rec });
      } catch (e) {
        const err = toMediaCacheError(e, job.url);
        if (ctl.signal.aborted && this.stopped) return; // drained: released to the queue
        const retry = err.retryable && job.attempts <= this.o.retries && err.code !== 'E_ABORTED';
        if (err.retryAfterMs !== undefined) await this.o.queue.deferHost(job.host, err.retryAfterMs).catch((x: unknown) => this.dbTrouble(x));
        const delay = retry ? Math.max(err.retryAfterMs ?? 0, Math.min(MAX_RETRY_DELAY_MS, this.o.retryBaseMs * 2 ** (job.attempts - 1))) : undefined;
        const after = await this.untilWritten(() => this.o.queue.fail(this.o.nodeId, job.id, err.toJSON(), delay === undefined ? {} : { retryInMs: delay }));
        if (after?.state === 'failed') this.emitEvent({ type: 'job.failed', job: publicJob(after), error: err.toJSON() });
        else if (after) this.emitEvent({ type: 'job.retrying', job: publicJob(after), error: err.toJSON(), delayMs: delay ?? 0 });
      } finally {
        this.running.delete(job.id);
        this.claimSoon();
      }
    })();
  }

  /** A result is written once the database answers (the lease may have passed to another daemon meanwhile: then undefined). */
  private async untilWritten<T>(fn: () => Promise<T>): Promise<T | undefined> {
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        if (this.stopped) return undefined;
        this.dbTrouble(e);
        await new Promise((r) => setTimeout(r, this.o.pollMs * 4));
      }
    }
  }

  /**
   * Jobs this daemon queued that another daemon ended: raise their job.done /
   * job.failed here too, so this daemon's listeners (inbox batches, hooks,
   * waiting clients) see every job they care about end.
   */
  private async watch(): Promise<void> {
    const open = [...this.known.values()].filter((j) => (j.state === 'queued' || j.state === 'running') && !this.running.has(j.id)).map((j) => j.id);
    for (let i = 0; i < open.length; i += 1000) {
      const changed = await this.changedAmong(open.slice(i, i + 1000), { known: this.known });
      // The records of the done ones in one read, not one round trip per job.
      const doneMd5s = changed.flatMap((j) => (j.state === 'done' && j.md5 ? [j.md5] : []));
      const records = doneMd5s.length ? await this.o.cache.findMany(doneMd5s) : new Map<string, MediaRecord>();
      for (const j of changed) {
        if (this.running.has(j.id)) continue;
        if (j.state === 'done' && j.md5) {
          const rec = records.get(j.md5);
          if (rec) this.emitEvent({ type: 'job.done', job: publicJob(j), record: rec });
          else this.known.set(j.id, publicJob(j));
        } else if (j.state === 'failed') this.emitEvent({ type: 'job.failed', job: publicJob(j), error: j.error ?? { code: 'E_ABORTED', message: 'failed' } });
        else this.known.set(j.id, publicJob(j));
      }
    }
  }

  /**
   * Look up jobs this daemon did not queue in this run (an inbox batch's,
   * after a restart): get() answers for them from now on, and watch() raises
   * their job.done / job.failed, whichever daemon runs them.
   */
  async adopt(ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += 1000) {
      for (const j of await this.o.queue.getMany(ids.slice(i, i + 1000))) if (!this.known.has(j.id)) this.remember(publicJob(j));
    }
  }

  /**
   * Whole rows of the jobs of `ids` that ended (or, with `known`, changed
   * state since last seen); the others only by id and state (added to
   * `seen`), so a poll of a long queue does not ship every waiting row.
   */
  private async changedAmong(ids: string[], opts: { seen?: Set<string>; known?: Map<string, JobInfo> } = {}): Promise<PgJob[]> {
    const active = await this.o.queue.stillActive(ids);
    if (opts.seen) for (const id of active.keys()) opts.seen.add(id);
    const rest = ids.filter((id) => {
      const st = active.get(id);
      return st === undefined || (opts.known !== undefined && opts.known.get(id)?.state !== st);
    });
    return rest.length === 0 ? [] : this.o.queue.getMany(rest);
  }

  /** A job this daemon queued or ran, as last seen (undefined for others' jobs). */
  get(id: string): JobInfo | undefined {
    return this.known.get(id);
  }

  private remember(j: JobInfo): void {
    this.known.delete(j.id);
    this.known.set(j.id, j);
    // Oldest first in a Map: keep the memory bounded on a long-running daemon.
    if (this.known.size > 100_000) this.known.delete(this.known.keys().next().value!);
  }

  private emitEvent(ev: RpcEvent): void {
    if ('job' in ev) this.remember(ev.job);
    try {
      this.emit('event', ev);
    } catch (e) {
      this.o.logger.warn('event listener threw', { error: String(e) });
    }
  }

  async enqueue(items: Array<{ url: string; source: string }>, o: { priority: number; force?: boolean }): Promise<JobInfo[]> {
    const out = await this.o.queue.enqueue(items, { priority: o.priority, ...(o.force ? { force: true } : {}) });
    for (const e of out) {
      if (e.created) this.emitEvent({ type: 'job.queued', job: publicJob(e.job) });
      else this.remember(publicJob(e.job));
    }
    this.claimSoon();
    return out.map((e) => publicJob(e.job));
  }

  /**
   * Resolves when every job has ended (done or failed), whichever daemon ran
   * it. Each poll asks only for the jobs still open; a job no longer in the
   * queue (pruned) counts as failed with E_NOT_FOUND.
   */
  async wait(jobIds: string[]): Promise<JobInfo[]> {
    const ended = new Map<string, JobInfo>();
    const all = new Set(jobIds);
    let open = [...all];
    // Jobs that end here (or are seen ended by watch()) are taken from this daemon's own
    // events: no poll needed for them, and the last one ends the wait at once.
    let wake: (() => void) | undefined;
    const onEvent = (ev: RpcEvent): void => {
      if ((ev.type === 'job.done' || ev.type === 'job.failed') && all.has(ev.job.id) && !ended.has(ev.job.id)) {
        ended.set(ev.job.id, ev.job);
        if (ended.size === all.size) wake?.();
      }
    };
    this.on('event', onEvent);
    try {
      while ((open = open.filter((id) => !ended.has(id))).length > 0) {
        const seen = new Set<string>();
        for (let i = 0; i < open.length; i += 1000) {
          for (const j of await this.changedAmong(open.slice(i, i + 1000), { seen })) {
            seen.add(j.id);
            if (j.state === 'done' || j.state === 'failed') ended.set(j.id, publicJob(j));
          }
        }
        for (const id of open) {
          if (!seen.has(id) && !ended.has(id)) ended.set(id, { id, url: '', state: 'failed', priority: 0, attempts: 0, createdAt: '', updatedAt: '', source: '', error: { code: 'E_NOT_FOUND', message: 'job pruned' } });
        }
        if (ended.size === all.size) break;
        await new Promise<void>((r) => {
          const timer = setTimeout(r, this.o.pollMs);
          wake = () => {
            clearTimeout(timer);
            r();
          };
        });
        wake = undefined;
      }
    } finally {
      this.off('event', onEvent);
    }
    return jobIds.map((id) => ended.get(id)!);
  }

  async list(o: { state?: JobState; limit?: number }): Promise<JobsResult> {
    const jobs = await this.o.queue.list(o);
    const counts = await this.o.queue.counts();
    const total = o.state ? counts[o.state] : counts.queued + counts.running + counts.done + counts.failed;
    return { jobs: jobs.map(publicJob), total };
  }

  /** Cluster totals as last read (refreshed every second). */
  counts(): QueueCounts {
    return { ...this.lastCounts };
  }

  active(): ActiveDownload[] {
    return [...this.running.values()].map((r) => ({
      jobId: r.job.id,
      url: r.job.url,
      bytes: r.bytes,
      startedAt: r.startedAt,
      ...(r.totalBytes !== undefined ? { totalBytes: r.totalBytes } : {}),
    }));
  }

  /**
   * Cancel a job of the shared queue, by id or by URL (its queued or running
   * job, whichever daemon queued it). A job running here is aborted at once;
   * one running on another daemon stops when that daemon's lease renewal
   * finds the job no longer its own.
   */
  async cancel(o: { id?: string; url?: string }): Promise<{ job: JobInfo; cancelled: boolean }> {
    let id = o.id;
    if (id === undefined) {
      if (o.url === undefined) throw new MediaCacheError('E_BAD_REQUEST', 'cancel takes a job id or a URL');
      const active = await this.o.queue.activeByUrl(parseMediaUrl(o.url).href);
      if (!active) throw new MediaCacheError('E_NOT_FOUND', `no queued or running job for ${o.url}`);
      id = active.id;
    }
    const [j] = await this.o.queue.cancel([id]);
    if (j) {
      // Running here: aborted (its run then finds the job no longer its own and writes nothing).
      this.running.get(id)?.ctl.abort(new MediaCacheError('E_ABORTED', 'cancelled'));
      this.emitEvent({ type: 'job.failed', job: publicJob(j), error: j.error ?? { code: 'E_ABORTED', message: 'cancelled' } });
      return { job: publicJob(j), cancelled: true };
    }
    const cur = await this.o.queue.get(id);
    if (!cur) throw new MediaCacheError('E_NOT_FOUND', `no job ${id}`);
    return { job: publicJob(cur), cancelled: false };
  }

  async retry(o: { id?: string; failed?: boolean }): Promise<JobInfo[]> {
    const jobs = await this.o.queue.retryFailed(o.id ? [o.id] : undefined);
    return jobs.map(publicJob);
  }

  async prune(o: { olderThanMs?: number; keep?: number }): Promise<{ pruned: number; remaining: number }> {
    const pruned = await this.o.queue.prune({ keepEnded: o.keep ?? 0, maxAgeMs: o.olderThanMs ?? 0 });
    const c = await this.o.queue.counts();
    return { pruned, remaining: c.queued + c.running + c.done + c.failed };
  }

  /**
   * Stop claiming; let running downloads finish within `graceMs`, then abort
   * the rest and give their jobs back to the queue at once (others need not
   * wait for the lease).
   */
  async drain(graceMs: number): Promise<void> {
    const deadline = Date.now() + graceMs;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    while (this.running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    this.stopped = true;
    for (const r of this.running.values()) r.ctl.abort(new MediaCacheError('E_ABORTED', 'daemon stopping'));
    await this.o.queue.release(this.o.nodeId).catch((e: unknown) => this.dbTrouble(e));
  }
}
