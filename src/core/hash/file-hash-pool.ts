/**
 * File hashing (MD5 and SHA-256 in one pass, or SHA-256 alone) in worker threads, for sweeps.
 *
 * Why threads: a sweep re-reads the whole cache; hashing on the main thread
 * would stall the daemon's socket and downloads. Each worker reads its file
 * with large synchronous reads (it has nothing else to do) and feeds both
 * digests from the same buffer.
 *
 * Throttle: all workers share one token bucket kept in a SharedArrayBuffer as
 * a "theoretical arrival time" (GCRA): a worker that read n bytes reserves
 * n / rate seconds after the later of now and the last reservation, then
 * sleeps until its reservation ends. So the pool as a whole never exceeds
 * `rateMBps` (MB = 10^6 bytes), idle time is not banked into bursts, and the
 * rate can change while a sweep runs. 0 = unlimited.
 *
 * Cancel: a shared generation counter; a job dispatched under an older
 * generation stops at its next chunk and answers "cancelled".
 *
 * The worker body is a plain function serialized into an `eval` worker, so
 * the same code runs from `dist/` and from TypeScript sources under test
 * loaders, with no second entry file to locate.
 */
import { Worker } from 'node:worker_threads';
import { MediaCacheError } from '../errors.js';
import { NotRegularFileError } from './file-hash.js';

/** What `hashSha256` answers: the SHA-256 only (no MD5, which costs 2.3x more CPU). */
export interface Sha256Outcome {
  sha256: string;
  size: number;
  /** Identity of the file that was hashed, to detect a replacement later. */
  ino: number;
  mtimeMs: number;
  /** The first `headBytes` bytes, when asked for. */
  head?: Uint8Array;
}

/** What `hash` answers: both digests from one read. */
export interface HashOutcome extends Sha256Outcome {
  md5: string;
}

/** Either answer: the MD5 is there when it was asked for. */
export type AnyHashOutcome = Sha256Outcome & { md5?: string };

export interface HashPoolOptions {
  /** Worker threads (default 2). */
  threads?: number;
  /** Read and hash at most this many MB (10^6 bytes) per second across all threads; 0 = unlimited. */
  rateMBps?: number;
  /** Bytes per read (default 4 MiB: few syscalls, still fine-grained for the throttle). */
  chunkBytes?: number;
  /**
   * Nice value for the hashing threads on Linux (default 10): when CPUs are
   * busy, downloads and the socket on the main thread go first. Best effort
   * (a seccomp filter may refuse setpriority; the sweep then runs at normal priority).
   */
  niceness?: number;
}

interface JobMsg {
  id: number;
  path: string;
  headBytes: number;
  /** Compute the MD5 too (else SHA-256 only). */
  md5: boolean;
  gen: number;
}

type ReplyMsg =
  | { id: number; kind: 'ok'; md5?: string; sha256: string; size: number; ino: number; mtimeMs: number; head?: Uint8Array }
  | { id: number; kind: 'missing' }
  | { id: number; kind: 'cancelled' }
  | { id: number; kind: 'error'; message: string; code?: string };

/* Shared layout. BigInt64 slots: 0 = reservation end (µs since epoch), 1 = rate (bytes/s, 0 = off).
 * Int32 slots (separate buffer): 0 = cancel generation, 1 = sleep word (always 0; notified on cancel). */

