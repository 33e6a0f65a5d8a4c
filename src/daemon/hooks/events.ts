/**
 * The events hooks and webhooks receive, and how they are built from the
 * daemon's internal RpcEvent stream. One envelope shape for both: the JSON
 * an exec hook reads on stdin is byte-for-byte the body a webhook receives.
 *
 * Delivery ids are stable for one happening: a job that ends, is lost to a
 * crash before its end was saved, and ends again after the restart gets the
 * same id, so a receiver that dedupes by id sees it once.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { ErrorCode } from '../../core/errors.js';
import type { JobInfo, RpcEvent, SweepReport } from '../../core/protocol/rpc.js';
import type { MediaRecord } from '../../core/types.js';

export type HookEventType = 'job.done' | 'job.failed' | 'upstream.changed' | 'sweep.done';
export const HOOK_EVENT_TYPES: readonly HookEventType[] = ['job.done', 'job.failed', 'upstream.changed', 'sweep.done'];

interface JobPart {
  jobId: string;
  url: string;
  /** "rpc" or "<inbox file>:<line>". */
  source: string;
  attempts: number;
}
export interface JobDoneData extends JobPart {
  record: MediaRecord;
}
export interface JobFailedData extends JobPart {
  code: ErrorCode;
  message: string;
  /** HTTP status, for E_HTTP. */
  status?: number;
}
/** The content behind a URL is no longer what the cache holds for it. */
export interface UpstreamChangedData {
  url: string;
  /** What the cache holds (held) for the URL. */
  oldMd5: string;
  /** What the URL serves now; absent when it was not fetched in full (a sweep's repair stops at the first mismatch). */
  newMd5?: string;
  /** Who noticed: "sweep" (a repair found other bytes), "revalidate", ... */
  detectedBy: string;
}
export interface SweepDoneData {
  report: SweepReport;
}

interface Envelope<T extends HookEventType, D> {
  /** Delivery id: the same across retries and restarts; dedupe on it. */
  id: string;
  type: T;
  /** When the event happened (ISO 8601). */
  createdAt: string;
  data: D;
}
export type HookEvent =
  | Envelope<'job.done', JobDoneData>
  | Envelope<'job.failed', JobFailedData>
  | Envelope<'upstream.changed', UpstreamChangedData>
  | Envelope<'sweep.done', SweepDoneData>;

/** A UUID-shaped id derived from `parts` (the same parts, the same id). */
export function stableId(...parts: string[]): string {
  const h = createHash('sha256').update(parts.join('\0')).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function jobPart(job: JobInfo): JobPart {
  return { jobId: job.id, url: job.url, source: job.source, attempts: job.attempts };
}

/** A job's ids include its creation time, so a jobs folder started afresh never reuses one. */
const jobEventId = (job: JobInfo, type: string): string => stableId('job', job.id, job.createdAt, type);

/**
 * The hook events an RpcEvent stands for: job.done, job.failed, and for
 * sweep.done the report plus one upstream.changed per URL its repairs found
 * changed. Progress and queued events map to nothing.
 */
export function fromRpcEvent(ev: RpcEvent, now: Date = new Date()): HookEvent[] {
  const createdAt = now.toISOString();
  switch (ev.type) {
    case 'job.done':
      return [{ id: jobEventId(ev.job, ev.type), type: 'job.done', createdAt, data: { ...jobPart(ev.job), record: ev.record } }];
    case 'job.failed': {
      const data: JobFailedData = { ...jobPart(ev.job), code: ev.error.code, message: ev.error.message };
      if (ev.error.status !== undefined) data.status = ev.error.status;
      return [{ id: jobEventId(ev.job, ev.type), type: 'job.failed', createdAt, data }];
    }
    case 'sweep.done': {
      const r = ev.report;
      const out: HookEvent[] = r.changedUpstream.map((c) => ({
        id: stableId('upstream', r.id, c.md5, c.url),
        type: 'upstream.changed' as const,
        createdAt,
        data: { url: c.url, oldMd5: c.md5, detectedBy: 'sweep' },
      }));
      out.push({ id: stableId('sweep', r.id), type: 'sweep.done', createdAt, data: { report: r } });
      return out;
    }
    default:
      return [];
  }
}

/** An upstream.changed event; `id` defaults to a random one. */
export function upstreamChanged(data: UpstreamChangedData, o: { id?: string; now?: Date } = {}): HookEvent {
  return { id: o.id ?? randomUUID(), type: 'upstream.changed', createdAt: (o.now ?? new Date()).toISOString(), data };
}

/** Environment values cannot hold NUL; keep them to one reasonable line. */
const envValue = (v: string | number): string => String(v).replace(/\0/g, '').slice(0, 4096);

/** The MEDIACACHE_* variables an exec hook gets for `ev`. */
export function hookEnv(ev: HookEvent): Record<string, string> {
  const env: Record<string, string> = { MEDIACACHE_EVENT: ev.type, MEDIACACHE_DELIVERY_ID: ev.id, MEDIACACHE_CREATED_AT: ev.createdAt };
  const set = (k: string, v: string | number | undefined): void => {
    if (v !== undefined) env[`MEDIACACHE_${k}`] = envValue(v);
  };
  switch (ev.type) {
    case 'job.done': {
      const r = ev.data.record;
      set('JOB_ID', ev.data.jobId);
      set('URL', ev.data.url);
      set('SOURCE', ev.data.source);
      set('MD5', r.md5);
      set('SHA256', r.sha256);
      set('PATH', r.localPath);
      set('SIZE', r.fileSize);
      set('TYPE', r.mediaType);
      set('MIME', r.mimeType);
      set('EXTENSION', r.extension);
      set('WIDTH', r.width);
      set('HEIGHT', r.height);
      break;
    }
    case 'job.failed':
      set('JOB_ID', ev.data.jobId);
      set('URL', ev.data.url);
      set('SOURCE', ev.data.source);
      set('ERROR_CODE', ev.data.code);
      set('ERROR_MESSAGE', ev.data.message);
      set('HTTP_STATUS', ev.data.status);
      break;
    case 'upstream.changed':
      set('URL', ev.data.url);
      set('OLD_MD5', ev.data.oldMd5);
      set('NEW_MD5', ev.data.newMd5);
      break;
    case 'sweep.done':
      set('SWEEP_ID', ev.data.report.id);
      set('SWEEP_COMPLETE', ev.data.report.complete ? '1' : '0');
      break;
  }
  return env;
}
