/**
 * JobStore: the durable half of the scheduler, in `<indexDir>/jobs/`.
 *
 * Layout (every file written through lowdb + DurableJSONFile: tmp, fsync,
 * rename, fsync dir):
 *   jobs-<n>.json    jobs whose sequence number is in [n*SHARD_SIZE, (n+1)*SHARD_SIZE)
 *   batch-<id>.json  one inbox batch (file → per-line job or error), until reported
 *   meta.json        the next sequence number, and whether the last run closed the store
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
import { DurableJSONFile, TEMP_PREFIX, fsyncDir, isDurableFileParseError, writeFileDurable } from '../../core/util/durable-file.js';
import type { ErrorCode } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/util/logger.js';
import type { JobInfo, JobState, QueueCounts } from '../../core/protocol/rpc.js';
import { writeChunksDurable } from '../../core/util/durable-chunks.js';
import { jobsMissingFromBatches, readJobShard } from './salvage.js';

export const SHARD_SIZE = 250;

/** What is persisted per job: the public JobInfo plus ordering, the force flag and disk-full pauses. */
export interface JobRecord extends JobInfo {
  seq: number;
  force?: boolean;
  /** Tries that ended in a disk-full pause: they do not use up the retry budget. */
  pauses?: number;
}

/** One reported line of an inbox file: [line, raw text, jobId or null, error code or null]. */
export type BatchLine = [line: number, raw: string, jobId: string | null, error: ErrorCode | null];

/** The file a batch was taken from, as fstat saw it when it was opened. */
export interface BatchIdent {
  size: number;
  mtimeMs: number;
  dev: number;
  ino: number;
}

export interface BatchRecord {
  /** Derived from (inbox, name, size, mtime, inode): a retried or resumed intake finds its own batch. */
  id: string;
  /** Older records: sha256 of the file name and content (still honoured when resuming). */
  key?: string;
  /** The file taken (absent on older records). */
  ident?: BatchIdent;
  inbox: string;
  /** Where the file was found. */
  sourcePath: string;
  /** Where it goes (chosen before the move, so a crash mid-move is resolvable). */
  processedPath: string;
  /** enqueued: jobs durable, file maybe not moved yet; moved: file is in processed/. */
  state: 'enqueued' | 'moved';
  createdAt: string;
  /** Per kept line; an invalid line's text is an escaped prefix (urls-file.ts echoPrefix), never the whole line. */
  lines: BatchLine[];
  /** The file was not read (not a regular file, over a cap): reported as one `refused` row. */
  refused?: { code: ErrorCode; reason: string };
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
  /**
   * Awaited right before a shard's jobs are serialized: whatever a job's
   * end set off (the hooks' outbox) is on disk before the end itself is.
   * Must not reject.
   */
  beforeWrite?: () => Promise<void>;
}

interface ShardData {
  jobs: JobRecord[];
}
interface MetaData {
  nextSeq: number;
  /** True only in the file close() writes: false (or absent) at open means the last run died. */
  clean?: boolean;
}

/** Options of prune(): either bound, or both; none means the store's configured bounds. */
export interface PruneOptions {
  olderThanMs?: number;
  keep?: number;
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
  private pruneTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly beforeWrite: (() => Promise<void>) | undefined;
  private uncleanStart = false;

  private constructor(dir: string, o: JobStoreOptions) {
    this.dir = dir;
    this.log = o.logger ?? silentLogger;
    this.now = o.now ?? Date.now;
    this.flushDelayMs = o.flushDelayMs ?? 150;
    this.lazyFlushDelayMs = Math.max(this.flushDelayMs, o.lazyFlushDelayMs ?? 1000);
    this.maxEnded = o.maxEnded ?? 10_000;
    this.maxEndedAgeMs = o.maxEndedAgeMs ?? 7 * 24 * 3600_000;
    this.beforeWrite = o.beforeWrite;
  }

  static async open(dir: string, opts: JobStoreOptions = {}): Promise<JobStore> {
    const s = new JobStore(path.resolve(dir), opts);
    await s.load();
    // History bounds apply without any other write: prune on a timer.
    s.prune();
    s.pruneTimer = setInterval(() => s.prune(), PRUNE_EVERY_MS);
    s.pruneTimer.unref();
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
    const meta = await this.readJson<MetaData | null>(this.metaFile(), null);
    this.seq = Math.max(Number(meta?.nextSeq) || 1, maxSeq + 1);
    // A store with jobs but no clean mark was not closed by its last run.
    this.uncleanStart = meta?.clean !== true && this.jobs.size > 0;
    // Damaged shards are rewritten with what was read (their copies are kept aside).
    if (this.dirty.size > 0) await this.flush();
    // From now until close() the mark on disk says "not closed".
    await this.writeMeta(this.seq, false);
  }

  /** True when the previous run did not close the store (a crash, SIGKILL, power loss). */
  get recoveredFromCrash(): boolean {
    return this.uncleanStart;
  }

