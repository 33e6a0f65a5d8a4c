/**
 * The write side of a download: a Writable that hashes, sniffs, measures and
 * writes the body to an open tmp file (HashSink). download.ts feeds it
 * straight from undici's dispatch callbacks.
 *
 * Invariant: the sink refuses (errors) as soon as the body is known to be
 * unacceptable (unsupported type from the head, over maxFileSize), and holds
 * at most a bounded amount of the body in memory (head buffer <= 512 KiB for
 * images, <= WRITE_BATCH of pending writes, the hash worker backlog).
 */
import { writev, write } from 'node:fs';
import { Writable } from 'node:stream';
import { MediaCacheError } from '../errors.js';
import { sniff, imageDimensions, jpegHeadNeeded, SNIFF_BYTES, IMAGE_HEAD_CAP, type Sniffed } from '../content/sniff.js';
import { StreamHasher, type StreamDigests } from '../hash/stream-hasher.js';
import { ImageStructureCheck } from '../content/image-structure.js';

const PROGRESS_MIN_MS = 100;
const PROGRESS_MIN_BYTES = 1024 * 1024;
const SINK_HIGH_WATER = 1024 * 1024;
const WRITE_BATCH = 512 * 1024;
/** Also write once this many chunks are held (a trickling origin's tiny reads would cost more in Buffer objects than in bytes). */
const WRITE_BATCH_CHUNKS = 1024;
/** Leading bytes kept for the metadata reader (it reads them from memory, not the file): most image headers fit. */
const KEEP_HEAD = 64 * 1024;

export interface SinkOptions {
  maxFileSize: number;
  url: string;
  total: number | undefined;
  onProgress: ((bytes: number, total?: number) => void) | undefined;
  /** The cache quota (--max-size): a larger body is refused with E_QUOTA. */
  quotaBytes?: number;
}

/**
 * Writes chunks to an open fd (batched with writev), hashes them, and keeps
 * a copy of only the leading bytes: SNIFF_BYTES for the type, up to
 * IMAGE_HEAD_CAP for images whose dimensions are not in the first bytes.
 * Refuses an unsupported type as soon as the head is complete, before more
 * of the body is written.
 */
export class HashSink extends Writable {
  bytes = 0;
  /** Bytes this sink has written to the fd (completed writes; a resumed download's kept prefix not included). */
  written = 0;
  /** Chunks hashed but not yet written (see queueWrite). */
  private pending: Buffer[] = [];
  /** The writev in flight, if any (one at a time: Writable serializes _write). */
  private writing: Promise<void> | undefined;
  private pendingBytes = 0;
  /** MD5 + SHA-256: inline for small bodies, on a hash worker for large ones. */
  private readonly hasher = new StreamHasher();
  private digests: StreamDigests | undefined;
  private head: Buffer = Buffer.allocUnsafe(SNIFF_BYTES);
  private headLen = 0;
  private sniffed: Sniffed | undefined;
  /** Still collecting head bytes for image dimensions. */
  private wantDims = false;
  private dims: { width: number; height: number } | undefined;
  /** The leading bytes already collected for sniffing and dimensions, kept (at most KEEP_HEAD) for the metadata reader. */
  private kept: Buffer | undefined;
  private lastProgressAt = 0;
  private lastProgressBytes = 0;
  /** PNG, GIF, JPEG, WebP: the declared structure must fit the body (image-structure.ts). */
  private readonly structure = new ImageStructureCheck();

  constructor(
    private readonly fd: number,
    private readonly o: SinkOptions,
  ) {
    super({ highWaterMark: SINK_HIGH_WATER });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const err = this.take(chunk);
    if (err) return cb(err);
    this.queueWrite(chunk, cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks[i].chunk;
      const err = this.take(c);
      if (err) return cb(err);
      this.pending.push(c);
      this.pendingBytes += c.length;
    }
    this.queueWrite(undefined, cb);
  }

  /**
   * Socket reads arrive in 16-64 KiB chunks; writing each one costs a
   * threadpool round trip. Chunks are held (by reference, at most
   * WRITE_BATCH bytes) and written together with one writev.
   */
  private queueWrite(chunk: Buffer | undefined, cb: (err?: Error | null) => void): void {
    if (chunk) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
    if (this.pendingBytes < WRITE_BATCH && this.pending.length < WRITE_BATCH_CHUNKS) return this.hasher.drained(cb);
    this.flushWrites((e) => (e ? cb(e) : this.hasher.drained(cb)));
  }

  private flushWrites(cb: (err?: Error | null) => void): void {
    if (this.pending.length === 0) return cb();
    const bufs = this.pending;
    const n = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    let done!: () => void;
    this.writing = new Promise((r) => (done = r));
    writeAll(this.fd, bufs, (e) => {
      if (!e) this.written += n;
      this.writing = undefined;
      done();
      cb(e);
    });
  }

