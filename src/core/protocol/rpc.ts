/**
 * The JSON-RPC 2.0 protocol spoken over the daemon's socket: method names,
 * params and results, notifications and error codes. Shared by the daemon
 * (handlers) and the client (mcctl); it imports nothing at runtime.
 *
 * Framing: one JSON message per line ("\n"), UTF-8. A line longer than
 * MAX_FRAME_BYTES is answered with an error and the connection is closed.
 */
import type { ErrorCode, ErrorInfo } from '../errors.js';
import type { CacheStats, MediaRecord, QuotaStatus, UpstreamChange } from '../types.js';

export const MAX_FRAME_BYTES = 1024 * 1024;

export const RPC_ERRORS = {
  PARSE: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL: -32603,
  /** Every application error; the stable code is in `error.data.code`. */
  APP: -32000,
  /** A frame over MAX_FRAME_BYTES; the connection is closed after it. */
  FRAME_TOO_LARGE: -32001,
} as const;

/** `error.data` of every error reply the daemon sends. */
export interface RpcErrorData {
  code: ErrorCode;
  status?: number;
  url?: string;
}

export type JobState = 'queued' | 'running' | 'done' | 'failed';
export const JOB_STATES: readonly JobState[] = ['queued', 'running', 'done', 'failed'];

export interface JobInfo {
  id: string;
  url: string;
  state: JobState;
  /**
   * Lower runs first: interactive adds (0) beat inbox files (10). `add
   * {priority: N}` (higher runs sooner) is stored here as -N.
   */
  priority: number;
  /** Tries started so far (a try cut short by shutdown is not counted). */
  attempts: number;
  /** Tries allowed in all (1 + the daemon's --retries, or add's `retries`). */
  maxAttempts?: number;
  /** While queued for a retry (or a disk-full pause): when it may run again, ISO. */
  nextRetryAt?: string;
  /** Why the most recent try failed (kept when the job later fails for good). */
  lastError?: ErrorInfo;
  createdAt: string;
  updatedAt: string;
  /** Where it came from: "rpc" or the inbox file's path and line. */
  source: string;
  md5?: string;
  /** Why the job failed (set on failed jobs only; E_ABORTED: cancelled). */
  error?: ErrorInfo;
  /** @deprecated the same as nextRetryAt, kept for older clients. */
  notBefore?: string;
  bytes?: number;
  totalBytes?: number;
}

export interface QueueCounts {
  queued: number;
  running: number;
  done: number;
  failed: number;
}

// ---- add ----
export interface AddParams {
  urls: string[];
  /** Resolve only once every job has ended. */
  wait?: boolean;
  /** Download again even when the URL is cached. */
  force?: boolean;
  /** Higher runs sooner (default 0; inbox files run at -10), -1000..1000. */
  priority?: number;
  /** Retries of these jobs after a retryable failure (default: the daemon's --retries). */
  retries?: number;
  /** Pin the content once cached (never evicted by the quota). */
  pin?: boolean;
}
export interface AddItem {
  url: string;
  /** queued/running when not waiting; done/failed at the end. */
  state: JobState;
  jobId?: string;
  record?: MediaRecord;
  error?: ErrorInfo;
  /** True when answered from the index without a download. */
  cached?: boolean;
}
export interface AddResult {
  items: AddItem[];
}

// ---- stats ----
export interface StatsResult extends CacheStats {
  queue: QueueCounts;
}

// ---- verify ----
export interface VerifyParams {
  md5?: string;
  all?: boolean;
}
export interface VerifyFailure {
  md5: string;
  localPath: string;
  reason: 'missing' | 'mismatch';
}
export interface VerifyResult {
  checked: number;
  ok: number;
  bad: VerifyFailure[];
}

// ---- find ----
export interface FindParams {
  md5?: string;
  url?: string;
}
export type FindResult = MediaRecord;

// ---- jobs ----
export interface JobsParams {
  state?: JobState;
  limit?: number;
}
export interface JobsResult {
  jobs: JobInfo[];
  total: number;
}