  private metaFile(): string {
    return path.join(this.dir, 'meta.json');
  }

  private async writeMeta(nextSeq: number, clean: boolean): Promise<void> {
    const data: MetaData = clean ? { nextSeq, clean } : { nextSeq };
    await new Low<MetaData>(new DurableJSONFile<MetaData>(this.metaFile()), data).write();
    this.metaSeqWritten = nextSeq;
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
    if (j.notBefore !== undefined) {
      // Stores written before nextRetryAt existed.
      j.nextRetryAt ??= j.notBefore;
      delete j.notBefore;
    }
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
      try {
        await this.writeMeta(this.seq, false);
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
    // Nothing may run between this wait and the synchronous snapshot below.
    if (this.beforeWrite) await this.beforeWrite();
    const jobs: JobRecord[] = [];
    for (const id of ids) {
      const j = this.jobs.get(id);
      if (j) jobs.push(j);
    }
    // DurableJSONFile stringifies synchronously, so this is a snapshot of now.
    await new Low<ShardData>(new DurableJSONFile<ShardData>(file), { jobs }).write();
  }

  /**
   * Forget ended jobs beyond the history bounds: all but the newest `keep`
   * (by end time) and those that ended more than `olderThanMs` ago; without
   * options the configured bounds (`maxEnded`, `maxEndedAgeMs`). Jobs a pending
   * inbox report still needs are kept. Returns how many were dropped; the
   * change is written by the next flush.
   */
  prune(o: PruneOptions = {}): number {
    const explicit = o.olderThanMs !== undefined || o.keep !== undefined;
    const keep = explicit ? (o.keep ?? Infinity) : this.maxEnded;
    const maxAge = explicit ? (o.olderThanMs ?? Infinity) : this.maxEndedAgeMs;
    const ended = this.countsByState.done + this.countsByState.failed;
    const cutoff = this.now() - maxAge;
    if (ended <= keep && !this.anyEndedBefore(cutoff)) return 0;
    const list: JobRecord[] = [];
    for (const j of this.jobs.values()) if (isEnded(j.state)) list.push(j);
    // Oldest end first: those go first when there are too many.
    list.sort((a, b) => a.updatedAt.localeCompare(b.updatedAt) || a.seq - b.seq);
    let excess = ended - keep;
    const protectedIds = this.protectedJobIds();
    let dropped = 0;
    for (const j of list) {
      const old = Date.parse(j.updatedAt) < cutoff;
      if (excess <= 0 && !old) continue;
      if (protectedIds.has(j.id)) continue;
      this.jobs.delete(j.id);
      this.countsByState[j.state]--;
      const no = Math.floor(j.seq / SHARD_SIZE);
      this.shards.get(no)?.delete(j.id);
      this.dirty.add(no);
      excess--;
      dropped++;
    }
    if (dropped > 0) {
      this.log.debug('pruned ended jobs', { dropped });
      this.schedule(this.flushDelayMs);
    }
    return dropped;
  }

  private anyEndedBefore(cutoff: number): boolean {
    if (!Number.isFinite(cutoff)) return false;
    for (const j of this.jobs.values()) if (isEnded(j.state) && Date.parse(j.updatedAt) < cutoff) return true;
    return false;
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

  /** The next sequence number, without taking it (jobs created from now on have seq >= this). */
  peekSeq(): number {
    return this.seq;
  }

  /**
   * Durable once resolved. Mode 0600 whatever the umask (it holds what
   * inbox writers dropped). Streamed, a group of lines per write, so a
   * batch of a million lines neither blocks the event loop nor exists as
   * one string.
   */
  async saveBatch(b: BatchRecord): Promise<void> {
    this.batchMap.set(b.id, b);
    await writeChunksDurable(this.batchFile(b.id), batchJsonPieces(b), 0o600);
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
    clearInterval(this.pruneTimer);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.writeMeta(this.seq, true);
  }
}

export function jobIdOf(seq: number): string {
  return `j${seq}`;
}

const LINES_PER_PIECE = 2000;

/** JSON.stringify(b), in pieces; head fields are serialized first, so the record is that instant's state. */
function* batchJsonPieces(b: BatchRecord): Generator<string> {
  const { lines, ...head } = b;
  const headText = JSON.stringify(head);
  const lineArr = lines;
  yield `${headText.slice(0, -1)}${headText.length > 2 ? ',' : ''}"lines":[`;
  for (let i = 0; i < lineArr.length; i += LINES_PER_PIECE) {
    const part = JSON.stringify(lineArr.slice(i, i + LINES_PER_PIECE));
    yield (i > 0 ? ',' : '') + part.slice(1, -1);
  }
  yield ']}';
}

function seqOfId(id: string): number {
  const n = Number(id.slice(1));
  return Number.isFinite(n) ? n : 0;
}