  /**
   * Resolves when no write to the fd is in flight. The owner must wait for
   * this before closing the fd after a failure: a write still queued in the
   * threadpool would otherwise land in whatever file reuses the fd number.
   */
  whenIdle(): Promise<void> {
    return this.writing ?? Promise.resolve();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.sniffed) {
      const err = this.decideType(this.head.subarray(0, this.headLen));
      if (err) return cb(err);
    }
    const problem = this.structure.finish();
    if (problem) return cb(this.malformed(problem));
    if (this.wantDims) this.dims = imageDimensions(this.head.subarray(0, this.headLen));
    this.wantDims = false;
    this.o.onProgress?.(this.bytes, this.o.total);
    this.flushWrites((e) => {
      if (e) return cb(e);
      this.hasher.digest().then(
        (d) => {
          this.digests = d;
          cb();
        },
        (err: Error) => cb(err),
      );
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.hasher.dispose();
    cb(err);
  }

  result(): { md5: string; sha256: string; sniffed: Sniffed; dims?: { width: number; height: number }; head?: Buffer } {
    if (!this.sniffed || !this.digests) throw new Error('HashSink.result() before the body ended');
    const head = this.kept ?? (this.headLen > 0 ? Buffer.from(this.head.subarray(0, Math.min(this.headLen, KEEP_HEAD))) : undefined);
    return { md5: this.digests.md5, sha256: this.digests.sha256, sniffed: this.sniffed, dims: this.dims, head };
  }

  /** Drop the head buffer, keeping a copy of its first KEEP_HEAD bytes. */
  private releaseHead(): void {
    this.kept = Buffer.from(this.head.subarray(0, Math.min(this.headLen, KEEP_HEAD)));
    this.head = Buffer.alloc(0);
  }

  /**
   * Account for bytes already in the file (a resumed download's kept
   * prefix): hashed, sniffed and counted like received bytes, not written.
   */
  prime(chunk: Buffer, cb: (err?: Error | null) => void): void {
    const err = this.take(chunk);
    if (err) return cb(err);
    this.hasher.drained(cb);
  }

  /** Account for one chunk; returns an error to stop the transfer. */
  private take(chunk: Buffer): MediaCacheError | undefined {
    this.bytes += chunk.length;
    if (this.bytes > this.o.maxFileSize) {
      return new MediaCacheError('E_TOO_LARGE', `body exceeds the limit of ${this.o.maxFileSize} bytes`, { url: this.o.url });
    }
    if (this.o.quotaBytes !== undefined && this.bytes > this.o.quotaBytes) {
      return new MediaCacheError('E_QUOTA', `body exceeds the whole cache quota of ${this.o.quotaBytes} bytes`, { url: this.o.url });
    }
    this.hasher.update(chunk);
    const problem = this.structure.update(chunk);
    if (problem) return this.malformed(problem);
    if (!this.sniffed || this.wantDims) {
      const err = this.collectHead(chunk);
      if (err) return err;
    }
    if (this.o.onProgress) {
      const now = Date.now();
      if (now - this.lastProgressAt >= PROGRESS_MIN_MS || this.bytes - this.lastProgressBytes >= PROGRESS_MIN_BYTES) {
        this.lastProgressAt = now;
        this.lastProgressBytes = this.bytes;
        this.o.onProgress(this.bytes, this.o.total);
      }
    }
    return undefined;
  }

  private collectHead(chunk: Buffer): MediaCacheError | undefined {
    const room = this.head.length - this.headLen;
    const n = Math.min(room, chunk.length);
    chunk.copy(this.head, this.headLen, 0, n);
    this.headLen += n;
    if (!this.sniffed) {
      if (this.headLen < SNIFF_BYTES) return undefined;
      const err = this.decideType(this.head);
      if (err) return err;
      if (!this.wantDims) {
        this.releaseHead();
        return undefined;
      }
    }
    // Images: retry the size read each time the head buffer fills (it grows
    // 4x each time, up to the cap; _final tries once more with what came), so
    // a JPEG with a long comment before its frame header costs a few
    // parses instead of one per socket read.
    if (this.headLen < this.head.length && this.headLen < IMAGE_HEAD_CAP) return undefined;
    const head = this.head.subarray(0, this.headLen);
    const need = this.sniffed!.extension === '.jpg' ? jpegHeadNeeded(head) : undefined;
    this.dims = need !== undefined && need > this.headLen ? undefined : imageDimensions(head);
    if (this.dims) {
      this.wantDims = false;
    } else if (this.headLen >= IMAGE_HEAD_CAP) {
      this.wantDims = false;
    } else if (this.headLen === this.head.length) {
      const bigger = Buffer.allocUnsafe(Math.min(IMAGE_HEAD_CAP, Math.max(this.head.length * 4, need ?? 0)));
      this.head.copy(bigger, 0, 0, this.headLen);
      this.head = bigger;
      const rest = chunk.subarray(n);
      if (rest.length) return this.collectHead(rest);
    }
    if (!this.wantDims) this.releaseHead();
    return undefined;
  }

  /** An image whose body does not fit its header is not that image: refused like any unsupported content. */
  private malformed(problem: string): MediaCacheError {
    return new MediaCacheError('E_UNSUPPORTED_TYPE', `content is not a complete image: ${problem}`, { url: this.o.url });
  }

  private decideType(head: Buffer): MediaCacheError | undefined {
    const s = sniff(head);
    if (!s) {
      return new MediaCacheError('E_UNSUPPORTED_TYPE', 'content is not a supported image, video, audio or PDF type', { url: this.o.url });
    }
    this.sniffed = s;
    this.wantDims = s.mediaType === 'image';
    return undefined;
  }
}

/** writev until every byte is on its way to disk (writes to files may be partial on some systems). */
function writeAll(fd: number, bufs: Buffer[], cb: (err?: Error | null) => void): void {
  const done = (err: NodeJS.ErrnoException | null, written: number): void => {
    if (err) return cb(err);
    let left = written;
    while (bufs.length && left >= bufs[0].length) left -= bufs.shift()!.length;
    if (!bufs.length) return cb();
    if (left > 0) bufs[0] = bufs[0].subarray(left);
    writeAll(fd, bufs, cb);
  };
  if (bufs.length === 1) write(fd, bufs[0], 0, bufs[0].length, null, done);
  else writev(fd, bufs, done);
}

