/**
 * Where the inbox keeps its batches (a `.urls` file → per-line job or error,
 * until the file's report is written). Two forms:
 * - LocalBatchStore (embedded mode): the daemon's own JobStore, files
 *   `batch-<id>.json` in its state dir.
 * - PgBatchStore (cluster mode): rows of `mediacache.batches`, so several
 *   daemons can watch one inbox folder on a shared mount. Each daemon keeps
 *   an in-memory mirror of its own rows (lookups stay synchronous) and writes
 *   through: save() resolves once the row is committed.
 *
 * Ownership (PgBatchStore): a daemon owns the batches it created (node id).
 * Only the owner moves the file, writes the report and deletes the row; a
 * restarted daemon loads its own rows and resumes them. A file of a shared
 * folder is read by the daemon whose claim() inserted the row first.
 */
import crypto from 'node:crypto';
import type { PgBatch, PgBatches } from '../../core/postgres/pg-batches.js';
import type { BatchIdent, BatchRecord, JobStore } from '../jobs/job-store.js';
import { batchIdOf } from './inbox-file.js';

export interface BatchStore {
  /** Several daemons share it: a file is read only after claim() said it is ours. */
  readonly shared: boolean;
  /** Read this daemon's batches (once, at start). */
  load(): Promise<void>;
  /** The id of the batch taken from this file (the same for every daemon that sees it, when shared). */
  idOf(inbox: string, name: string, ident: BatchIdent): string;
  /** One of this daemon's recorded batches (enqueued or moved). */
  batch(id: string): BatchRecord | undefined;
  batches(): BatchRecord[];
  /** This daemon's claims whose intake did not finish (a crash while enqueuing); always empty when not shared. */
  claims(): BatchRecord[];
  /**
   * Take the file before anything is enqueued. True: this daemon reads it
   * (a new claim, or its own earlier one). False: another daemon has it.
   */
  claim(b: BatchRecord): Promise<boolean>;
  /** Drop a claim whose file is gone. */
  release(id: string): Promise<void>;
  /** Record the batch; durable once resolved. */
  save(b: BatchRecord): Promise<void>;
  /** Forget a reported batch (durably). */
  delete(id: string): Promise<void>;
}

/** Embedded mode: the batches live in the daemon's JobStore, as they always have. */
export class LocalBatchStore implements BatchStore {
  readonly shared = false;

  constructor(private readonly store: JobStore) {}

  async load(): Promise<void> {}

  idOf(inbox: string, name: string, ident: BatchIdent): string {
    return batchIdOf(inbox, name, ident);
  }

  batch(id: string): BatchRecord | undefined {
    return this.store.batch(id);
  }

  batches(): BatchRecord[] {
    return this.store.batches();
  }

  claims(): BatchRecord[] {
    return [];
  }

  async claim(): Promise<boolean> {
    return true;
  }

  async release(): Promise<void> {}

  save(b: BatchRecord): Promise<void> {
    return this.store.saveBatch(b);
  }

  delete(id: string): Promise<void> {
    return this.store.deleteBatch(id);
  }
}

/**
 * A batch id every daemon computes alike for one file, wherever the shared
 * folder is mounted: name, size, mtime and inode, but not the inbox path nor
 * the device number (both differ between machines mounting one share).
 */
export function sharedBatchIdOf(name: string, ident: BatchIdent): string {
  return crypto.createHash('sha256').update(`${name}\0${ident.size}\0${ident.mtimeMs}\0${ident.ino}`).digest('hex').slice(0, 32);
}

function toRecord(p: PgBatch): BatchRecord {
  const b: BatchRecord = {
    id: p.id,
    inbox: p.inbox,
    sourcePath: p.sourcePath,
    processedPath: p.processedPath,
    state: p.state === 'moved' ? 'moved' : 'enqueued',
    createdAt: p.createdAt,
    lines: p.lines,
  };
  if (p.ident) b.ident = p.ident;
  if (p.refused) b.refused = p.refused;
  return b;
}

/** Cluster mode: rows of mediacache.batches, owned by the daemon that created them. */
export class PgBatchStore implements BatchStore {
  readonly shared = true;
  /** Own batches that are enqueued or moved. */
  private readonly mine = new Map<string, BatchRecord>();
  /** Own claims whose lines are not recorded yet. */
  private readonly taking = new Map<string, BatchRecord>();

  constructor(
    private readonly rows: PgBatches,
    private readonly nodeId: string,
  ) {}

  async load(): Promise<void> {
    for (const p of await this.rows.list(this.nodeId)) {
      if (p.state === 'taking') this.taking.set(p.id, toRecord(p));
      else this.mine.set(p.id, toRecord(p));
    }
  }

  idOf(_inbox: string, name: string, ident: BatchIdent): string {
    return sharedBatchIdOf(name, ident);
  }

  batch(id: string): BatchRecord | undefined {
    return this.mine.get(id);
  }

  batches(): BatchRecord[] {
    return [...this.mine.values()];
  }

  claims(): BatchRecord[] {
    return [...this.taking.values()];
  }

  private row(b: BatchRecord, state: PgBatch['state']): Omit<PgBatch, 'createdAt'> & { createdAt: string } {
    return {
      id: b.id,
      key: b.id,
      nodeId: this.nodeId,
      inbox: b.inbox,
      sourcePath: b.sourcePath,
      processedPath: b.processedPath,
      state,
      createdAt: b.createdAt,
      lines: state === 'taking' ? [] : b.lines,
      ...(b.ident ? { ident: b.ident } : {}),
      ...(b.refused ? { refused: b.refused } : {}),
    };
  }

  async claim(b: BatchRecord): Promise<boolean> {
    if (this.taking.has(b.id)) return true;
    const { batch, created } = await this.rows.create(this.row(b, 'taking'));
    if (created || (batch.nodeId === this.nodeId && batch.state === 'taking')) {
      this.taking.set(b.id, b);
      return true;
    }
    return false;
  }

  async release(id: string): Promise<void> {
    if (!this.taking.has(id)) return;
    await this.rows.delete(id);
    this.taking.delete(id);
  }

  async save(b: BatchRecord): Promise<void> {
    // The first save after the claim records the lines: link their jobs to the batch then (once).
    const first = this.taking.has(b.id) || !this.mine.has(b.id);
    await this.rows.save(this.row(b, b.state), { linkJobs: first && b.lines.length > 0 });
    this.taking.delete(b.id);
    this.mine.set(b.id, b);
  }

  async delete(id: string): Promise<void> {
    await this.rows.delete(id);
    this.mine.delete(id);
  }
}