/** Runs inside the worker. Must not reference anything outside its body. */
function workerMain(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const wt = require('node:worker_threads') as typeof import('node:worker_threads');
  const fs = require('node:fs') as typeof import('node:fs');
  const os = require('node:os') as typeof import('node:os');
  const crypto = require('node:crypto') as typeof import('node:crypto');
  const { bucket, control, chunkBytes, niceness } = wt.workerData as { bucket: SharedArrayBuffer; control: SharedArrayBuffer; chunkBytes: number; niceness: number };
  if (niceness > 0 && process.platform === 'linux') {
    try {
      // setpriority() on a thread id renices just this thread (Linux).
      const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
      if (Number.isInteger(tid) && tid > 0) os.setPriority(tid, Math.max(os.getPriority(tid), niceness));
    } catch {
      // not permitted here: run at normal priority
    }
  }
  const big = new BigInt64Array(bucket);
  const ctl = new Int32Array(control);
  const buf = Buffer.allocUnsafe(chunkBytes);
  const nowUs = (): bigint => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));

  /** Reserve n bytes of the shared rate and sleep until they are paid for; false when cancelled. */
  const pay = (n: number, gen: number): boolean => {
    const rate = Atomics.load(big, 1);
    if (rate <= 0n) return true;
    const cost = (BigInt(n) * 1_000_000n) / rate;
    let end: bigint;
    for (;;) {
      const cur = Atomics.load(big, 0);
      const now = nowUs();
      end = (cur > now ? cur : now) + cost;
      if (Atomics.compareExchange(big, 0, cur, end) === cur) break;
    }
    for (;;) {
      if (Atomics.load(ctl, 0) !== gen) return false;
      const waitUs = end - nowUs();
      if (waitUs <= 0n) return true;
      Atomics.wait(ctl, 1, 0, Math.max(1, Number(waitUs) / 1000));
    }
  };

  const hash = (job: JobMsg): ReplyMsg => {
    let fd: number;
    try {
      // Non-blocking (a FIFO would block the open, and this thread, for good); the fd is checked below.
      fd = fs.openSync(job.path, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return { id: job.id, kind: 'missing' };
      return { id: job.id, kind: 'error', message: String((e as Error).message), code };
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) return { id: job.id, kind: 'error', message: `not a regular file: ${job.path}`, code: 'ENOTREG' };
      const md5 = job.md5 ? crypto.createHash('md5') : undefined;
      const sha = crypto.createHash('sha256');
      let size = 0;
      let head: Buffer | undefined;
      for (;;) {
        if (Atomics.load(ctl, 0) !== job.gen) return { id: job.id, kind: 'cancelled' };
        const n = fs.readSync(fd, buf, 0, buf.length, null);
        if (n === 0) break;
        const view = buf.subarray(0, n);
        md5?.update(view);
        sha.update(view);
        if (size < job.headBytes) {
          const take = Buffer.from(view.subarray(0, Math.min(n, job.headBytes - size)));
          head = head ? Buffer.concat([head, take]) : take;
        }
        size += n;
        if (!pay(n, job.gen)) return { id: job.id, kind: 'cancelled' };
      }
      const out: ReplyMsg = { id: job.id, kind: 'ok', sha256: sha.digest('hex'), size, ino: st.ino, mtimeMs: st.mtimeMs };
      if (md5) out.md5 = md5.digest('hex');
      if (head) out.head = new Uint8Array(head.buffer.slice(head.byteOffset, head.byteOffset + head.length));
      return out;
    } catch (e) {
      return { id: job.id, kind: 'error', message: String((e as Error).message), code: (e as NodeJS.ErrnoException).code };
    } finally {
      fs.closeSync(fd);
    }
  };

  wt.parentPort?.on('message', (job: JobMsg) => {
    const reply = hash(job);
    if (reply.kind === 'ok' && reply.head) wt.parentPort?.postMessage(reply, [reply.head.buffer as ArrayBuffer]);
    else wt.parentPort?.postMessage(reply);
  });
}

const WORKER_SOURCE = `(${workerMain.toString()})()`;

/** Jobs handed to one thread at a time: the one it hashes and the next. */
const QUEUE_DEPTH = 2;

interface Pending {
  path: string;
  resolve: (v: AnyHashOutcome | undefined) => void;
  reject: (e: unknown) => void;
  worker: Slot;
}

interface Slot {
  worker: Worker;
  busy: number;
}

/**
 * A small pool of hashing threads. `hash()` queues a file and resolves with
 * its digests, `undefined` when the file does not exist, or rejects
 * (E_ABORTED when cancelled, E_UNAVAILABLE for read errors).
 */
