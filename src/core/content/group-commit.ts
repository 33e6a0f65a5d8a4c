/**
 * Group commit of content files: many downloads' files are made durable and
 * moved to their final names in batches, by one worker thread, instead of
 * each download paying its own fdatasync and a threadpool round trip per
 * system call on the main thread.
 *
 * A batch is one message to the worker. For each file it creates the tmp
 * file from a body held in memory (small downloads: open, write — the "one
 * hop" from socket to final name); then it fdatasyncs every file of the
 * batch at once (in parallel on libuv's pool, so they share the
 * filesystem's journal commits), closes them, and only then renames each
 * synced file to its final name. One reply settles the whole batch. At most
 * MAX_BATCHES_IN_FLIGHT batches are in the worker (their syncs overlap);
 * files arriving meanwhile gather into the next batch.
 *
 * Invariant (the store's, unchanged): a file appears under its final name
 * only after its data was fdatasynced, so neither a crash (kill -9) nor a
 * power cut can leave a final name with other content than its md5 says.
 * The caller indexes the record after publish() resolves and commits the
 * index journal after that (MediaCache awaits IndexDb.flush()), so the
 * journal never names a file whose data is not durable. A crash before the
 * rename leaves a synced file in `.tmp/` (removed at the next open as a dead
 * process's leftover); one between the rename and the journal commit leaves
 * a complete, unindexed file, which a sweep adopts after hashing it.
 */
import { Worker } from 'node:worker_threads';
import { MediaCacheError, toMediaCacheError } from '../errors.js';
import { commitTmp, markSynced } from './store.js';

export interface PublishItem {
  /**
   * The file in `.tmp/`: created from `data`, else already complete on disk
   * (not yet synced; then synced and renamed by the store, not the worker).
   */
  tmpPath: string;
  finalPath: string;
  /** A small body held in memory. Its ArrayBuffer is transferred to the worker: do not use `data` afterwards. */
  data?: Uint8Array;
}

/** Most files per batch (bounds one message and the fds the worker holds open at once). */
export const MAX_BATCH = 256;
/**
 * Batches in the worker at once. With one, a file arriving while a batch
 * syncs waits for that sync and then its own; with two, its sync starts at
 * once unless two are already running.
 */
export const MAX_BATCHES_IN_FLIGHT = 2;
/**
 * Bodies up to this size are copied into reusable slabs of this size, which
 * the worker hands back after writing: no buffer is allocated (and left for
 * the worker's garbage collector) per file.
 */
export const SLAB = 256 * 1024;
/** Free slabs kept for reuse. */
const FREE_SLABS_MAX = 32;

interface Job {
  id: number;
  tmp: string;
  final: string;
  data?: Uint8Array;
  /** SLAB when `data` lives in a pooled slab (handed back in the reply). */
  slab?: number;
}

type Reply = { id: number; ok: true } | { id: number; ok: false; stage: 'write' | 'sync' | 'rename'; code?: string; message: string };
/** The worker's answer to a batch: one reply per job, and the slabs it is done with. */
interface BatchReply {
  replies: Reply[];
  slabs: ArrayBuffer[];
}

interface Entry {
  item: PublishItem;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Runs inside the worker. Must not reference anything outside its body. */
function workerMain(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const wt = require('node:worker_threads') as typeof import('node:worker_threads');
  const fs = require('node:fs') as typeof import('node:fs');
  const port = wt.parentPort!;
  port.on('message', (jobs: Job[]) => {
    const replies: Reply[] = new Array(jobs.length);
    const fds: (number | undefined)[] = new Array(jobs.length);
    const fail = (i: number, stage: 'write' | 'sync' | 'rename', e: unknown): void => {
      const err = e as NodeJS.ErrnoException;
      replies[i] = { id: jobs[i].id, ok: false, stage, code: err?.code, message: String(err?.message ?? err) };
    };
    const closeFd = (i: number): void => {
      const fd = fds[i];
      fds[i] = undefined;
      if (fd !== undefined) {
        try {
          fs.closeSync(fd);
        } catch {
          // nothing to do: the file is abandoned or already durable
        }
      }
    };
    for (let i = 0; i < jobs.length; i++) {
      const j = jobs[i];
      try {
        if (j.data) {
          fds[i] = fs.openSync(j.tmp, 'wx');
          for (let off = 0; off < j.data.length; ) off += fs.writeSync(fds[i]!, j.data, off, j.data.length - off, off);
        } else {
          fds[i] = fs.openSync(j.tmp, 'r+');
        }
      } catch (e) {
        fail(i, 'write', e);
        closeFd(i);
        if (j.data) fs.rmSync(j.tmp, { force: true });
      }
    }
    let left = 1;
    const synced = (): void => {
      if (--left > 0) return;
      for (let i = 0; i < jobs.length; i++) {
        closeFd(i);
        if (replies[i]) continue;
        try {
          fs.renameSync(jobs[i].tmp, jobs[i].final);
          replies[i] = { id: jobs[i].id, ok: true };
        } catch (e) {
          fail(i, 'rename', e); // synced: the caller retries the rename its careful way
        }
      }
      const slabs: ArrayBuffer[] = [];
      for (const j of jobs) if (j.data && j.data.buffer.byteLength === j.slab) slabs.push(j.data.buffer as ArrayBuffer);
      port.postMessage({ replies, slabs }, slabs);
    };
    for (let i = 0; i < jobs.length; i++) {
      const fd = fds[i];
      if (fd === undefined) continue;
      left++;
      fs.fdatasync(fd, (err) => {
        if (err) {
          fail(i, 'sync', err);
          closeFd(i);
          if (jobs[i].data) fs.rmSync(jobs[i].tmp, { force: true });
        }
        synced();
      });
    }
    synced();
  });
}

const WORKER_SOURCE = `(${workerMain.toString()})()`;

export class GroupCommitter {
  /** Batches and files committed (tests, diagnostics). */
  readonly stats = { batches: 0, files: 0, largestBatch: 0 };
  private worker: Worker | undefined;
  private queue: Entry[] = [];
  private readonly inFlight = new Map<number, Entry>();
  private readonly free: ArrayBuffer[] = [];
  private batchesInFlight = 0;
  private nextId = 1;
  private closed = false;

