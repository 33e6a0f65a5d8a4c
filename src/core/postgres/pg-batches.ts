/**
 * Inbox batch state (one row per `.urls` file taken in), the PostgreSQL form
 * of the daemon's batch-<id>.json files, shared by the daemons of a cluster.
 *
 * Invariants:
 * - `key` is unique: of several daemons watching one inbox folder, the one
 *   whose create() inserts the row reads the file; the others find the row
 *   and leave the file alone.
 * - A row is `taking` while its owner (node_id) enqueues the file's URLs,
 *   `enqueued` once every line has its job (durable before the file moves),
 *   `moved` once the file is in processed/. Only the owner moves the file,
 *   writes the report and then deletes the row.
 * - Every statement is parameterised; lines travel as one jsonb parameter
 *   (bounded by the inbox's byte cap).
 */
import type { ErrorCode } from '../errors.js';
import type { PgDatabase } from './pg-db.js';

/** One reported line of an inbox file: [line, raw text, jobId or null, error code or null]. */
export type PgBatchLine = [line: number, raw: string, jobId: string | null, error: ErrorCode | null];

/** The file a batch was taken from, as fstat saw it when it was opened. */
export interface PgBatchIdent {
  size: number;
  mtimeMs: number;
  dev: number;
  ino: number;
}

export type PgBatchState = 'taking' | 'enqueued' | 'moved';

export interface PgBatch {
  id: string;
  key: string;
  /** Daemon that took the file in (it moves the file and writes the report). */
  nodeId?: string;
  inbox: string;
  sourcePath: string;
  processedPath: string;
  state: PgBatchState;
  createdAt: string;
  lines: PgBatchLine[];
  ident?: PgBatchIdent;
  /** The file was not read (not a regular file, over a cap): why. */
  refused?: { code: ErrorCode; reason: string };
}

interface BatchRow {
  id: string;
  key: string;
  node_id: string | null;
  inbox: string;
  source_path: string;
  processed_path: string;
  state: PgBatchState;
  lines: PgBatchLine[];
  created_at: Date;
  ident?: PgBatchIdent | null;
  refused?: { code: ErrorCode; reason: string } | null;
}

function fromRow(r: BatchRow): PgBatch {
  const b: PgBatch = {
    id: r.id,
    key: r.key,
    inbox: r.inbox,
    sourcePath: r.source_path,
    processedPath: r.processed_path,
    state: r.state,
    createdAt: r.created_at.toISOString(),
    lines: r.lines,
  };
  if (r.node_id !== null) b.nodeId = r.node_id;
  if (r.ident) b.ident = r.ident;
  if (r.refused) b.refused = r.refused;
  return b;
}

type NewBatch = Omit<PgBatch, 'createdAt'> & { createdAt?: string };

function values(b: NewBatch): unknown[] {
  return [
    b.id,
    b.key,
    b.nodeId ?? null,
    b.inbox,
    b.sourcePath,
    b.processedPath,
    b.state,
    JSON.stringify(b.lines),
    b.ident ? JSON.stringify(b.ident) : null,
    b.refused ? JSON.stringify(b.refused) : null,
    b.createdAt ?? null,
  ];
}

const COLUMNS = 'id, key, node_id, inbox, source_path, processed_path, state, lines, ident, refused, created_at';
const VALUES = '$1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10::jsonb, coalesce($11::timestamptz, now())';

export class PgBatches {
  constructor(private readonly db: PgDatabase) {}

  /** Store a new batch; when its key is known already, the stored one (created false). */
  async create(b: NewBatch): Promise<{ batch: PgBatch; created: boolean }> {
    const rows = await this.db.query<BatchRow>(`INSERT INTO mediacache.batches (${COLUMNS}) VALUES (${VALUES}) ON CONFLICT (key) DO NOTHING RETURNING *`, values(b));
    if (rows.length) return { batch: fromRow(rows[0]), created: true };
    const known = await this.db.query<BatchRow>('SELECT * FROM mediacache.batches WHERE key = $1', [b.key]);
    // Deleted between the two statements (its report was just written): try again.
    if (known.length === 0) return this.create(b);
    return { batch: fromRow(known[0]), created: false };
  }

  /**
   * Write the whole batch (insert or replace by id), durable once resolved.
   * With linkJobs, the jobs its lines name that belong to no batch yet get
   * its id (batch_id), so a prune keeps them until the report is written.
   */
  async save(b: NewBatch, o: { linkJobs?: boolean } = {}): Promise<void> {
    await this.db.tx(async (c) => {
      await c.query(
        `INSERT INTO mediacache.batches (${COLUMNS}) VALUES (${VALUES})
         ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key, node_id = EXCLUDED.node_id, inbox = EXCLUDED.inbox,
           source_path = EXCLUDED.source_path, processed_path = EXCLUDED.processed_path, state = EXCLUDED.state,
           lines = EXCLUDED.lines, ident = EXCLUDED.ident, refused = EXCLUDED.refused, updated_at = now()`,
        values(b),
      );
      if (o.linkJobs) {
        await c.query(
          `UPDATE mediacache.jobs SET batch_id = $1
            WHERE batch_id IS NULL
              AND id IN (SELECT (l->>2)::int8 FROM mediacache.batches b, jsonb_array_elements(b.lines) l
                          WHERE b.id = $1 AND jsonb_typeof(l->2) = 'string')`,
          [b.id],
        );
      }
    });
  }

  async get(id: string): Promise<PgBatch | undefined> {
    const rows = await this.db.query<BatchRow>('SELECT * FROM mediacache.batches WHERE id = $1', [id]);
    return rows[0] && fromRow(rows[0]);
  }

  /** Batches of one daemon (all when nodeId is omitted), oldest first. */
  async list(nodeId?: string): Promise<PgBatch[]> {
    const rows = await this.db.query<BatchRow>(
      'SELECT * FROM mediacache.batches WHERE ($1::text IS NULL OR node_id = $1) ORDER BY created_at, id',
      [nodeId ?? null],
    );
    return rows.map(fromRow);
  }

  async setState(id: string, state: PgBatchState): Promise<void> {
    await this.db.query('UPDATE mediacache.batches SET state = $2, updated_at = now() WHERE id = $1', [id, state]);
  }

  /** Jobs of the batch's lines still queued or running (0: its report can be written). */
  async pendingJobs(id: string): Promise<number> {
    const rows = await this.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM mediacache.jobs
        WHERE state IN ('queued', 'running')
          AND id IN (SELECT (l->>2)::int8 FROM mediacache.batches b, jsonb_array_elements(b.lines) l
                      WHERE b.id = $1 AND jsonb_typeof(l->2) = 'string')`,
      [id],
    );
    return rows[0].n;
  }

  /** Remove a reported batch (or an unused claim); its jobs become ordinary ended jobs (prunable). */
  async delete(id: string): Promise<void> {
    await this.db.query('DELETE FROM mediacache.batches WHERE id = $1', [id]);
  }
}
