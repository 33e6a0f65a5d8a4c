/**
 * Group commit for the hot writes of cluster mode: record upserts (with their
 * URLs) and job completions from every concurrent download of one process are
 * collected while the previous batch commits (or for `windowMs` when idle) and
 * written by ONE multi-row statement (its own transaction). One round trip,
 * one WAL flush and one run of each counter trigger per batch instead of
 * several per job.
 *
 * Invariants:
 * - A caller's promise resolves only after the transaction holding its write
 *   committed (durable: synchronous_commit is untouched), and rejects when it
 *   did not; a batch is all or nothing (one statement, one transaction).
 * - Each write means what it means alone, in call order: upserts of one md5
 *   are merged (later fields win, URLs accumulate in order) and a URL claimed
 *   twice in a batch ends with the later record, as two sequential calls would.
 *   A job completed twice in one batch is left to the next batch.
 * - A batch that fails for a reason other than the database being away (a
 *   row the server refuses) is retried one write per transaction, so one bad
 *   write fails alone and its neighbours still land. An unreachable database
 *   rejects every caller of the batch (they retry as they would any
 *   E_UNAVAILABLE).
 * - Rows are written in key order (media by md5, jobs by id) so two daemons'
 *   batches lock shared rows in one order; a deadlock left is run again.
 */
import type { MediaCacheError } from '../errors.js';
import { isConnectionError, isTransient } from './pg-errors.js';
import type { PgDatabase } from './pg-db.js';
import type { JobRow } from './pg-job-row.js';

/** Column values of one media row, in MEDIA_COLUMNS order (pg-records' mediaValues). */
export type MediaValues = unknown[];

interface UpsertOp {
  kind: 'upsert';
  md5: string;
  values: MediaValues;
  urls: string[];
  /** A job ended in the same statement. */
  complete?: { nodeId: string; jobId: string };
  resolve: (v: JobRow | undefined) => void;
  reject: (e: unknown) => void;
}
interface CompleteOp {
  kind: 'complete';
  jobId: string;
  nodeId: string;
  md5: string;
  resolve: (v: JobRow | undefined) => void;
  reject: (e: unknown) => void;
}
type Op = UpsertOp | CompleteOp;

const MEDIA_COLUMNS = 'md5, sha256, size, mime, media_type, width, height, extension, storage_path, fetched_at, verified_at, etag, last_modified, extra';
const MEDIA_TYPES = ['text', 'text', 'int8', 'text', 'text', 'int4', 'int4', 'text', 'text', 'timestamptz', 'timestamptz', 'text', 'text', 'jsonb'];

/**
 * The whole batch as ONE statement (data-modifying CTEs): atomic on its own,
 * so no BEGIN/COMMIT round trips; one WAL flush at its commit. Parameters:
 * $1-$14 media columns, $15/$16 (url, md5) pairs in association order,
 * $17-$19 (job id, node, md5) completions. Empty arrays write nothing. The
 * URL rows' foreign key is checked at the end of the statement, when the
 * media rows of the same batch are there. Returns the completed job rows.
 */