  /**
   * Resolves once `item` is durable under its final name (rejects with a
   * MediaCacheError; the tmp file is then removed when created here, left to
   * the caller otherwise).
   */
  publish(item: PublishItem): Promise<void> {
    if (this.closed) return Promise.reject(new MediaCacheError('E_UNAVAILABLE', 'the media cache is closed'));
    // A body already on disk is a large one (few, each costing far more than
    // its round trips): synced and renamed by the store on libuv's pool, so
    // a run of large downloads never starts the worker (an isolate costs ~9 MiB).
    if (!item.data) return commitTmp(item.tmpPath, item.finalPath);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.send();
    });
  }

  /**
   * A buffer of `size` bytes for a body to publish: a view of a reusable
   * slab when it fits (the worker returns slabs after writing them).
   */
  buffer(size: number): Buffer {
    if (size > SLAB) return Buffer.allocUnsafeSlow(size);
    return Buffer.from(this.free.pop() ?? new ArrayBuffer(SLAB), 0, size);
  }

  /** Files queued or in the worker. */
  get pending(): number {
    return this.queue.length + this.inFlight.size;
  }

  /** Stop the worker; whatever is still pending fails. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = undefined;
    this.failAll(new MediaCacheError('E_UNAVAILABLE', 'the media cache is closed'));
    await w?.terminate();
  }

  private send(): void {
    while (this.batchesInFlight < MAX_BATCHES_IN_FLIGHT && this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH);
      const jobs: Job[] = [];
      const transfer: ArrayBuffer[] = [];
      for (const e of batch) {
        const id = this.nextId++;
        this.inFlight.set(id, e);
        let data = e.item.data;
        const job: Job = { id, tmp: e.item.tmpPath, final: e.item.finalPath };
        if (data) {
          // Transfer only a buffer the body owns whole, or one of our slabs
          // (a slice of a shared pool would be detached for everyone).
          const slab = data.byteOffset === 0 && data.buffer.byteLength === SLAB;
          if (!slab && (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength || !(data.buffer instanceof ArrayBuffer))) data = new Uint8Array(data);
          transfer.push(data.buffer as ArrayBuffer);
          job.data = data;
          if (slab) job.slab = SLAB;
        }
        jobs.push(job);
      }
      const w = this.ensureWorker();
      if (this.batchesInFlight++ === 0) w.ref();
      w.postMessage(jobs, transfer);
    }
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    // No loaders or flags of the parent (test runners): the body is plain JS.
    const w = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], name: 'mediacache-commit' });
    w.on('message', (m: BatchReply) => {
      for (const b of m.slabs) if (this.free.length < FREE_SLABS_MAX) this.free.push(b);
      this.settle(m.replies);
    });
    w.on('error', (e) => this.lost(w, e));
    w.on('exit', (code) => this.lost(w, new Error(`commit worker exited with code ${code}`)));
    this.worker = w;
    return w;
  }

  private settle(replies: Reply[]): void {
    this.batchesInFlight--;
    this.stats.batches++;
    this.stats.files += replies.length;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, replies.length);
    for (const r of replies) {
      const e = this.inFlight.get(r.id);
      if (!e) continue;
      this.inFlight.delete(r.id);
      if (r.ok) {
        e.resolve();
      } else if (r.stage === 'rename') {
        // Synced already: the store's rename handles a missing type folder,
        // a same-content target and Windows' transient refusals.
        markSynced(e.item.tmpPath);
        commitTmp(e.item.tmpPath, e.item.finalPath).then(e.resolve, e.reject);
      } else {
        const err = Object.assign(new Error(`${r.stage} ${e.item.tmpPath}: ${r.message}`), r.code ? { code: r.code } : {});
        e.reject(toMediaCacheError(err));
      }
    }
    this.send();
    if (this.batchesInFlight === 0) this.worker?.unref();
  }

  /** The worker died: fail what it held (the files' state is unknown), start a new one for what is queued. */
  private lost(w: Worker, e: unknown): void {
    if (this.worker !== w) return;
    this.worker = undefined;
    this.failInFlight(new MediaCacheError('E_INTERNAL', `commit worker failed: ${(e as Error)?.message ?? String(e)}`, { cause: e }));
    if (!this.closed) this.send();
  }

  private failInFlight(err: MediaCacheError): void {
    const held = [...this.inFlight.values()];
    this.inFlight.clear();
    this.batchesInFlight = 0;
    for (const e of held) e.reject(err);
  }

  private failAll(err: MediaCacheError): void {
    this.failInFlight(err);
    for (const e of this.queue.splice(0)) e.reject(err);
  }
}
