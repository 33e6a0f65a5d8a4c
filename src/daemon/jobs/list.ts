/**
 * Read-only views of the job table for `jobs` / `mcctl jobs`. Pure: jobs in,
 * public JobInfo out (internal fields `seq`, `force`, `pin` and `pauses` stripped).
 */
import type { JobInfo, JobState, JobsResult } from '../../core/protocol/rpc.js';
import type { JobRecord } from './job-store.js';

const ENDED: ReadonlySet<JobState> = new Set(['done', 'failed']);

export function toJobInfo(j: JobRecord): JobInfo {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  const { seq, force, pin, pauses, ...info } = j;
  return {
    ...info,
    ...(info.error ? { error: { ...info.error } } : {}),
    ...(info.lastError ? { lastError: { ...info.lastError } } : {}),
    // Older clients read notBefore.
    ...(info.nextRetryAt ? { notBefore: info.nextRetryAt } : {}),
  };
}

const byDispatch = (a: JobRecord, b: JobRecord): number => a.priority - b.priority || a.seq - b.seq;
const newestFirst = (a: JobRecord, b: JobRecord): number => b.updatedAt.localeCompare(a.updatedAt) || b.seq - a.seq;

/**
 * Running first, then queued in dispatch order (priority, then sequence),
 * then ended jobs newest first; or only one state. `total` counts every match,
 * `jobs` holds at most `limit` (default 100). One pass plus sorts: fine at
 * 100,000 jobs for an interactive command.
 */
export function listJobs(all: Iterable<JobRecord>, o: { state?: JobState; limit?: number } = {}): JobsResult {
  const limit = Math.max(0, o.limit ?? 100);
  const running: JobRecord[] = [];
  const queued: JobRecord[] = [];
  const ended: JobRecord[] = [];
  for (const j of all) {
    if (o.state && j.state !== o.state) continue;
    if (j.state === 'running') running.push(j);
    else if (j.state === 'queued') queued.push(j);
    else if (ENDED.has(j.state)) ended.push(j);
  }
  running.sort(byDispatch);
  queued.sort(byDispatch);
  ended.sort(newestFirst);
  const jobs = running.concat(queued, ended);
  return { jobs: jobs.slice(0, limit).map(toJobInfo), total: jobs.length };
}
