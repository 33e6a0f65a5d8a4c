/**
 * MD5 of a download stream, computed on a worker thread for large bodies.
 *
 * Why: MD5 has no hardware acceleration and runs at roughly a third of the
 * speed of SHA-NI SHA-256, so on big files it is the single largest cost of
 * a download on the event loop. Moving it to a worker lets it run beside
 * the socket/disk work and the SHA-256 (which stays on the main thread).
 *
 * How: bytes are copied into 1 MiB batches whose ArrayBuffers are
 * *transferred* (not cloned) to the worker and transferred back for reuse.
 * Small bodies never fill a batch and are hashed inline at the end, so
 * thousands of small downloads pay no thread round trip.
 *
 * Invariant: at most MAX_IN_FLIGHT batches per stream are queued on the
 * worker; `needsDrain()` tells the writer to wait (`drained()`) before
 * accepting more, so memory stays bounded whatever the network speed.
 *
 * The worker is one per process, started on first use, kept referenced only
 * while a stream is open (so it never holds the process alive, and never
 * lets it exit while a digest is pending).
 */
import { Worker } from 'node:worker_threads';
import { createHash } from 'node:crypto';

const BATCH = 1024 * 1024;
const MAX_IN_FLIGHT = 4;
const POOL_MAX = 16;

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const open = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'data') {
    let h = open.get(m.id);
    if (!h) { h = createHash('md5'); open.set(m.id, h); }
    h.update(new Uint8Array(m.buf, 0, m.len));
    parentPort.postMessage({ op: 'free', id: m.id, buf: m.buf }, [m.buf]);
  } else if (m.op === 'end') {
    const h = open.get(m.id) ?? createHash('md5');
    open.delete(m.id);
    parentPort.postMessage({ op: 'digest', id: m.id, hex: h.digest('hex') });
  } else if (m.op === 'drop') {
    open.delete(m.id);
  }
});
`;

interface StreamState {
  onFree: () => void;
  onDigest: (hex: string) => void;
  onError: (e: Error) => void;
}

type WorkerMessage = { op: 'free'; id: number; buf: ArrayBuffer } | { op: 'digest'; id: number; hex: string };

class Md5Worker {
  private worker: Worker | undefined;
  private readonly streams = new Map<number, StreamState>();
  private readonly pool: ArrayBuffer[] = [];
  private nextId = 1;

  open(state: StreamState): number {
    const w = this.ensure();
    const id = this.nextId++;
    this.streams.set(id, state);
    if (this.streams.size === 1) w.ref();
    return id;
  }

  post(id: number, buf: ArrayBuffer, len: number): void {
    this.ensure().postMessage({ op: 'data', id, buf, len }, [buf]);
  }

  end(id: number): void {
    this.ensure().postMessage({ op: 'end', id });
  }

  close(id: number, drop: boolean): void {
    if (!this.streams.delete(id)) return;
    if (drop) this.worker?.postMessage({ op: 'drop', id });
    if (this.streams.size === 0) this.worker?.unref();
  }

  takeBuffer(): ArrayBuffer {
    return this.pool.pop() ?? new ArrayBuffer(BATCH);
  }

  private ensure(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_SOURCE, { eval: true, name: 'mediacache-md5' });
    w.unref();
    w.on('message', (m: WorkerMessage) => {
      const s = this.streams.get(m.id);
      if (m.op === 'free') {
        if (this.pool.length < POOL_MAX) this.pool.push(m.buf);
        s?.onFree();
      } else {
        s?.onDigest(m.hex);
      }
    });
    const fail = (e: Error): void => {
      if (this.worker !== w) return;
      this.worker = undefined;
      const streams = [...this.streams.values()];
      this.streams.clear();
      for (const s of streams) s.onError(e);
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`md5 worker exited with code ${code}`)));
    this.worker = w;
    return w;
  }
}

let shared: Md5Worker | undefined;

/** Incremental MD5 with the same update/digest shape as node:crypto, but async digest. */
export class StreamMd5 {
  /** Chunks seen while the body is still smaller than one batch. */
  private pending: Uint8Array[] | undefined = [];
  private pendingLen = 0;
  private batch: Buffer | undefined;
  private batchLen = 0;
  private id: number | undefined;
  private inFlight = 0;
  private waiter: (() => void) | undefined;
  private digestWaiter: { resolve: (hex: string) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private done = false;

  /**
   * Until a full batch's worth has arrived, chunks are only referenced (no
   * copy, no 1 MiB buffer): a small body is hashed inline from them at the
   * end. Past that, bytes are copied into batches that go to the worker.
   */
  update(chunk: Uint8Array): void {
    if (this.id === undefined && this.pending) {
      this.pending.push(chunk);
      this.pendingLen += chunk.length;
      if (this.pendingLen < BATCH) return;
      const chunks = this.pending;
      this.pending = undefined;
      for (const c of chunks) this.copyIn(c);
      return;
    }
    this.copyIn(chunk);
  }

  private copyIn(chunk: Uint8Array): void {
    let off = 0;
    while (off < chunk.length) {
      if (!this.batch) this.batch = Buffer.from(this.worker().takeBuffer());
      const n = Math.min(chunk.length - off, BATCH - this.batchLen);
      this.batch.set(chunk.subarray(off, off + n), this.batchLen);
      this.batchLen += n;
      off += n;
      if (this.batchLen === BATCH) this.flush();
    }
  }

  /** True when the caller should wait for `drained()` before the next update. */
  needsDrain(): boolean {
    return this.inFlight >= MAX_IN_FLIGHT && !this.failure;
  }

  drained(cb: () => void): void {
    if (!this.needsDrain()) return cb();
    this.waiter = cb;
  }

  async digest(): Promise<string> {
    if (this.failure) throw this.failure;
    if (this.done) throw new Error('StreamMd5 used after digest/dispose');
    if (this.id === undefined) {
      // Never filled a batch: hash inline, no thread round trip.
      const h = createHash('md5');
      for (const c of this.pending ?? []) h.update(c);
      const hex = h.digest('hex');
      this.release();
      this.done = true;
      return hex;
    }
    if (this.batchLen > 0) this.flush();
    this.done = true;
    const w = shared!;
    const id = this.id;
    const p = new Promise<string>((resolve, reject) => (this.digestWaiter = { resolve, reject }));
    w.end(id);
    try {
      return await p;
    } finally {
      w.close(id, false);
    }
  }

  /** Abandon the stream (error paths). */
  dispose(): void {
    if (this.id !== undefined) shared?.close(this.id, true);
    this.id = undefined;
    this.release();
    this.done = true;
  }

  private flush(): void {
    const w = this.worker();
    if (this.id === undefined) {
      this.id = w.open({
        onFree: () => {
          this.inFlight--;
          const cb = this.waiter;
          if (cb && !this.needsDrain()) {
            this.waiter = undefined;
            cb();
          }
        },
        onDigest: (hex) => this.digestWaiter?.resolve(hex),
        onError: (e) => {
          this.failure = e;
          this.digestWaiter?.reject(e);
          const cb = this.waiter;
          this.waiter = undefined;
          cb?.();
        },
      });
    }
    const buf = this.batch!;
    this.batch = undefined;
    const len = this.batchLen;
    this.batchLen = 0;
    this.inFlight++;
    // `buf` was made by Buffer.from(arrayBuffer): it owns the whole buffer.
    w.post(this.id, buf.buffer as ArrayBuffer, len);
  }

  private release(): void {
    this.pending = undefined;
    this.batch = undefined;
    this.batchLen = 0;
  }

  private worker(): Md5Worker {
    if (this.done) throw new Error('StreamMd5 used after digest/dispose');
    return (shared ??= new Md5Worker());
  }
}
