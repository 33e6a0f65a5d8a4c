/** A row of mediacache.jobs and its public form. */
import { isErrorCode } from '../errors.js';
import type { JobInfo, JobState } from '../protocol/rpc.js';

export interface JobRow {
  id: number;
  url: string;
  host: string;
  state: JobState;
  priority: number;
  attempts: number;
  next_attempt_at: Date;
  lease_owner: string | null;
  lease_expires_at: Date | null;
  done_by: string | null;
  error_code: string | null;
  error_message: string | null;
  error_status: number | null;
  md5: string | null;
  batch_id: string | null;
  source: string;
  force: boolean;
  created_at: Date;
  updated_at: Date;
  ended_at: Date | null;
}

/** JobInfo plus what the cluster knows about the job. Ids are decimal strings. */
export interface PgJob extends JobInfo {
  host: string;
  force: boolean;
  batchId?: string;
  /** Daemon holding the lease while running. */
  leaseOwner?: string;
  leaseExpiresAt?: string;
  /** Daemon that ended it. */
  doneBy?: string;
  endedAt?: string;
}

export function fromJobRow(r: JobRow): PgJob {
  const j: PgJob = {
    id: String(r.id),
    url: r.url,
    state: r.state,
    priority: r.priority,
    attempts: r.attempts,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    source: r.source,
    host: r.host,
    force: r.force,
  };
  if (r.md5 !== null) j.md5 = r.md5;
  if (r.error_code !== null && isErrorCode(r.error_code)) {
    j.error = { code: r.error_code, message: r.error_message ?? '' };
    if (r.error_status !== null) j.error.status = r.error_status;
  }
  // Compared with the row's own updated_at (both the database's clock), not this machine's.
  if (r.state === 'queued' && r.next_attempt_at > r.updated_at) j.notBefore = r.next_attempt_at.toISOString();
  if (r.batch_id !== null) j.batchId = r.batch_id;
  if (r.lease_owner !== null) j.leaseOwner = r.lease_owner;
  if (r.lease_expires_at !== null) j.leaseExpiresAt = r.lease_expires_at.toISOString();
  if (r.done_by !== null) j.doneBy = r.done_by;
  if (r.ended_at !== null) j.endedAt = r.ended_at.toISOString();
  return j;
}

/** The claim key of a URL: host[:port] as the per-host limit counts it. */
export function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
}
