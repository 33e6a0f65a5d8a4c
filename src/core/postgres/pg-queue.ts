/**
 * The durable job queue shared by every daemon of a cluster, on the standard
 * `FOR UPDATE SKIP LOCKED` pattern.
 *
 * Invariants:
 * - One queued-or-running job per URL (unique index jobs_active_url): enqueue
 *   of a URL already waiting or running returns that job.
 * - A job is claimed by one daemon at a time: claim locks the rows it takes
 *   (SKIP LOCKED: claimers never wait for each other's rows) and sets
 *   lease_owner in the same transaction.
 * - Cluster-wide per-host limit: claim (mediacache.claim_jobs, schema-v4.ts, one
 *   call per round) takes the advisory lock of each host it
 *   is about to start (mediacache.lock_hosts, one global order, held to
 *   commit), then counts that host's running jobs with a fresh snapshot, so a
 *   concurrent claimer's committed jobs are always counted. Jobs become
 *   running only here.
 * - A lease that is not renewed expires; the next claim by any daemon puts
 *   the job back in the queue (take-over after kill -9). complete/fail from a
 *   daemon that lost the lease are refused (false) once another daemon holds it.
 * - Every time is the database's clock (now()), never a daemon's: machines of
 *   a cluster may disagree about the time.
 */
import { performance } from 'node:perf_hooks';
import { MediaCacheError, type ErrorInfo } from '../errors.js';
import type { JobState, QueueCounts } from '../protocol/rpc.js';
import { readCounter } from './pg-counters.js';
import type { PgDatabase } from './pg-db.js';
import { fromJobRow, hostOf, type JobRow, type PgJob } from './pg-job-row.js';
import { writeBatcherOf } from './pg-write-batch.js';

export type { PgJob } from './pg-job-row.js';

export interface EnqueueItem {
  url: string;
  /** "rpc" or the inbox file and line. */
  source?: string;
}
export interface EnqueueOptions {
  /** Lower runs first (rpc 0, inbox 10). A URL already queued at a worse priority is moved up. */
  priority?: number;
  batchId?: string;
  force?: boolean;
}
export interface Enqueued {
  job: PgJob;
  /** False when the URL was already queued or running (this is that job). */
  created: boolean;
}

export interface ClaimOptions {
  /** Running jobs per origin host across the whole cluster (0 = no limit). */
  perHostLimit: number;
  /** Lease length; renew well within it (renewLeases). */
  leaseMs: number;
  /** A job whose lease expired this many times is failed instead of re-queued (default 5). */
  maxAttempts?: number;
}

/** A job as claim() hands it out. */
export interface ClaimedJob extends PgJob {
  /** Its URL mapped to a record when it was claimed (false: the download need not look for a cache hit). */
  urlMapped: boolean;
}

export interface NodeShare {
  running: number;
  done: number;
  failed: number;
}

const ACTIVE = "state IN ('queued', 'running')";
const NO_LIMIT = 2 ** 31 - 1;

/**
 * Insert the URLs not already active. Ids follow the input order (FIFO within
 * a priority), but rows are inserted in url_key order: two daemons queueing
 * overlapping lists then meet on the unique index in the same order and one
 * waits for the other instead of both deadlocking.
 */
const ENQUEUE = `
  WITH input AS (
    SELECT u, h, s, nextval(pg_get_serial_sequence('mediacache.jobs', 'id')) AS id
      FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS x(u, h, s, i) ORDER BY i
  )
  INSERT INTO mediacache.jobs (id, url, host, priority, source, batch_id, force)
    SELECT id, u, h, $4, s, $5, $6 FROM input ORDER BY mediacache.url_key(u)
  ON CONFLICT (url_key) WHERE ${ACTIVE} DO NOTHING
  RETURNING *`;

/** The active jobs of URLs already queued, moved up to `priority` when it is better. */
const RAISE_PRIORITY = `
  UPDATE mediacache.jobs SET priority = least(priority, $2)
   WHERE url_key = ANY(SELECT mediacache.url_key(u) FROM unnest($1::text[]) u) AND ${ACTIVE}
   RETURNING *`;

