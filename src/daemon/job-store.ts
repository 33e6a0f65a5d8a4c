/**
 * JobStore: the durable half of the scheduler, in `<indexDir>/jobs/`.
 *
 * Layout (every file written through lowdb + DurableJSONFile: tmp, fsync,
 * rename, fsync dir):
 *   jobs-<n>.json    jobs whose sequence number is in [n*SHARD_SIZE, (n+1)*SHARD_SIZE)
 *   batch-<id>.json  one inbox batch (file → per-line job or error), until reported
 *   meta.json        the next sequence number
 *
 * Why shard by sequence: an inbox file enqueues consecutive sequence numbers,
 * so a chunk of 1,000 jobs dirties one or two shards, and the dispatcher walks
 * jobs roughly in sequence order, so state changes stay local too. Only dirty
 * shards are written, coalesced: one write per `flushDelayMs` burst, or at
 * once when a caller needs durability (flush()).
 *
 * Invariant: flush() resolves only once every change made before the call is
 * on stable storage. A failed write (ENOSPC) leaves its shards dirty so a later
 * flush retries them.
 */
import { readdir, rename, unlink } from 'node:fs/promises';
import fs from 'node:fs';
import path from 'node:path';
import { Low } from 'lowdb';
import { DurableJSONFile, TEMP_PREFIX, fsyncDir, isDurableFileParseError, writeFileDurable } from '../core/durable-file.js';
import type { ErrorCode } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { JobInfo, JobState, QueueCounts } from '../core/protocol.js';
import { jobsMissingFromBatches, readJobShard } from './job-salvage.js';

export const SHARD_SIZE = 250;

/** What is persisted per job: the public JobInfo plus ordering and the force flag. */
export interface JobRecord extends JobInfo {
  seq: number;
  force?: boolean;
}

/** One reported line of an inbox file: [line, raw text, jobId or null, error code or null]. */
export type BatchLine = [line: number, raw: string, jobId: string | null, error: ErrorCode | null];

export interface BatchRecord {
  id: string;
  /** sha256 of the file name and content: the same file seen again after a crash is the same batch. */
  key: string;
  inbox: string;
  /** Where the file was found. */
  sourcePath: string;
  /** Where it goes (chosen before the move, so a crash mid-move is resolvable). */
  processedPath: string;
  /** enqueued: jobs durable, file maybe not moved yet; moved: file is in processed/. */
  state: 'enqueued' | 'moved';
  createdAt: string;
  lines: BatchLine[];
}

/** What open() found damaged, and what it could not read back (see docs/operations.md). */
export interface JobStoreDamage {
  /** Copies of damaged files (`<file>.corrupt-<time>`), kept for inspection. */
  files: string[];
  /** Jobs found damaged and not taken (lost unless an inbox batch still names them). */
  lostJobs: number;
  /** Jobs re-created as queued from the inbox batch that listed them. */
  restoredJobs: number;
}

export interface JobStoreOptions {
  /** Coalescing delay of a background write (default 150 ms). */
  flushDelayMs?: number;
  /**
   * Delay for changes whose loss in a crash costs nothing but a repeat (a job
   * started or ended: the restart re-queues it and the cache answers it from
   * the index). Fewer rewrites of hot shards under load (default 1000 ms).
   */
  lazyFlushDelayMs?: number;
  logger?: Logger;
  now?: () => number;
  /** Ended jobs kept beyond those a pending report needs (default 10,000). */
  maxEnded?: number;
  /** Ended jobs older than this are dropped (default 7 days). */
  maxEndedAgeMs?: number;
}

interface ShardData {
  jobs: JobRecord[];
}
interface MetaData {
  nextSeq: number;
}

const SHARD_RE = /^jobs-(\d+)\.json$/;
const BATCH_RE = /^batch-([A-Za-z0-9_-]+)\.json$/;
const WRITE_PARALLEL = 4;
const PRUNE_EVERY_MS = 10_000;

function isEnded(s: JobState): boolean {
  return s === 'done' || s === 'failed';
}