export class HashPool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly queue: Array<{ msg: Omit<JobMsg, 'gen'>; p: Omit<Pending, 'worker' | 'path'> }> = [];
  private readonly big: BigInt64Array;
  private readonly ctl: Int32Array;
  private readonly chunkBytes: number;
  private readonly niceness: number;
  private readonly threads: number;
  private nextId = 1;
  private closed = false;

  constructor(opts: HashPoolOptions = {}) {
    const threads = opts.threads ?? 2;
    if (!Number.isInteger(threads) || threads < 1 || threads > 64) {
      throw new MediaCacheError('E_BAD_REQUEST', `threads must be an integer from 1 to 64, got ${String(threads)}`);
    }
    this.threads = threads;
    this.chunkBytes = opts.chunkBytes ?? 4 * 1024 * 1024;
    this.niceness = Math.min(19, Math.max(0, Math.trunc(opts.niceness ?? 10)));
    this.big = new BigInt64Array(new SharedArrayBuffer(16));
    this.ctl = new Int32Array(new SharedArrayBuffer(8));
    this.setRate(opts.rateMBps ?? 0);
  }

  /** Change the shared rate limit (MB/s, 0 = unlimited); applies to reads in progress. */
  setRate(rateMBps: number): void {
    if (!Number.isFinite(rateMBps) || rateMBps < 0) {
      throw new MediaCacheError('E_BAD_REQUEST', `rateMBps must be a number >= 0 (0 = unlimited), got ${String(rateMBps)}`);
    }
    Atomics.store(this.big, 1, BigInt(Math.round(rateMBps * 1_000_000)));
  }

  /** Jobs queued or running. */
  get size(): number {
    return this.pending.size + this.queue.length;
  }

  /** MD5 and SHA-256 of a file (one read); undefined when it does not exist. */
  hash(path: string, opts: { headBytes?: number } = {}): Promise<HashOutcome | undefined> {
    return this.submit(path, opts.headBytes ?? 0, true) as Promise<HashOutcome | undefined>;
  }

  /**
   * SHA-256 only. Enough to verify a file against a record that has both
   * digests: the record's pair was computed over the same bytes, so equal
   * SHA-256 means equal bytes, hence equal MD5 too.
   */
  hashSha256(path: string, opts: { headBytes?: number } = {}): Promise<Sha256Outcome | undefined> {
    return this.submit(path, opts.headBytes ?? 0, false);
  }

  private submit(path: string, headBytes: number, md5: boolean): Promise<AnyHashOutcome | undefined> {
    if (this.closed) return Promise.reject(new MediaCacheError('E_ABORTED', 'hash pool is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ msg: { id: this.nextId++, path, headBytes, md5 }, p: { resolve, reject } });
      this.pump();
    });
  }

  /** Stop every queued and running job (they reject with E_ABORTED); the pool stays usable. */
  cancel(): void {
    Atomics.add(this.ctl, 0, 1);
    Atomics.notify(this.ctl, 1);
    const err = new MediaCacheError('E_ABORTED', 'hashing cancelled');
    for (const q of this.queue.splice(0)) q.p.reject(err);
  }

  /** Cancel everything and end the threads. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancel();
    const err = new MediaCacheError('E_ABORTED', 'hash pool is closed');
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const slot = this.idleSlot();
      if (!slot) return;
      const { msg, p } = this.queue.shift()!;
      slot.busy++;
      slot.worker.ref();
      this.pending.set(msg.id, { ...p, path: msg.path, worker: slot });
      slot.worker.postMessage({ ...msg, gen: Atomics.load(this.ctl, 0) } satisfies JobMsg);
    }
  }

  /**
   * Start every thread now (they start in tens of ms): a sweep calls this
   * before its stat step, so the start-up overlaps work instead of delaying
   * the first hash.
   */
  warm(): void {
    if (this.closed) return;
    while (this.slots.length < this.threads) this.spawn();
  }

  /**
   * An idle thread, else a new one, else a thread with one job that can take
   * a second: each worker keeps its next file queued in its message port, so
   * it goes from one file to the next without waiting for the main thread's
   * event loop to hand it work.
   */
  private idleSlot(): Slot | undefined {
    const idle = this.slots.find((s) => s.busy === 0);
    if (idle) return idle;
    if (this.slots.length < this.threads) return this.spawn();
    return this.slots.find((s) => s.busy < QUEUE_DEPTH);
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      // No loaders or flags of the parent (test runners): the body is plain JS.
      execArgv: [],
      workerData: { bucket: this.big.buffer, control: this.ctl.buffer, chunkBytes: this.chunkBytes, niceness: this.niceness },
    });
    // Referenced only while it has work: an idle pool never keeps the process alive.
    worker.unref();
    const slot: Slot = { worker, busy: 0 };
    worker.on('message', (m: ReplyMsg) => this.onReply(slot, m));
    worker.on('error', (e) => this.onWorkerDeath(slot, e));
    worker.on('exit', (code) => {
      if (!this.closed) this.onWorkerDeath(slot, new Error(`hash worker exited with code ${code}`));
    });
    this.slots.push(slot);
    return slot;
  }

  private onReply(slot: Slot, m: ReplyMsg): void {
    const p = this.pending.get(m.id);
    slot.busy = Math.max(0, slot.busy - 1);
    if (slot.busy === 0) slot.worker.unref();
    if (p) {
      this.pending.delete(m.id);
      switch (m.kind) {
        case 'ok': {
          const out: AnyHashOutcome = { sha256: m.sha256, size: m.size, ino: m.ino, mtimeMs: m.mtimeMs };
          if (m.md5 !== undefined) out.md5 = m.md5;
          if (m.head) out.head = m.head;
          p.resolve(out);
          break;
        }
        case 'missing':
          p.resolve(undefined);
          break;
        case 'cancelled':
          p.reject(new MediaCacheError('E_ABORTED', 'hashing cancelled'));
          break;
        case 'error':
          if (m.code === 'ENOTREG') p.reject(new NotRegularFileError(p.path));
          else p.reject(new MediaCacheError('E_UNAVAILABLE', `cannot read file: ${m.message}`, { cause: m.code }));
          break;
      }
    }
    this.pump();
  }

  private onWorkerDeath(slot: Slot, e: unknown): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    for (const [id, p] of this.pending) {
      if (p.worker === slot) {
        this.pending.delete(id);
        p.reject(new MediaCacheError('E_UNAVAILABLE', `hash worker failed: ${String(e)}`, { cause: e }));
      }
    }
    if (!this.closed) this.pump();
  }
}
