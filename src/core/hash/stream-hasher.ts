/**
 * MD5 and SHA-256 of a download stream, computed on a small pool of worker
 * threads for large bodies.
 *
 * Why: on big files hashing is the largest CPU cost of a download (MD5 has
 * no hardware acceleration: ~600 MiB/s; SHA-256 with SHA-NI ~1400 MiB/s).
 * One shared MD5 thread serialized every parallel download's MD5 on one
 * core while SHA-256 competed with the socket and file I/O on the main
 * thread. Now each large stream is pinned to one worker that computes both
 * digests from the same batches, and the workers spread over the cores; the
 * main thread only reads the socket, writes the file and copies batches.
 *
 * How: bytes are copied into BATCH-sized batches whose ArrayBuffers are
 * *transferred* (not cloned) to the stream's worker and transferred back for
 * reuse. Small bodies never fill a batch and are hashed inline at the end,
 * so thousands of small downloads pay no thread round trip.
 *
 * Invariants:
 * - at most MAX_IN_FLIGHT batches per stream are on their way to or inside
 *   a worker; `needsDrain()` tells the writer to wait (`drained()`) before
 *   accepting more, so memory stays bounded whatever the network speed;
 * - a stream stays on the worker it was given (its hash state lives there);
 *   it is given the least-loaded worker, and a new worker is started only
 *   when every running one already has a stream (up to `threads`);
 * - a worker is referenced only while one of its streams is open: an idle
 *   pool never holds the process alive, a pending digest never lets it exit;
 * - a worker that dies fails its open streams (error, not a hang); later
 *   streams get a fresh worker.
 */
import { Worker } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import os from 'node:os';
import { MediaCacheError } from '../errors.js';

/**
 * Bodies smaller than this are hashed inline at the end (no thread round
 * trip): thousands of small downloads never touch a worker.
 */
export const INLINE_MAX = 1024 * 1024;
/** ...or while it has come in fewer than this many chunks (a trickle of tiny reads goes to a worker, copied into batches). */
export const INLINE_MAX_CHUNKS = 4096;
/**
 * Bytes per batch sent to a worker: large enough that the message round
 * trip per batch is a small share of the hashing, small enough to keep
 * little memory in flight; larger batches were no faster on the large-file
 * bench (bench/README.md has the figures).
 */
export const BATCH = 512 * 1024;
/**
 * Batches per stream queued on or inside its worker before the writer must
 * wait. A worker hashes a batch (MD5 + SHA-256) faster than one stream
 * fills one, so 2 keep it busy; 3, 4 and 8 were no faster and hold more.
 */
export const MAX_IN_FLIGHT = 2;
/** Free batch buffers kept for reuse while streams are open (dropped when the pool goes idle). */
const FREE_MAX = 16;

export interface StreamDigests {
  md5: string;
  sha256: string;
}

/** Runs inside the worker. Must not reference anything outside its body. */
function workerMain(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const wt = require('node:worker_threads') as typeof import('node:worker_threads');
  const crypto = require('node:crypto') as typeof import('node:crypto');
  const port = wt.parentPort!;
  const open = new Map<number, { md5: import('node:crypto').Hash; sha: import('node:crypto').Hash }>();
  const state = (id: number): { md5: import('node:crypto').Hash; sha: import('node:crypto').Hash } => {
    let s = open.get(id);
    if (!s) {
      s = { md5: crypto.createHash('md5'), sha: crypto.createHash('sha256') };
      open.set(id, s);
    }
    return s;
  };
  port.on('message', (m: { op: 'data'; id: number; buf: ArrayBuffer; len: number } | { op: 'end' | 'drop'; id: number }) => {
    if (m.op === 'data') {
      const s = state(m.id);
      const view = new Uint8Array(m.buf, 0, m.len);
      s.md5.update(view);
      s.sha.update(view);
      port.postMessage({ op: 'free', id: m.id, buf: m.buf }, [m.buf]);
    } else if (m.op === 'end') {
      const s = state(m.id);
      open.delete(m.id);
      port.postMessage({ op: 'digest', id: m.id, md5: s.md5.digest('hex'), sha256: s.sha.digest('hex') });
    } else {
      open.delete(m.id);
    }
  });
}

const WORKER_SOURCE = `(${workerMain.toString()})()`;

type WorkerMessage = { op: 'free'; id: number; buf: ArrayBuffer } | { op: 'digest'; id: number; md5: string; sha256: string };

export interface StreamHooks {
  onFree: () => void;
  onDigest: (d: StreamDigests) => void;
  onError: (e: Error) => void;
}