const WRITE_BATCH = `
  WITH media_in AS (
    INSERT INTO mediacache.media (${MEDIA_COLUMNS})
      SELECT * FROM unnest(${MEDIA_TYPES.map((t, i) => `$${i + 1}::${t}[]`).join(', ')})
    ON CONFLICT (md5) DO UPDATE SET
      sha256 = excluded.sha256, size = excluded.size, mime = excluded.mime, media_type = excluded.media_type,
      width = excluded.width, height = excluded.height, extension = excluded.extension,
      storage_path = excluded.storage_path, fetched_at = excluded.fetched_at, verified_at = excluded.verified_at,
      etag = excluded.etag, last_modified = excluded.last_modified, extra = excluded.extra
    RETURNING 1
  ), urls_in AS (
    INSERT INTO mediacache.media_url (url, md5)
      SELECT u, m FROM unnest($15::text[], $16::text[]) WITH ORDINALITY AS x(u, m, i) ORDER BY i
    ON CONFLICT (url_key) DO UPDATE SET md5 = excluded.md5, last_seen = now()
      WHERE mediacache.media_url.md5 IS DISTINCT FROM excluded.md5
    RETURNING 1
  )
  UPDATE mediacache.jobs j SET state = 'done', md5 = x.md5, done_by = x.node, lease_owner = NULL, lease_expires_at = NULL,
         error_code = NULL, error_message = NULL, error_status = NULL, ended_at = now(), updated_at = now()
    FROM unnest($17::int8[], $18::text[], $19::text[]) AS x(id, node, md5)
   WHERE j.id = x.id AND ((j.state = 'running' AND j.lease_owner = x.node) OR j.state = 'queued')
  RETURNING j.*`;

export interface WriteBatcherOptions {
  /**
   * How long the first write after an idle spell waits for company (default
   * 0: only the writes made in the same turn of the event loop). Under load
   * the batches fill anyway: writes wait while the previous batch commits.
   */
  windowMs?: number;
  /** Writes per transaction at most (default 500). */
  maxBatch?: number;
}

/** Counts for tests and benches. */
export interface WriteBatcherStats {
  batches: number;
  writes: number;
  /** Batches split into one transaction per write after a refused row. */
  splits: number;
}

export class PgWriteBatcher {
  private pending: Op[] = [];
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Immediate | undefined;
  private readonly windowMs: number;
  private readonly maxBatch: number;
  readonly stats: WriteBatcherStats = { batches: 0, writes: 0, splits: 0 };

  constructor(
    private readonly db: PgDatabase,
    opts: WriteBatcherOptions = {},
  ) {
    this.windowMs = opts.windowMs ?? 0;
    this.maxBatch = Math.max(1, opts.maxBatch ?? 500);
  }

  /**
   * Insert or update a media row and add its URLs (PgRecords.upsert's
   * meaning); with `complete`, end that job in the same statement (resolves
   * with its row, or undefined when the node no longer holds it). Resolves
   * once committed.
   */
  upsert(md5: string, values: MediaValues, urls: string[], complete?: { nodeId: string; jobId: string }): Promise<JobRow | undefined> {
    return new Promise<JobRow | undefined>((resolve, reject) => this.add({ kind: 'upsert', md5, values, urls, ...(complete ? { complete } : {}), resolve, reject }));
  }

  /** PgQueue.complete's meaning: the job row, or undefined when another daemon holds the job now. */
  complete(nodeId: string, jobId: string, md5: string): Promise<JobRow | undefined> {
    return new Promise<JobRow | undefined>((resolve, reject) => this.add({ kind: 'complete', jobId, nodeId, md5, resolve, reject }));
  }

  /** Resolves when every write handed in so far has been written or refused. */
  async idle(): Promise<void> {
    while (this.running || this.pending.length > 0) {
      if (!this.running) this.start();
      await this.running;
    }
  }

  private add(op: Op): void {
    this.pending.push(op);
    if (this.running) return; // picked up when the batch in flight commits
    if (this.pending.length >= this.maxBatch) this.start();
    else if (!this.timer && !this.soon) {
      // Not unref'd: a caller is waiting on this write.
      if (this.windowMs > 0) this.timer = setTimeout(() => this.start(), this.windowMs);
      else this.soon = setImmediate(() => this.start());
    }
  }