export class JobStore {
  readonly dir: string;
  readonly damage: JobStoreDamage = { files: [], lostJobs: 0, restoredJobs: 0 };
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly flushDelayMs: number;
  private readonly lazyFlushDelayMs: number;
  private readonly maxEnded: number;
  private readonly maxEndedAgeMs: number;
  /** Insertion order = sequence order (loaded sorted, new jobs get higher numbers). */
  private readonly jobs = new Map<string, JobRecord>();
  private readonly shards = new Map<number, Set<string>>();
  private readonly batchMap = new Map<string, BatchRecord>();
  private readonly dirty = new Set<number>();
  private readonly countsByState: QueueCounts = { queued: 0, running: 0, done: 0, failed: 0 };
  private seq = 1;
  private metaSeqWritten = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private writing: Promise<void> | undefined;
  private pendingFlush: Promise<void> | undefined;
  private lastPrune = 0;
  private closed = false;

  private constructor(dir: string, o: JobStoreOptions) {
    this.dir = dir;
    this.log = o.logger ?? silentLogger;
    this.now = o.now ?? Date.now;
    this.flushDelayMs = o.flushDelayMs ?? 150;
    this.lazyFlushDelayMs = Math.max(this.flushDelayMs, o.lazyFlushDelayMs ?? 1000);
    this.maxEnded = o.maxEnded ?? 10_000;
    this.maxEndedAgeMs = o.maxEndedAgeMs ?? 7 * 24 * 3600_000;
  }

  static async open(dir: string, opts: JobStoreOptions = {}): Promise<JobStore> {
    const s = new JobStore(path.resolve(dir), opts);
    await s.load();
    return s;
  }

  private async load(): Promise<void> {
    await fs.promises.mkdir(this.dir, { recursive: true });
    const names = await readdir(this.dir);
    const shardNos: number[] = [];
    for (const n of names) {
      if (n.startsWith(TEMP_PREFIX)) {
        // A write that never reached its rename: the target still holds the old content.
        await unlink(path.join(this.dir, n)).catch(() => undefined);
        continue;
      }
      const m = SHARD_RE.exec(n);
      if (m) shardNos.push(Number(m[1]));
    }
    shardNos.sort((a, b) => a - b);
    let maxSeq = 0;
    const loaded: JobRecord[] = [];
    const known = new Set<string>();
    for (const no of shardNos) {
      for (const j of await this.readShard(no)) {
        if (known.has(j.id)) continue;
        known.add(j.id);
        loaded.push(j);
        maxSeq = Math.max(maxSeq, j.seq);
      }
    }
    for (const n of names) {
      const m = BATCH_RE.exec(n);
      if (!m) continue;
      const b = await this.readJson<BatchRecord | null>(path.join(this.dir, n), null);
      if (b && typeof b.id === 'string' && Array.isArray(b.lines)) {
        this.batchMap.set(b.id, b);
        for (const l of b.lines) if (l[2]) maxSeq = Math.max(maxSeq, seqOfId(l[2]));
      }
    }
    const restored = jobsMissingFromBatches(this.batchMap.values(), (id) => known.has(id), new Date(this.now()).toISOString());
    if (restored.length > 0) {
      this.damage.restoredJobs += restored.length;
      this.log.error('job store: jobs of inbox batches were missing; re-queued from the batches', { jobs: restored.length });
      for (const j of restored) this.dirty.add(Math.floor(j.seq / SHARD_SIZE));
    }
    for (const j of [...loaded, ...restored].sort((a, b) => a.seq - b.seq)) this.insert(j);
    const meta = await this.readJson<MetaData>(path.join(this.dir, 'meta.json'), { nextSeq: 1 });
    this.seq = Math.max(Number(meta.nextSeq) || 1, maxSeq + 1);
    this.metaSeqWritten = this.seq;
    // Damaged shards are rewritten with what was read (their copies are kept aside).
    if (this.dirty.size > 0) await this.flush();
  }