// ---- sweep ----
export interface SweepParams {
  wait?: boolean;
}
export type SweepStepName = 'missing' | 'rehash' | 'quarantine' | 'repair' | 'adopt' | 'clean-tmp' | 'revalidate' | 'metadata';
export interface SweepStep {
  name: SweepStepName;
  count: number;
  bytes: number;
  durationMs: number;
}
export interface SweepReport {
  id: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** False when --sweep-max-duration cut it short; the next one resumes. */
  complete: boolean;
  /** Files whose bytes were checked in this sweep. */
  checked: number;
  bytesHashed: number;
  missing: string[];
  corrupt: string[];
  quarantined: Array<{ path: string; to: string; reason: string }>;
  repaired: Array<{ md5: string; url: string }>;
  unrepaired: Array<{ md5: string; error: ErrorInfo }>;
  changedUpstream: Array<{ md5: string; url: string }>;
  adopted: string[];
  /** With revalidation on (--revalidate-after): URLs asked, and how many answered 304 / same bytes / other content. */
  revalidated?: { asked: number; notModified: number; unchanged: number; changed: number; failed: number };
  /** URLs that moved to new content during this sweep's revalidation. */
  movedUpstream?: UpstreamChange[];
  cleanedTmp: number;
  steps: SweepStep[];
  /** Records whose media metadata this sweep read (absent from daemons without the `metadata` step). */
  metadataFilled?: number;
}
export interface SweepResult {
  /** Present when wait was asked (or the sweep ended before the reply). */
  report?: SweepReport;
  /** True when this call joined a sweep that was already running. */
  joined: boolean;
  id: string;
}

// ---- status ----
export interface ActiveDownload {
  jobId: string;
  url: string;
  bytes: number;
  totalBytes?: number;
  startedAt: string;
  /** Receiving too slowly to count against the download limits (see README, Scheduler). */
  stalled?: boolean;
}
export interface StatusResult {
  version: string;
  pid: number;
  startedAt: string;
  uptimeMs: number;
  paths: {
    cacheDir: string;
    indexDir: string;
    socket: string;
    inboxes: string[];
    configFile?: string;
    logFile?: string;
  };
  config: { concurrency: number; perHost: number; timeoutMs: number; maxFileSize: number; sweepSchedule: string; logLevel: string };
  queue: QueueCounts;
  active: ActiveDownload[];
  sweepRunning: boolean;
  lastSweep?: SweepReport;
  nextSweepAt?: string;
  /** Present when a quota (--max-size / --min-free) is set. */
  quota?: QuotaStatus;
  /** Pinned and evicted content (count, bytes). */
  pinned?: { count: number; size: number };
  evicted?: { count: number; size: number };
  /** What start-up found damaged in the index and the job store; absent when nothing was. */
  damage?: DamageReport;
  /** Cluster mode (--database): the shared database and its daemons. */
  cluster?: ClusterView;
}

/** What `status` (and `stats`) show of a cluster: queue totals of every daemon, and each daemon's share. */
export interface ClusterView {
  /** "db on host:port" (never the user or password). */
  database: string;
  /** This daemon's node id. */
  nodeId: string;
  /** Queue totals of the whole cluster. */
  queue: QueueCounts;
  nodes: Array<{ id: string; hostName: string; pid: number; alive: boolean; heartbeatAt: string; running: number; done: number; failed: number }>;
}

// ---- pin / unpin ----
export interface PinParams {
  /** md5, md5 prefix or URL. */
  target: string;
}
export interface PinResult {
  record: MediaRecord;
}

// ---- refresh ----
export interface RefreshParams {
  /** URL, or md5 / md5 prefix (every URL of the record). */
  target: string;
}
export interface RefreshItem {
  url: string;
  /** not-modified: the origin answered 304; unchanged: same bytes; changed: the URL moved to new content. */
  state: 'not-modified' | 'unchanged' | 'changed';
  record: MediaRecord;
  change?: UpstreamChange;
  bytes: number;
}
export interface RefreshResult {
  items: RefreshItem[];
}

/**
 * Damage found at start-up (docs/operations.md, Index recovery). Lost index
 * records come back through the adopting sweep the daemon then runs (without
 * their URLs); lost jobs are gone unless an inbox batch still named them.
 */
export interface DamageReport {
  index: {
    /** Copies of damaged index files, kept for inspection. */
    files: string[];
    /** Shard files that were listed in meta.json but missing. */
    missingShards: string[];
    /** Records (shard rows, journal entries) that could not be read back. */
    lostRows: number;
  };
  jobs: {
    files: string[];
    /** Jobs that could not be read back (at least this many: a cut-off file hides what followed). */
    lostJobs: number;
    /** Jobs re-queued from the inbox batch that listed them. */
    restoredJobs: number;
  };
}