/** Running jobs whose lease ran out go back to the queue (or fail after maxAttempts). */
const RECLAIM = `
  WITH expired AS (
    SELECT id FROM mediacache.jobs WHERE state = 'running' AND lease_expires_at < now() FOR UPDATE SKIP LOCKED
  )
  UPDATE mediacache.jobs j SET
    state = CASE WHEN j.attempts >= $1 THEN 'failed' ELSE 'queued' END,
    error_code = CASE WHEN j.attempts >= $1 THEN 'E_ABORTED' ELSE j.error_code END,
    error_message = CASE WHEN j.attempts >= $1
      THEN 'the daemon running it stopped answering ' || j.attempts || ' times' ELSE j.error_message END,
    ended_at = CASE WHEN j.attempts >= $1 THEN now() END,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
  FROM expired WHERE j.id = expired.id
  RETURNING j.id`;

/** Rows a daemon may end: its own running job, or one put back in the queue and not claimed again. */
const MINE = "((state = 'running' AND lease_owner = $2) OR state = 'queued')";

/**
 * Jobs this PgQueue inserts between two ANALYZE of the jobs table. Without
 * statistics that know the queue is long (a young table, or one analyzed
 * while its queue was empty) the planner reads and sorts the whole queue on
 * every claim (measured: 39 ms a claim with 100,000 queued, 2 ms once
 * analyzed); autovacuum catches up only after a minute or more.
 */
const ANALYZE_AFTER_INSERTS = 1000;

/** A claim looks for expired leases at most this often (per PgQueue); leases are seconds long. */
const RECLAIM_EVERY_MS = 1000;

export class PgQueue {
  private lastReclaim = 0;
  private insertedSinceAnalyze = 0;

  constructor(private readonly db: PgDatabase) {}

  /**
   * Queue URLs (in order), returning one entry per input. Durable when it
   * resolves. Duplicates inside `items` map to one job.
   */
  async enqueue(items: EnqueueItem[], opts: EnqueueOptions = {}): Promise<Enqueued[]> {
    const priority = opts.priority ?? 0;
    const found = new Map<string, Enqueued>();
    let pending = [...new Set(items.map((i) => i.url))];
    const sourceOf = new Map<string, string>();
    for (const i of items) if (!sourceOf.has(i.url)) sourceOf.set(i.url, i.source ?? 'rpc');
    // A URL whose active job ends between our INSERT (conflict) and SELECT (gone) is tried again.
    for (let round = 0; pending.length > 0 && round < 5; round++) {
      const args = [pending, pending.map(hostOf), pending.map((u) => sourceOf.get(u)), priority, opts.batchId ?? null, opts.force ?? false];
      const inserted = await this.db.tx(async (c) => (await c.query<JobRow>(ENQUEUE, args)).rows);
      for (const r of inserted) found.set(r.url, { job: fromJobRow(r), created: true });
      pending = pending.filter((u) => !found.has(u));
      if (pending.length === 0) break;
      const known = [pending, priority];
      const existing = await this.db.tx(async (c) => (await c.query<JobRow>(RAISE_PRIORITY, known)).rows);
      for (const r of existing) found.set(r.url, { job: fromJobRow(r), created: false });
      pending = pending.filter((u) => !found.has(u));
    }
    this.insertedSinceAnalyze += [...found.values()].filter((e) => e.created).length;
    if (this.insertedSinceAnalyze >= ANALYZE_AFTER_INSERTS) await this.analyzeJobs();
    if (pending.length > 0) {
      throw new MediaCacheError('E_UNAVAILABLE', `could not queue ${pending.length} URL(s): their jobs kept changing state; try again`, {
        retryable: true,
      });
    }
    return items.map((i) => found.get(i.url)!);
  }