/** One worker thread and the streams pinned to it. */
export interface Slot {
  readonly worker: Worker;
  readonly threadId: number;
  readonly streams: Map<number, StreamHooks>;
  dead: boolean;
}

export interface HashPoolOptions {
  /** Most worker threads (default defaultHashThreads()). */
  threads?: number;
}

/**
 * One hash thread per core beyond the first, at most 2: the main thread
 * keeps a core for the sockets and file writes. On 2 cores that is one
 * thread: a second was no faster on the large-file bench, and each worker
 * isolate costs memory (bench/README.md).
 */
export function defaultHashThreads(cores: number = os.availableParallelism()): number {
  return Math.max(1, Math.min(2, cores - 1));
}

/** The worker threads and the shared free list of batch buffers. */
export class StreamHashPool {
  readonly threads: number;
  private readonly slots: Slot[] = [];
  private readonly free: ArrayBuffer[] = [];
  private nextId = 1;
  /** Batch buffers ever allocated (tests check the backlog stays bounded). */
  allocated = 0;

  constructor(opts: HashPoolOptions = {}) {
    const threads = opts.threads ?? defaultHashThreads();
    if (!Number.isInteger(threads) || threads < 1 || threads > 64) {
      throw new MediaCacheError('E_BAD_REQUEST', `threads must be an integer from 1 to 64, got ${String(threads)}`);
    }
    this.threads = threads;
  }

  /** Per running worker: its thread id and open stream count. */
  load(): Array<{ threadId: number; streams: number }> {
    return this.slots.map((s) => ({ threadId: s.threadId, streams: s.streams.size }));
  }

  /** Open a stream on the least-loaded worker (starting one if all have streams and there is room). */
  open(hooks: StreamHooks): { slot: Slot; id: number } {
    let slot = this.slots.find((s) => s.streams.size === 0);
    if (!slot && this.slots.length < this.threads) slot = this.spawn();
    slot ??= this.slots.reduce((a, b) => (b.streams.size < a.streams.size ? b : a));
    const id = this.nextId++;
    slot.streams.set(id, hooks);
    if (slot.streams.size === 1) slot.worker.ref();
    return { slot, id };
  }

  post(slot: Slot, id: number, buf: ArrayBuffer, len: number): void {
    slot.worker.postMessage({ op: 'data', id, buf, len }, [buf]);
  }

  end(slot: Slot, id: number): void {
    slot.worker.postMessage({ op: 'end', id });
  }

  close(slot: Slot, id: number, drop: boolean): void {
    if (!slot.streams.delete(id)) return;
    if (slot.dead) return;
    if (drop) slot.worker.postMessage({ op: 'drop', id });
    if (slot.streams.size === 0) slot.worker.unref();
    // An idle pool keeps no batch memory: large downloads come in bursts.
    if (this.slots.every((s) => s.streams.size === 0)) this.free.length = 0;
  }

  takeBuffer(): ArrayBuffer {
    const b = this.free.pop();
    if (b) return b;
    this.allocated++;
    return new ArrayBuffer(BATCH);
  }

  /** End every worker (their open streams fail). For tests and shutdown. */
  async terminate(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  /** Test hook: end one worker as if it had crashed. */
  async kill(threadId: number): Promise<void> {
    await this.slots.find((s) => s.threadId === threadId)?.worker.terminate();
  }

  private spawn(): Slot {
    // No loaders or flags of the parent (test runners): the body is plain JS.
    const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], name: 'mediacache-hash' });
    worker.unref();
    const slot: Slot = { worker, threadId: worker.threadId, streams: new Map(), dead: false };
    worker.on('message', (m: WorkerMessage) => {
      const s = slot.streams.get(m.id);
      if (m.op === 'free') {
        if (this.free.length < FREE_MAX && this.slots.some((x) => x.streams.size > 0)) this.free.push(m.buf);
        s?.onFree();
      } else {
        s?.onDigest({ md5: m.md5, sha256: m.sha256 });
      }
    });
    const fail = (e: Error): void => {
      if (slot.dead) return;
      slot.dead = true;
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      const streams = [...slot.streams.values()];
      slot.streams.clear();
      const err = new MediaCacheError('E_UNAVAILABLE', `hash worker failed: ${e.message}`, { cause: e, retryable: true });
      for (const s of streams) s.onError(err);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    this.slots.push(slot);
    return slot;
  }
}

let shared: StreamHashPool | undefined;

/** The process-wide pool used by downloads (created on first large body). */
export function sharedHashPool(): StreamHashPool {
  return (shared ??= new StreamHashPool());
}