  private start(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.soon) {
      clearImmediate(this.soon);
      this.soon = undefined;
    }
    if (this.running || this.pending.length === 0) return;
    this.running = this.drain();
  }

  /**
   * Write batches until nothing is pending; the writes that arrive meanwhile
   * form the next batch. `running` is cleared in the same step as the last
   * look at `pending`: a write added after that look starts a new drain.
   */
  private async drain(): Promise<void> {
    try {
      while (this.pending.length > 0) await this.runBatch(this.take());
    } finally {
      this.running = undefined;
    }
  }

  /** Up to maxBatch pending writes; a second completion of a job already in the batch waits for the next. */
  private take(): Op[] {
    const batch: Op[] = [];
    const rest: Op[] = [];
    const jobs = new Set<string>();
    for (const op of this.pending) {
      const job = op.kind === 'complete' ? op.jobId : op.complete?.jobId;
      if (batch.length >= this.maxBatch || (job !== undefined && jobs.has(job))) {
        rest.push(op);
        continue;
      }
      if (job !== undefined) jobs.add(job);
      batch.push(op);
    }
    this.pending = rest;
    return batch;
  }

  private async runBatch(batch: Op[]): Promise<void> {
    this.stats.batches++;
    this.stats.writes += batch.length;
    const values = batchValues(batch);
    let rows: JobRow[];
    for (let attempt = 1; ; attempt++) {
      try {
        rows = await this.db.query<JobRow>(WRITE_BATCH, values, 'mc_write_batch');
        break;
      } catch (e) {
        // A deadlock with another daemon's batch or claim: nothing was written, run it again.
        if (isTransient((e as { cause?: unknown }).cause) && attempt < 5) continue;
        if (batch.length === 1 || isConnectionError(e)) {
          for (const op of batch) op.reject(e as MediaCacheError);
          return;
        }
        // A row the server refused: find it by writing each alone.
        this.stats.splits++;
        for (const op of batch) await this.runBatch([op]);
        return;
      }
    }
    const done = new Map(rows.map((r) => [String(r.id), r]));
    for (const op of batch) {
      const job = op.kind === 'complete' ? op.jobId : op.complete?.jobId;
      op.resolve(job === undefined ? undefined : done.get(job));
    }
  }
}

/** WRITE_BATCH's parameters for a batch. */
function batchValues(batch: Op[]): unknown[] {
  // Upserts of one md5 merge in call order: later column values, URLs accumulated (first association first).
  const media = new Map<string, { values: MediaValues; urls: string[] }>();
  const urlOwner = new Map<string, string>(); // url -> md5 of the latest upsert listing it
  const completes: Array<{ nodeId: string; jobId: string; md5: string }> = [];
  for (const op of batch) {
    if (op.kind === 'complete') {
      completes.push(op);
      continue;
    }
    if (op.complete) completes.push({ ...op.complete, md5: op.md5 });
    const m = media.get(op.md5);
    if (m) {
      m.values = op.values;
      for (const u of op.urls) if (!m.urls.includes(u)) m.urls.push(u);
    } else media.set(op.md5, { values: op.values, urls: [...op.urls] });
    for (const u of op.urls) urlOwner.set(u, op.md5);
  }
  const md5s = [...media.keys()].sort();
  const cols = MEDIA_TYPES.map((_t, i) => md5s.map((k) => media.get(k)!.values[i]));
  // Grouped by record in md5 order, each record's URLs in its own order (their seq order).
  const urls: string[] = [];
  const owners: string[] = [];
  for (const k of md5s) {
    for (const u of media.get(k)!.urls) {
      if (urlOwner.get(u) !== k) continue; // claimed later in the batch by another record
      urls.push(u);
      owners.push(k);
    }
  }
  completes.sort((a, b) => Number(a.jobId) - Number(b.jobId));
  return [...cols, urls, owners, completes.map((o) => o.jobId), completes.map((o) => o.nodeId), completes.map((o) => o.md5)];
}

const batchers = new WeakMap<PgDatabase, PgWriteBatcher>();

/** The one batcher of a pool (records and queue share it, so a batch holds both kinds of writes). */
export function writeBatcherOf(db: PgDatabase): PgWriteBatcher {
  let b = batchers.get(db);
  if (!b) batchers.set(db, (b = new PgWriteBatcher(db)));
  return b;
}