  /**
   * Fresh planner statistics for the jobs table (see ANALYZE_AFTER_INSERTS).
   * The jobs are queued whatever happens here: a VACUUM holding the table
   * (lock_timeout), a role that does not own it (PostgreSQL only warns) or an
   * outage leaves it to autovacuum, and the next 1,000 inserts try again.
   */
  private async analyzeJobs(): Promise<void> {
    try {
      await this.db.tx(async (c) => {
        await c.query("SET LOCAL lock_timeout = '200ms'");
        await c.query('ANALYZE mediacache.jobs');
      });
      this.insertedSinceAnalyze = 0;
    } catch {
      // Statistics only: not a reason to fail an enqueue that committed.
    }
  }

  /**
   * Take up to `n` jobs for `nodeId`: best priority first, only those due, at
   * most `perHostLimit` running per host across the cluster, none for a host
   * in a Retry-After pause. Expired leases are taken back first (looked for
   * at most once a second per PgQueue; reclaimExpired() does it now).
   */
  async claim(nodeId: string, n: number, opts: ClaimOptions): Promise<ClaimedJob[]> {
    if (n <= 0) return [];
    if (performance.now() - this.lastReclaim >= RECLAIM_EVERY_MS) {
      await this.reclaimExpired(opts.maxAttempts ?? 5);
      this.lastReclaim = performance.now();
    }
    const limit = opts.perHostLimit > 0 ? opts.perHostLimit : NO_LIMIT;
    const out: ClaimedJob[] = [];
    // A round can come back short (a host filled up under us); a few more fill the rest.
    // One that claimed nothing (every candidate's host at its limit) ends it: trying again at
    // once would only repeat the same transaction.
    for (let round = 0; round < 4 && out.length < n; round++) {
      // One round is one call of claim_jobs (schema-v4.ts): one round trip, its own transaction.
      // With each job, whether its URL maps to a record now (the download's cache-hit lookup
      // is skipped when it does not): read in the claim's round trip, not one more per job.
      const rows = await this.db.query<JobRow & { url_mapped: boolean }>(
        `SELECT c.*, EXISTS (SELECT 1 FROM mediacache.media_url u WHERE u.url_key = c.url_key) AS url_mapped
           FROM mediacache.claim_jobs($1, $2, $3, $4) c`,
        [nodeId, n - out.length, limit, opts.leaseMs],
        'mc_claim',
      );
      const got = rows
        .map((r): ClaimedJob => ({ ...fromJobRow(r), urlMapped: r.url_mapped }))
        .sort((a, b) => a.priority - b.priority || Number(a.id) - Number(b.id));
      out.push(...got);
      if (got.length === 0) break;
    }
    return out;
  }

  /** Put jobs whose lease expired back in the queue; how many. */
  async reclaimExpired(maxAttempts = 5): Promise<number> {
    return (await this.db.query(RECLAIM, [maxAttempts])).length;
  }

  /** Extend every lease `nodeId` holds; the ids it still holds (a job missing from it was taken over: stop it). */
  async renewLeases(nodeId: string, leaseMs: number): Promise<string[]> {
    const rows = await this.db.query<{ id: number }>(
      `UPDATE mediacache.jobs SET lease_expires_at = now() + $2 * interval '1 millisecond'
        WHERE state = 'running' AND lease_owner = $1 RETURNING id`,
      [nodeId, leaseMs],
    );
    return rows.map((r) => String(r.id));
  }

  /**
   * Mark done with its content; the job, or undefined when another daemon
   * holds it now. Concurrent completions (and record upserts) share one
   * transaction (pg-write-batch.ts); durable when it resolves.
   */
  async complete(nodeId: string, jobId: string, md5: string): Promise<PgJob | undefined> {
    const row = await writeBatcherOf(this.db).complete(nodeId, jobId, md5);
    return row && fromJobRow(row);
  }

