/**
 * Group commit of content files: many downloads' files are made durable and
 * moved to their final names in batches, by one worker thread, instead of
 * each download paying its own fdatasync and a threadpool round trip per
 * system call on the main thread.
 *
 * A batch is one message to the worker. For each file it either creates the
 * tmp file from a body held in memory (small downloads: open, write — the
 * "one hop" from socket to final name) or opens the complete tmp file a
 * large download streamed to disk; then it fdatasyncs every file of the
 * batch at once (in parallel on libuv's pool, so they share the
 * filesystem's journal commits), closes them, and only then renames each
 * synced file to its final name. One reply settles the whole batch. While
 * a batch is in the worker the next one gathers; at most one is in flight.
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
  /** The file in `.tmp/`: created here from `data`, else already complete on disk (not yet synced). */
  tmpPath: string;
  finalPath: string;
  /** A small body held in memory. Its ArrayBuffer is transferred to the worker: do not use `data` afterwards. */
  data?: Uint8Array;
}

/** Most files per batch (bounds one message and the fds the worker holds open at once). */
export const MAX_BATCH = 256;

interface Job {
  id: number;
  tmp: string;
  final: string;
  data?: Uint8Array;
}

type Reply = { id: number; ok: true } | { id: number; ok: false; stage: 'write' | 'sync' | 'rename'; code?: string; message: string };

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
      port.postMessage(replies);
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
  private inFlight: Map<number, Entry> | undefined;
  private nextId = 1;
  private closed = false;

  /**
   * Resolves once `item` is durable under its final name (rejects with a
   * MediaCacheError; the tmp file is then removed when created here, left to
   * the caller otherwise).
   */
  publish(item: PublishItem): Promise<void> {
    if (this.closed) return Promise.reject(new MediaCacheError('E_UNAVAILABLE', 'the media cache is closed'));
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.send();
    });
  }

  /** Files queued or in the worker. */
  get pending(): number {
    return this.queue.length + (this.inFlight?.size ?? 0);
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
    if (this.inFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, MAX_BATCH);
    const jobs: Job[] = [];
    const transfer: ArrayBuffer[] = [];
    this.inFlight = new Map();
    for (const e of batch) {
      const id = this.nextId++;
      this.inFlight.set(id, e);
      let data = e.item.data;
      if (data) {
        // Transfer only a buffer the body owns whole (a slice of a shared pool would be detached for everyone).
        if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength || !(data.buffer instanceof ArrayBuffer)) data = new Uint8Array(data);
        transfer.push(data.buffer as ArrayBuffer);
      }
      jobs.push({ id, tmp: e.item.tmpPath, final: e.item.finalPath, ...(data ? { data } : {}) });
    }
    const w = this.ensureWorker();
    w.ref();
    w.postMessage(jobs, transfer);
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    // No loaders or flags of the parent (test runners): the body is plain JS.
    const w = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], name: 'mediacache-commit' });
    w.on('message', (replies: Reply[]) => this.settle(replies));
    w.on('error', (e) => this.lost(w, e));
    w.on('exit', (code) => this.lost(w, new Error(`commit worker exited with code ${code}`)));
    this.worker = w;
    return w;
  }

  private settle(replies: Reply[]): void {
    const batch = this.inFlight;
    this.inFlight = undefined;
    if (!batch) return;
    this.stats.batches++;
    this.stats.files += replies.length;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, replies.length);
    for (const r of replies) {
      const e = batch.get(r.id);
      if (!e) continue;
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
    if (this.queue.length > 0) this.send();
    else this.worker?.unref();
  }

  /** The worker died: fail its batch (the files' state is unknown), start a new one for what is queued. */
  private lost(w: Worker, e: unknown): void {
    if (this.worker !== w) return;
    this.worker = undefined;
    const batch = this.inFlight;
    this.inFlight = undefined;
    const err = new MediaCacheError('E_INTERNAL', `commit worker failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
    for (const entry of batch?.values() ?? []) entry.reject(err);
    if (!this.closed) this.send();
  }

  private failAll(err: MediaCacheError): void {
    const batch = this.inFlight;
    this.inFlight = undefined;
    for (const e of [...(batch?.values() ?? []), ...this.queue.splice(0)]) e.reject(err);
  }
}