/** Incremental MD5 + SHA-256 of one stream, with an async digest. */
export class StreamHasher {
  /** Chunks seen while the body is still under INLINE_MAX (referenced, not copied). */
  private pending: Uint8Array[] | undefined = [];
  private pendingLen = 0;
  private batch: Uint8Array | undefined;
  private batchLen = 0;
  private pool: StreamHashPool | undefined;
  private slot: Slot | undefined;
  private id = 0;
  /** Batches posted and not yet given back. */
  inFlight = 0;
  private waiter: ((err?: Error) => void) | undefined;
  private digestWaiter: { resolve: (d: StreamDigests) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private done = false;

  /** `pool` defaults to the process-wide one, taken only once the body fills a batch. */
  constructor(private readonly poolArg?: StreamHashPool) {}

  /** The worker this stream is pinned to (undefined while inline). */
  get threadId(): number | undefined {
    return this.slot?.threadId;
  }

  update(chunk: Uint8Array): void {
    if (this.done) throw new Error('StreamHasher used after digest/dispose');
    if (this.pending) {
      this.pending.push(chunk);
      this.pendingLen += chunk.length;
      if (this.pendingLen < INLINE_MAX && this.pending.length < INLINE_MAX_CHUNKS) return;
      const chunks = this.pending;
      this.pending = undefined;
      for (const c of chunks) this.copyIn(c);
      return;
    }
    this.copyIn(chunk);
  }

  /** True when the caller should wait for `drained()` before the next update. */
  needsDrain(): boolean {
    return this.inFlight >= MAX_IN_FLIGHT && !this.failure;
  }

  /** Calls back once the writer may go on, with the worker's failure if it died. */
  drained(cb: (err?: Error) => void): void {
    if (this.failure) return cb(this.failure);
    if (!this.needsDrain()) return cb();
    this.waiter = cb;
  }

  async digest(): Promise<StreamDigests> {
    if (this.failure) throw this.failure;
    if (this.done) throw new Error('StreamHasher used after digest/dispose');
    this.done = true;
    if (this.pending) {
      // Under INLINE_MAX: hash inline, no thread round trip.
      const md5 = createHash('md5');
      const sha = createHash('sha256');
      for (const c of this.pending) {
        md5.update(c);
        sha.update(c);
      }
      this.release();
      return { md5: md5.digest('hex'), sha256: sha.digest('hex') };
    }
    if (this.batchLen > 0) this.flush();
    const pool = this.pool!;
    const slot = this.slot!;
    const p = new Promise<StreamDigests>((resolve, reject) => (this.digestWaiter = { resolve, reject }));
    if (this.failure) throw this.failure;
    pool.end(slot, this.id);
    try {
      return await p;
    } finally {
      pool.close(slot, this.id, false);
    }
  }

  /** Abandon the stream (error paths): the worker forgets it and is released. */
  dispose(): void {
    if (this.slot) this.pool!.close(this.slot, this.id, true);
    this.slot = undefined;
    this.release();
    this.done = true;
  }

  private copyIn(chunk: Uint8Array): void {
    let off = 0;
    while (off < chunk.length) {
      if (!this.batch) this.batch = new Uint8Array((this.pool ??= this.poolArg ?? sharedHashPool()).takeBuffer());
      const n = Math.min(chunk.length - off, BATCH - this.batchLen);
      this.batch.set(n === chunk.length ? chunk : chunk.subarray(off, off + n), this.batchLen);
      this.batchLen += n;
      off += n;
      if (this.batchLen === BATCH) this.flush();
    }
  }

  private flush(): void {
    const pool = this.pool!;
    if (this.failure) {
      // The worker is gone; drop the bytes (the digest will reject).
      this.batchLen = 0;
      return;
    }
    if (!this.slot) {
      const { slot, id } = pool.open({
        onFree: () => {
          this.inFlight--;
          const cb = this.waiter;
          if (cb && !this.needsDrain()) {
            this.waiter = undefined;
            cb();
          }
        },
        onDigest: (d) => this.digestWaiter?.resolve(d),
        onError: (e) => {
          this.failure = e;
          this.digestWaiter?.reject(e);
          const cb = this.waiter;
          this.waiter = undefined;
          cb?.(e);
        },
      });
      this.slot = slot;
      this.id = id;
    }
    const buf = this.batch!;
    this.batch = undefined;
    const len = this.batchLen;
    this.batchLen = 0;
    this.inFlight++;
    // `buf` views a whole ArrayBuffer from takeBuffer().
    pool.post(this.slot, this.id, buf.buffer as ArrayBuffer, len);
  }

  private release(): void {
    this.pending = undefined;
    this.batch = undefined;
    this.batchLen = 0;
  }
}