  /**
   * Record a failure: back in the queue after `retryInMs` (measured on the
   * database's clock), or failed for good without it.
   */
  async fail(nodeId: string, jobId: string, err: ErrorInfo, opts: { retryInMs?: number } = {}): Promise<PgJob | undefined> {
    const retry = opts.retryInMs === undefined ? null : Math.max(0, Math.round(opts.retryInMs));
    const rows = await this.db.query<JobRow>(
      `UPDATE mediacache.jobs SET
         state = CASE WHEN $6::int8 IS NULL THEN 'failed' ELSE 'queued' END,
         next_attempt_at = CASE WHEN $6::int8 IS NULL THEN next_attempt_at ELSE now() + $6 * interval '1 millisecond' END,
         ended_at = CASE WHEN $6::int8 IS NULL THEN now() END,
         done_by = CASE WHEN $6::int8 IS NULL THEN $2 END,
         error_code = $3, error_message = $4, error_status = $5,
         lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
        WHERE id = $1 AND ${MINE} RETURNING *`,
      [jobId, nodeId, err.code, err.message, err.status ?? null, retry],
    );
    return rows[0] && fromJobRow(rows[0]);
  }

  /** Give running jobs back to the queue (a draining daemon); all of the node's when `jobIds` is omitted. */
  async release(nodeId: string, jobIds?: string[]): Promise<number> {
    const rows = await this.db.query(
      `UPDATE mediacache.jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
        WHERE state = 'running' AND lease_owner = $1 AND ($2::int8[] IS NULL OR id = ANY($2::int8[])) RETURNING id`,
      [nodeId, jobIds ?? null],
    );
    return rows.length;
  }

  /** No claim for `host` until `delayMs` from now (Retry-After, for the whole cluster); never shortens a pause. */
  async deferHost(host: string, delayMs: number): Promise<void> {
    await this.db.query(
      `INSERT INTO mediacache.hosts (host, not_before) VALUES ($1, now() + $2 * interval '1 millisecond')
       ON CONFLICT (host) DO UPDATE SET not_before = greatest(mediacache.hosts.not_before, excluded.not_before)`,
      [host, Math.max(0, Math.round(delayMs))],
    );
  }

  async get(jobId: string): Promise<PgJob | undefined> {
    const rows = await this.db.query<JobRow>('SELECT * FROM mediacache.jobs WHERE id = $1', [jobId]);
    return rows[0] && fromJobRow(rows[0]);
  }

  /** The queued or running job of a URL (at most one: url_key is unique among active jobs). */
  async activeByUrl(url: string): Promise<PgJob | undefined> {
    const rows = await this.db.query<JobRow>(`SELECT * FROM mediacache.jobs WHERE url_key = mediacache.url_key($1) AND ${ACTIVE}`, [url]);
    return rows[0] && fromJobRow(rows[0]);
  }

  async getMany(jobIds: string[]): Promise<PgJob[]> {
    const rows = await this.db.query<JobRow>('SELECT * FROM mediacache.jobs WHERE id = ANY($1::int8[]) ORDER BY id', [jobIds], 'mc_jobs_many');
    return rows.map(fromJobRow);
  }

  /**
   * Of `jobIds`, those still queued or running with their state (ids only:
   * what a poll for ended jobs needs, without shipping the rows of every job
   * still waiting).
   */
  async stillActive(jobIds: string[]): Promise<Map<string, JobState>> {
    const rows = await this.db.query<{ id: number; state: JobState }>(
      `SELECT id, state FROM mediacache.jobs WHERE id = ANY($1::int8[]) AND ${ACTIVE}`,
      [jobIds],
      'mc_jobs_still_active',
    );
    return new Map(rows.map((r) => [String(r.id), r.state]));
  }

  /** Jobs in a state (all when omitted): queued in claim order, running oldest first, ended newest first. */
  async list(opts: { state?: JobState; limit?: number } = {}): Promise<PgJob[]> {
    const order =
      opts.state === 'queued' ? 'priority, id' : opts.state === 'running' ? 'id' : opts.state ? 'ended_at DESC, id DESC' : 'id DESC';
    const rows = await this.db.query<JobRow>(
      `SELECT * FROM mediacache.jobs WHERE ($1::text IS NULL OR state = $1) ORDER BY ${order} LIMIT $2`,
      [opts.state ?? null, opts.limit ?? 100],
    );
    return rows.map(fromJobRow);
  }