// ---- remove ----
/** Fewest md5 hex digits `remove` accepts: a shorter prefix could name another file than meant. */
export const MIN_REMOVE_PREFIX = 8;
export interface RemoveParams {
  md5: string;
}
export interface RemoveResult {
  removed: MediaRecord;
}

// ---- job control ----
/** Cancel one job, by id or by URL (its queued or running job). */
export interface CancelParams {
  id?: string;
  url?: string;
}
export interface CancelResult {
  job: JobInfo;
  /** False when the job had already ended (it is returned unchanged). */
  cancelled: boolean;
}
/** Re-queue one failed job, or every failed job (`failed: true`). */
export interface RetryParams {
  id?: string;
  failed?: boolean;
}
export interface RetryResult {
  jobs: JobInfo[];
}
/**
 * Forget ended jobs now: those older than `olderThanMs`, and all but the
 * newest `keep`; neither given: the daemon's configured history bounds.
 * Jobs an unwritten inbox report still needs are kept.
 */
export interface PruneParams {
  olderThanMs?: number;
  keep?: number;
}
export interface PruneResult {
  pruned: number;
  /** Ended jobs still remembered. */
  remaining: number;
}

// ---- subscribe ----
export type EventName = 'job.queued' | 'job.progress' | 'job.done' | 'job.failed' | 'sweep.progress' | 'sweep.done' | 'job.retrying' | 'upstream.changed';
export const EVENT_NAMES: readonly EventName[] = ['job.queued', 'job.progress', 'job.done', 'job.failed', 'sweep.progress', 'sweep.done', 'job.retrying', 'upstream.changed'];
export interface SubscribeParams {
  events?: EventName[];
}
export interface SubscribeResult {
  events: EventName[];
}

/** Pushed as JSON-RPC notifications with method "event". */
export type RpcEvent =
  | { type: 'job.queued'; job: JobInfo }
  | { type: 'job.progress'; jobId: string; url: string; bytes: number; totalBytes?: number; attempt?: number }
  | { type: 'job.done'; job: JobInfo; record: MediaRecord }
  | { type: 'job.failed'; job: JobInfo; error: ErrorInfo }
  | { type: 'sweep.progress'; sweepId: string; step: SweepStepName; done: number; total?: number }
  | { type: 'sweep.done'; report: SweepReport }
  /** A try failed and the job waits for another (job.nextRetryAt, job.attempts, job.lastError). */
  | { type: 'job.retrying'; job: JobInfo; error: ErrorInfo; delayMs: number }
  | { type: 'upstream.changed'; change: UpstreamChange };
export const EVENT_METHOD = 'event';
/**
 * Notification sent to a subscriber that fell behind, once it has caught up:
 * `params: { dropped: N }` events were not delivered to it (the daemon drops
 * events rather than buffer them without bound).
 */
export const EVENTS_DROPPED_METHOD = 'events.dropped';
export interface EventsDroppedParams {
  dropped: number;
}

/** The typed method table: the daemon implements it, the client calls it. */
export interface RpcMethods {
  add: { params: AddParams; result: AddResult };
  stats: { params: Record<string, never>; result: StatsResult };
  verify: { params: VerifyParams; result: VerifyResult };
  find: { params: FindParams; result: FindResult };
  jobs: { params: JobsParams; result: JobsResult };
  sweep: { params: SweepParams; result: SweepResult };
  status: { params: Record<string, never>; result: StatusResult };
  remove: { params: RemoveParams; result: RemoveResult };
  subscribe: { params: SubscribeParams; result: SubscribeResult };
  cancel: { params: CancelParams; result: CancelResult };
  retry: { params: RetryParams; result: RetryResult };
  prune: { params: PruneParams; result: PruneResult };
  pin: { params: PinParams; result: PinResult };
  unpin: { params: PinParams; result: PinResult };
  refresh: { params: RefreshParams; result: RefreshResult };
}
export type RpcMethodName = keyof RpcMethods;
/** mcctl calls through these names (the same table: every method the daemon has). */
export type ClientMethods = RpcMethods;
export type ClientMethodName = RpcMethodName;
export const RPC_METHOD_NAMES: readonly RpcMethodName[] = ['add', 'stats', 'verify', 'find', 'jobs', 'sweep', 'status', 'remove', 'subscribe', 'cancel', 'retry', 'prune', 'pin', 'unpin', 'refresh'];
