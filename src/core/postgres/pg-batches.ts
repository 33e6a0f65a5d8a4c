/**
 * Inbox batch state (one row per `.urls` file taken in), the PostgreSQL form
 * of the daemon's batch-<id>.json files. The same file seen again after a
 * crash is the same batch: `key` (a digest of name and content) is unique,
 * and create() of a known key returns the batch already there.
 */
import type { ErrorCode } from '../errors.js';
import type { PgDatabase } from './pg-db.js';

/** One reported line of an inbox file: [line, raw text, jobId or null, error code or null]. */
export type PgBatchLine = [line: number, raw: string, jobId: string | null, error: ErrorCode | null];

export interface PgBatch {
  id: string;
  key: string;
  /** Daemon that took the file in (it writes the report). */
  nodeId?: string;
  inbox: string;
  sourcePath: string;
  processedPath: string;
  state: 'enqueued' | 'moved';
  createdAt: string;
  lines: PgBatchLine[];
}

interface BatchRow {
  id: string;
  key: string;
  node_id: string | null;
  inbox: string;
  source_path: string;
  processed_path: string;
  state: 'enqueued' | 'moved';
  lines: PgBatchLine[];
  created_at: Date;
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
  return b;
}

export class PgBatches {
  constructor(private readonly db: PgDatabase) {}

  /** Store a new batch; when its key is known already, the stored one (created false). */
  async create(b: Omit<PgBatch, 'createdAt'>): Promise<{ batch: PgBatch; created: boolean }> {
    const rows = await this.db.query<BatchRow>(
      `INSERT INTO mediacache.batches (id, key, node_id, inbox, source_path, processed_path, state, lines)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING RETURNING *`,
      [b.id, b.key, b.nodeId ?? null, b.inbox, b.sourcePath, b.processedPath, b.state, JSON.stringify(b.lines)],
    );
    if (rows.length) return { batch: fromRow(rows[0]), created: true };
    const known = await this.db.query<BatchRow>('SELECT * FROM mediacache.batches WHERE key = $1', [b.key]);
    return { batch: fromRow(known[0]), created: false };
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

  async setState(id: string, state: PgBatch['state']): Promise<void> {
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

  /** Remove a reported batch; its jobs become ordinary ended jobs (prunable). */
  async delete(id: string): Promise<void> {
    await this.db.query('DELETE FROM mediacache.batches WHERE id = $1', [id]);
  }
}
