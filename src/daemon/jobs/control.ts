/**
 * Job control behind the RPC methods `cancel` and `retry`, kept out of the
 * dispatch loop. They reach the scheduler's state only through
 * ControlAccess, which the Scheduler builds over its own fields.
 */
import { MediaCacheError, toMediaCacheError } from '../../core/errors.js';
import type { JobInfo, JobState, RpcEvent } from '../../core/protocol/rpc.js';
import { parseMediaUrl } from '../../core/fetch/url.js';
import type { JobRecord, JobStore } from './job-store.js';
import { toJobInfo } from './list.js';

export interface ControlAccess {
  store(): JobStore;
  /** The queued or running job of a URL. */
  byUrl(url: string): JobRecord | undefined;
  /** A running download: aborting `ctrl` after setting `cancel` ends it as failed. */
  running(id: string): { cancel?: MediaCacheError; ctrl: AbortController; done: Promise<void> } | undefined;
  /** Take a queued job out of dispatch (and out of the retry clock). */
  unqueue(id: string): void;
  /** Put a (re)queued job into dispatch. */
  requeue(j: JobRecord): void;
  fail(j: JobRecord, e: MediaCacheError, prev: JobState): void;
  commitsIdle(): Promise<void>;
  emit(ev: RpcEvent): void;
  pump(): void;
  now(): number;
  draining(): boolean;
}

const ENDED: ReadonlySet<JobState> = new Set(['done', 'failed']);

/**
 * Cancel the job `id`, or the queued/running job of `url`: a queued one
 * leaves the queue, a running one is aborted; either ends as failed with
 * E_ABORTED, durably before this resolves. An ended job is returned
 * unchanged (`cancelled: false`), as is one whose download already finished
 * and waits for its index record.
 */
export async function cancelJob(c: ControlAccess, o: { id?: string; url?: string }): Promise<{ job: JobInfo; cancelled: boolean }> {
  let j: JobRecord | undefined;
  if (o.id !== undefined) j = c.store().get(o.id);
  else if (o.url !== undefined) j = c.byUrl(parseMediaUrl(o.url).href);
  if (!j) throw new MediaCacheError('E_NOT_FOUND', o.id !== undefined ? `no job ${o.id}` : `no queued or running job for ${o.url}`);
  const wasActive = !ENDED.has(j.state);
  const reason = new MediaCacheError('E_ABORTED', 'cancelled', { url: j.url });
  const r = c.running(j.id);
  if (j.state === 'queued') {
    c.unqueue(j.id);
    c.fail(j, reason, 'queued');
  } else if (r) {
    r.cancel = reason;
    r.ctrl.abort(reason);
    await r.done;
  } else if (j.state === 'running') {
    await c.commitsIdle();
  }
  await c.store().flush();
  return { job: toJobInfo(j), cancelled: wasActive && j.state === 'failed' && j.error?.code === 'E_ABORTED' };
}

/**
 * Queue failed jobs again with a fresh retry budget (same id): `id`, or every
 * failed one. A job whose URL cannot be fetched at all (invalid, unsupported
 * scheme) is left alone, as is one whose URL has another job queued (for
 * `id`, that job is returned). Durable before this resolves.
 */
export async function retryJobs(c: ControlAccess, o: { id?: string; failed?: boolean }): Promise<JobInfo[]> {
  if (c.draining()) throw new MediaCacheError('E_UNAVAILABLE', 'the daemon is shutting down; not taking new jobs');
  const store = c.store();
  let candidates: JobRecord[];
  if (o.id !== undefined) {
    const j = store.get(o.id);
    if (!j) throw new MediaCacheError('E_NOT_FOUND', `no job ${o.id}`);
    if (j.state !== 'failed') throw new MediaCacheError('E_BAD_REQUEST', `job ${j.id} is ${j.state}; only failed jobs can be retried`);
    candidates = [j];
  } else candidates = [...store.values()].filter((j) => j.state === 'failed');
  const nowIso = new Date(c.now()).toISOString();
  const out: JobRecord[] = [];
  const requeued: JobRecord[] = [];
  for (const j of candidates) {
    const other = c.byUrl(j.url);
    if (other) {
      if (o.id !== undefined) out.push(other);
      continue;
    }
    try {
      parseMediaUrl(j.url);
    } catch (e) {
      if (o.id !== undefined) throw new MediaCacheError('E_BAD_REQUEST', `job ${j.id} cannot be retried: ${toMediaCacheError(e).message}`);
      continue;
    }
    j.state = 'queued';
    j.attempts = 0;
    j.updatedAt = nowIso;
    delete j.pauses;
    delete j.error;
    delete j.nextRetryAt;
    store.put(j, 'failed');
    c.requeue(j);
    out.push(j);
    requeued.push(j);
  }
  await store.flush();
  const infos = out.map(toJobInfo);
  for (const j of requeued) c.emit({ type: 'job.queued', job: toJobInfo(j) });
  c.pump();
  return infos;
}