  /**
   * The jobs of one shard file. A damaged file loses only the jobs it cannot
   * give back: a copy is kept aside, the shard is rewritten at the end of
   * load, and the loss is logged and counted in `damage`.
   */
  private async readShard(no: number): Promise<JobRecord[]> {
    const file = this.shardFile(no);
    let bytes: Buffer;
    try {
      bytes = await fs.promises.readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const read = readJobShard(bytes.toString('utf8'));
    if (read.damaged) {
      const copy = `${file}.corrupt-${this.now()}`;
      await writeFileDurable(copy, bytes);
      this.damage.files.push(copy);
      this.damage.lostJobs += read.unreadable;
      this.dirty.add(no);
      this.log.error('job store shard damaged; its readable jobs were kept', { file, kept: read.jobs.length, lost: read.unreadable, copy });
    }
    return read.jobs;
  }

  /** Read one file through lowdb; a corrupt file is moved aside and counts as empty. */
  private async readJson<T>(file: string, dflt: T): Promise<T> {
    const db = new Low<T>(new DurableJSONFile<T>(file), dflt);
    try {
      await db.read();
      return db.data;
    } catch (e) {
      if (!isDurableFileParseError(e)) throw e;
      const aside = `${file}.corrupt-${this.now()}`;
      await rename(file, aside).catch(() => undefined);
      this.damage.files.push(aside);
      this.log.error('job store file corrupt; moved aside', { file, aside, error: e.message });
      return dflt;
    }
  }

  private shardFile(no: number): string {
    return path.join(this.dir, `jobs-${no}.json`);
  }

  private insert(j: JobRecord): void {
    this.jobs.set(j.id, j);
    const no = Math.floor(j.seq / SHARD_SIZE);
    let set = this.shards.get(no);
    if (!set) this.shards.set(no, (set = new Set()));
    set.add(j.id);
    this.countsByState[j.state]++;
  }

  /** A fresh sequence number (ids are derived from it: `j<seq>`). */
  nextSeq(): number {
    return this.seq++;
  }

  get size(): number {
    return this.jobs.size;
  }

  get(id: string): JobRecord | undefined {
    return this.jobs.get(id);
  }

  /** All jobs in sequence order. */
  values(): IterableIterator<JobRecord> {
    return this.jobs.values();
  }

  counts(): QueueCounts {
    return { ...this.countsByState };
  }

  /**
   * Insert or replace a job (pass the same object after mutating it, or a new
   * one) and `prevState` when the caller changed the state of a stored object.
   * Marks its shard dirty and schedules a coalesced write.
   */
  put(j: JobRecord, prevState?: JobState, o: { lazy?: boolean } = {}): void {
    const old = this.jobs.get(j.id);
    if (old) {
      this.countsByState[old === j ? (prevState ?? j.state) : old.state]--;
      this.countsByState[j.state]++;
      this.jobs.set(j.id, j);
    } else {
      this.insert(j);
    }
    this.dirty.add(Math.floor(j.seq / SHARD_SIZE));
    this.schedule(o.lazy ? this.lazyFlushDelayMs : this.flushDelayMs);
  }

  private schedule(delay: number): void {
    if (this.closed) return;
    const at = this.now() + delay;
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush().catch((e: unknown) => {
        this.log.error('job store write failed; will retry', { error: String(e) });
        this.schedule(1000);
      });
    }, delay);
    this.timer.unref();
  }

  /** Durable once resolved: every change made before the call is on disk. */
  flush(): Promise<void> {
    if (this.pendingFlush) return this.pendingFlush;
    if (!this.writing) return this.startWrite();
    // A write is running with an older snapshot: queue one more that everybody joins.
    const next = this.writing.catch(() => undefined).then(() => {
      this.pendingFlush = undefined;
      return this.startWrite();
    });
    this.pendingFlush = next;
    return next;
  }

  private startWrite(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const w = this.writeDirty().finally(() => {
      if (this.writing === w) this.writing = undefined;
    });
    this.writing = w;
    return w;
  }

  private async writeDirty(): Promise<void> {
    if (this.now() - this.lastPrune >= PRUNE_EVERY_MS) this.prune();
    const todo = [...this.dirty].sort((a, b) => a - b);
    this.dirty.clear();
    const failed: number[] = [];
    let firstError: unknown;
    let i = 0;
    const worker = async (): Promise<void> => {
      while (i < todo.length) {
        const no = todo[i++];
        try {
          await this.writeShard(no);
        } catch (e) {
          failed.push(no);
          firstError ??= e;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(WRITE_PARALLEL, todo.length) }, worker));
    if (this.seq !== this.metaSeqWritten && firstError === undefined) {
      const seq = this.seq;
      try {
        await new Low<MetaData>(new DurableJSONFile<MetaData>(path.join(this.dir, 'meta.json')), { nextSeq: seq }).write();
        this.metaSeqWritten = seq;
      } catch (e) {
        firstError = e;
      }
    }
    if (firstError !== undefined) {
      for (const no of failed) this.dirty.add(no);
      throw firstError;
    }
  }

  private async writeShard(no: number): Promise<void> {
    const ids = this.shards.get(no);
    const file = this.shardFile(no);
    if (!ids || ids.size === 0) {
      this.shards.delete(no);
      try {
        await unlink(file);
        await fsyncDir(this.dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      return;
    }
    const jobs: JobRecord[] = [];
    for (const id of ids) {
      const j = this.jobs.get(id);
      if (j) jobs.push(j);
    }
    // DurableJSONFile stringifies synchronously, so this is a snapshot of now.
    await new Low<ShardData>(new DurableJSONFile<ShardData>(file), { jobs }).write();
  }

  /**
   * Forget ended jobs beyond the history bound (newest `maxEnded`, younger
   * than `maxEndedAgeMs`), except those a pending inbox report still needs.
   * Returns how many were dropped.
   */
  prune(): number {
    this.lastPrune = this.now();
    const ended = this.countsByState.done + this.countsByState.failed;
    const cutoff = this.now() - this.maxEndedAgeMs;
    let excess = ended - this.maxEnded;
    let protectedIds: Set<string> | undefined;
    let dropped = 0;
    for (const j of this.jobs.values()) {
      if (!isEnded(j.state)) continue;
      const old = Date.parse(j.updatedAt) < cutoff;
      if (excess <= 0 && !old) continue;
      protectedIds ??= this.protectedJobIds();
      if (protectedIds.has(j.id)) continue;
      this.jobs.delete(j.id);
      this.countsByState[j.state]--;
      const no = Math.floor(j.seq / SHARD_SIZE);
      this.shards.get(no)?.delete(j.id);
      this.dirty.add(no);
      excess--;
      dropped++;
    }
    if (dropped > 0) this.log.debug('pruned ended jobs', { dropped });
    return dropped;
  }

  private protectedJobIds(): Set<string> {
    const s = new Set<string>();
    for (const b of this.batchMap.values()) for (const l of b.lines) if (l[2]) s.add(l[2]);
    return s;
  }

  // ---- inbox batches ----

  batches(): BatchRecord[] {
    return [...this.batchMap.values()];
  }

  batch(id: string): BatchRecord | undefined {
    return this.batchMap.get(id);
  }

  /** The unreported batch recorded for this key, if any. */
  batchByKey(key: string): BatchRecord | undefined {
    for (const b of this.batchMap.values()) if (b.key === key) return b;
    return undefined;
  }

  /** Durable once resolved. */
  async saveBatch(b: BatchRecord): Promise<void> {
    this.batchMap.set(b.id, b);
    await new Low<BatchRecord>(new DurableJSONFile<BatchRecord>(this.batchFile(b.id)), b).write();
  }

  /** Once its report is written, a batch is forgotten (durably). */
  async deleteBatch(id: string): Promise<void> {
    this.batchMap.delete(id);
    try {
      await unlink(this.batchFile(id));
      await fsyncDir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  private batchFile(id: string): string {
    return path.join(this.dir, `batch-${id}.json`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

export function jobIdOf(seq: number): string {
  return `j${seq}`;
}

function seqOfId(id: string): number {
  const n = Number(id.slice(1));
  return Number.isFinite(n) ? n : 0;
}