  /** Cluster totals by state (maintained counters: constant time at any queue size). */
  async counts(): Promise<QueueCounts> {
    const sums = await readCounter(this.db, 'jobs');
    const n = (s: JobState) => sums.get(s)?.n ?? 0;
    return { queued: n('queued'), running: n('running'), done: n('done'), failed: n('failed') };
  }

  /** Per daemon: jobs running now and jobs it ended (its share of the queue). */
  async shares(): Promise<Map<string, NodeShare>> {
    const out = new Map<string, NodeShare>();
    const at = (id: string): NodeShare => {
      let s = out.get(id);
      if (!s) out.set(id, (s = { running: 0, done: 0, failed: 0 }));
      return s;
    };
    const running = await this.db.query<{ owner: string; n: number }>(
      "SELECT lease_owner AS owner, count(*)::int AS n FROM mediacache.jobs WHERE state = 'running' GROUP BY lease_owner",
    );
    for (const r of running) at(r.owner).running = r.n;
    for (const [id, v] of await readCounter(this.db, 'node_done')) at(id).done = v.n;
    for (const [id, v] of await readCounter(this.db, 'node_failed')) at(id).failed = v.n;
    return out;
  }

  /** Fail queued or running jobs with E_ABORTED; a running job's daemon sees it gone at its next renewal. */
  async cancel(jobIds: string[]): Promise<PgJob[]> {
    const rows = await this.db.query<JobRow>(
      `UPDATE mediacache.jobs SET state = 'failed', error_code = 'E_ABORTED', error_message = 'cancelled',
              lease_owner = NULL, lease_expires_at = NULL, ended_at = now(), updated_at = now()
        WHERE id = ANY($1::int8[]) AND ${ACTIVE} RETURNING *`,
      [jobIds],
    );
    return rows.map(fromJobRow);
  }

  /**
   * Queue failed jobs again (all failed when `jobIds` is omitted), fresh
   * attempts. A URL that is already queued or running again is left failed;
   * of several failed jobs for one URL the newest is retried.
   */
  async retryFailed(jobIds?: string[]): Promise<PgJob[]> {
    const rows = await this.db.query<JobRow>(
      `UPDATE mediacache.jobs SET state = 'queued', attempts = 0, next_attempt_at = now(), error_code = NULL,
              error_message = NULL, error_status = NULL, ended_at = NULL, done_by = NULL, updated_at = now()
        WHERE id IN (
          SELECT DISTINCT ON (f.url_key) f.id FROM mediacache.jobs f
           WHERE f.state = 'failed' AND ($1::int8[] IS NULL OR f.id = ANY($1::int8[]))
             AND NOT EXISTS (SELECT 1 FROM mediacache.jobs a WHERE a.url_key = f.url_key AND a.${ACTIVE})
           ORDER BY f.url_key, f.id DESC)
        RETURNING *`,
      [jobIds ?? null],
    );
    return rows.map(fromJobRow);
  }

  /**
   * Delete ended jobs beyond the newest `keepEnded` or older than `maxAgeMs`,
   * except those an inbox batch still reports on (batch_id set). How many.
   */
  async prune(opts: { keepEnded: number; maxAgeMs: number }): Promise<number> {
    const rows = await this.db.query(
      `DELETE FROM mediacache.jobs WHERE id IN (
         SELECT id FROM (
           SELECT id, ended_at, row_number() OVER (ORDER BY ended_at DESC, id DESC) AS k
             FROM mediacache.jobs WHERE state IN ('done', 'failed') AND batch_id IS NULL) e
          WHERE e.k > $1 OR e.ended_at < now() - $2 * interval '1 millisecond')
       RETURNING id`,
      [opts.keepEnded, opts.maxAgeMs],
    );
    return rows.length;
  }
}
