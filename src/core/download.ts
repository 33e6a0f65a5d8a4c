/**
 * One HTTP download into `.tmp/`: stream the body to a fresh file while
 * hashing (MD5 + SHA-256), sniffing the type from the first bytes and
 * reading image dimensions from a bounded head buffer. Never holds the whole
 * body in memory, never reads the file back.
 *
 * Invariant: `fetchToTmp` either resolves with a complete tmp file whose
 * hashes, size and type are known, or rejects with a MediaCacheError having
 * removed its tmp file and consumed/destroyed the response body.
 */
import fs from 'node:fs/promises';
import { writev, write } from 'node:fs';
import path from 'node:path';
import { randomUUID, createHash, type Hash } from 'node:crypto';
import { Writable, type Readable } from 'node:stream';
import { Agent, EnvHttpProxyAgent, interceptors, request, type Dispatcher } from 'undici';
import { MediaCacheError, toMediaCacheError } from './errors.js';
import { sniff, imageDimensions, SNIFF_BYTES, IMAGE_HEAD_CAP, type Sniffed } from './sniff.js';
import { parseRetryAfter } from './retry.js';
import { markSynced, removeQuietly } from './store.js';
import { StreamMd5 } from './download-md5.js';

export interface FetchOptions {
  tmpDir: string;
  dispatcher: Dispatcher;
  /** Connect, headers and body-stall limit; the overall deadline derives from it. */
  timeoutMs: number;
  maxFileSize: number;
  signal?: AbortSignal;
  onProgress?: (bytes: number, total?: number) => void;
  headers?: Record<string, string>;
}

export interface Fetched {
  tmpPath: string;
  md5: string;
  sha256: string;
  size: number;
  sniffed: Sniffed;
  width?: number;
  height?: number;
  etag?: string;
  lastModified?: string;
  finalUrl: string;
  contentType?: string;
}

/**
 * Overall deadline: a download may take DEADLINE_FACTOR x timeoutMs, plus
 * one second per MIN_AVG_BYTES_PER_SEC received. A trickling origin (one
 * byte just inside every stall window) fails; a slow but real transfer of
 * a large file does not.
 */
const DEADLINE_FACTOR = 4;
const MIN_AVG_BYTES_PER_SEC = 16 * 1024;
const PROGRESS_MIN_MS = 100;
const PROGRESS_MIN_BYTES = 1024 * 1024;
const BODY_HIGH_WATER = 256 * 1024;
const SINK_HIGH_WATER = 1024 * 1024;
const WRITE_BATCH = 512 * 1024;

export function createDispatcher(opts: { timeoutMs: number; maxRedirects?: number; env?: NodeJS.ProcessEnv }): Dispatcher {
  const { timeoutMs, maxRedirects = 5, env = process.env } = opts;
  if (!(timeoutMs > 0)) throw new MediaCacheError('E_BAD_REQUEST', `timeoutMs must be a positive number of milliseconds, got ${timeoutMs}`);
  if (!(Number.isInteger(maxRedirects) && maxRedirects >= 0)) {
    throw new MediaCacheError('E_BAD_REQUEST', `maxRedirects must be a non-negative integer, got ${maxRedirects}`);
  }
  const agentOpts: Agent.Options = {
    connect: { timeout: timeoutMs },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  };
  // Same precedence as curl and undici: lowercase first. Values are passed
  // explicitly (also empty) so undici never falls back to process.env itself.
  const httpProxy = env.http_proxy ?? env.HTTP_PROXY ?? '';
  const httpsProxy = env.https_proxy ?? env.HTTPS_PROXY ?? '';
  const noProxy = env.no_proxy ?? env.NO_PROXY ?? '';
  const base: Dispatcher =
    httpProxy || httpsProxy ? new EnvHttpProxyAgent({ ...agentOpts, httpProxy, httpsProxy, noProxy }) : new Agent(agentOpts);
  // The redirect interceptor sits outside the proxy agent, so every hop gets
  // its own proxy/NO_PROXY decision.
  return base.compose(interceptors.redirect({ maxRedirections: maxRedirects }));
}

export async function fetchToTmp(url: URL, opts: FetchOptions): Promise<Fetched> {
  const { tmpDir, dispatcher, timeoutMs, maxFileSize, signal, onProgress } = opts;
  const href = url.href;
  if (signal?.aborted) throw new MediaCacheError('E_ABORTED', 'download aborted', { url: href });

  // Our own reasons to stop (user abort, deadline) win over whatever error
  // undici surfaces as a consequence of the abort.
  const ac = new AbortController();
  let failure: MediaCacheError | undefined;
  const fail = (err: MediaCacheError): void => {
    if (failure) return;
    failure = err;
    ac.abort(err);
  };
  const onUserAbort = (): void => fail(new MediaCacheError('E_ABORTED', 'download aborted', { url: href }));
  signal?.addEventListener('abort', onUserAbort, { once: true });

  const started = Date.now();
  let sink: HashSink | undefined;
  const graceMs = DEADLINE_FACTOR * timeoutMs;
  let deadlineTimer: NodeJS.Timeout | undefined;
  const checkDeadline = (): void => {
    const allowedUntil = started + graceMs + ((sink?.bytes ?? 0) * 1000) / MIN_AVG_BYTES_PER_SEC;
    const now = Date.now();
    if (now >= allowedUntil) {
      fail(new MediaCacheError('E_TIMEOUT', `download exceeded its overall deadline (${Math.round((now - started) / 1000)} s)`, { url: href, retryable: true }));
    } else {
      deadlineTimer = setTimeout(checkDeadline, allowedUntil - now + 5);
      deadlineTimer.unref();
    }
  };
  deadlineTimer = setTimeout(checkDeadline, graceMs);
  deadlineTimer.unref();

  let body: Dispatcher.ResponseData['body'] | undefined;
  let tmpPath: string | undefined;
  let fh: fs.FileHandle | undefined;
  try {
    const res = await request(url, {
      dispatcher,
      method: 'GET',
      headers: { 'accept-encoding': 'identity', 'user-agent': 'mediacache', ...(opts.headers ?? {}) },
      signal: ac.signal,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      highWaterMark: BODY_HIGH_WATER,
      // Per request: the option on redirect({...}) is ignored (DEPS §5).
      throwOnMaxRedirect: true,
    } as Parameters<typeof request>[1]);
    body = res.body;
    const status = res.statusCode;
    const headers = res.headers;
    const finalUrl = finalUrlOf(res, href);

    if (status < 200 || status > 299) {
      // Drain small error bodies so the connection can be reused; big ones are destroyed.
      body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      body = undefined; // owned by dump() now; the error path must not destroy it
      throw httpError(status, headers, finalUrl);
    }
    const total = contentLength(headers);
    if (total !== undefined && total > maxFileSize) {
      throw new MediaCacheError('E_TOO_LARGE', `content-length ${total} exceeds the limit of ${maxFileSize} bytes`, { url: href });
    }

    tmpPath = path.join(tmpDir, `${randomUUID()}.part`);
    fh = await fs.open(tmpPath, 'wx');
    sink = new HashSink(fh.fd, { maxFileSize, url: href, total, onProgress });
    await pump(body, sink);
    if (failure) throw failure;
    if (total !== undefined && sink.bytes !== total) {
      throw new MediaCacheError('E_NETWORK', `body ended after ${sink.bytes} of ${total} bytes`, { url: href, retryable: true });
    }
    // Durable before anyone can rename it into place; done here on the open
    // fd so commitTmp does not have to reopen the file (see store.markSynced).
    await fh.datasync();
    await fh.close();
    fh = undefined;
    markSynced(tmpPath);
    const r = sink.result();
    const out: Fetched = { tmpPath, md5: r.md5, sha256: r.sha256, size: sink.bytes, sniffed: r.sniffed, finalUrl };
    if (r.dims) {
      out.width = r.dims.width;
      out.height = r.dims.height;
    }
    const etag = header(headers, 'etag');
    const lastModified = header(headers, 'last-modified');
    const contentType = header(headers, 'content-type');
    if (etag !== undefined) out.etag = etag;
    if (lastModified !== undefined) out.lastModified = lastModified;
    if (contentType !== undefined) out.contentType = contentType;
    return out;
  } catch (e) {
    const err = failure ?? classify(e, href, timeoutMs);
    if (body && !body.destroyed && !body.readableEnded) {
      // Destroying an unconsumed undici body emits an AbortError; we already have ours.
      body.on('error', () => undefined);
      body.destroy();
    }
    if (fh) await fh.close().catch(() => undefined);
    if (tmpPath) await removeQuietly(tmpPath);
    throw err;
  } finally {
    clearTimeout(deadlineTimer);
    signal?.removeEventListener('abort', onUserAbort);
  }
}

interface SinkOptions {
  maxFileSize: number;
  url: string;
  total: number | undefined;
  onProgress: ((bytes: number, total?: number) => void) | undefined;
}

/**
 * Writes chunks to an open fd (batched with writev), hashes them, and keeps
 * a copy of only the leading bytes: SNIFF_BYTES for the type, up to
 * IMAGE_HEAD_CAP for images whose dimensions are not in the first bytes.
 * Refuses an unsupported type as soon as the head is complete, before more
 * of the body is written.
 */
class HashSink extends Writable {
  bytes = 0;
  /** Chunks hashed but not yet written (see queueWrite). */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly md5 = new StreamMd5();
  private md5hex: string | undefined;
  private readonly sha: Hash = createHash('sha256');
  private head: Buffer = Buffer.allocUnsafe(SNIFF_BYTES);
  private headLen = 0;
  private sniffed: Sniffed | undefined;
  /** Still collecting head bytes for image dimensions. */
  private wantDims = false;
  private dims: { width: number; height: number } | undefined;
  private lastProgressAt = 0;
  private lastProgressBytes = 0;

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
    if (this.pendingBytes < WRITE_BATCH) return this.md5.drained(cb);
    this.flushWrites((e) => (e ? cb(e) : this.md5.drained(cb)));
  }

  private flushWrites(cb: (err?: Error | null) => void): void {
    if (this.pending.length === 0) return cb();
    const bufs = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    writeAll(this.fd, bufs, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.sniffed) {
      const err = this.decideType(this.head.subarray(0, this.headLen));
      if (err) return cb(err);
    }
    if (this.wantDims) this.dims = imageDimensions(this.head.subarray(0, this.headLen));
    this.wantDims = false;
    this.o.onProgress?.(this.bytes, this.o.total);
    this.flushWrites((e) => {
      if (e) return cb(e);
      this.md5.digest().then(
        (hex) => {
          this.md5hex = hex;
          cb();
        },
        (err: Error) => cb(err),
      );
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.md5.dispose();
    cb(err);
  }

  result(): { md5: string; sha256: string; sniffed: Sniffed; dims?: { width: number; height: number } } {
    if (!this.sniffed || !this.md5hex) throw new Error('HashSink.result() before the body ended');
    return { md5: this.md5hex, sha256: this.sha.digest('hex'), sniffed: this.sniffed, dims: this.dims };
  }

  /** Account for one chunk; returns an error to stop the transfer. */
  private take(chunk: Buffer): MediaCacheError | undefined {
    this.bytes += chunk.length;
    if (this.bytes > this.o.maxFileSize) {
      return new MediaCacheError('E_TOO_LARGE', `body exceeds the limit of ${this.o.maxFileSize} bytes`, { url: this.o.url });
    }
    this.md5.update(chunk);
    this.sha.update(chunk);
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
        this.head = Buffer.alloc(0);
        return undefined;
      }
    }
    // Images: retry the size read as the head grows, up to the cap, then give up.
    this.dims = imageDimensions(this.head.subarray(0, this.headLen));
    if (this.dims) {
      this.wantDims = false;
    } else if (this.headLen >= IMAGE_HEAD_CAP) {
      this.wantDims = false;
    } else if (this.headLen === this.head.length) {
      const bigger = Buffer.allocUnsafe(Math.min(IMAGE_HEAD_CAP, this.head.length * 4));
      this.head.copy(bigger, 0, 0, this.headLen);
      this.head = bigger;
      const rest = chunk.subarray(n);
      if (rest.length) return this.collectHead(rest);
    }
    if (!this.wantDims) this.head = Buffer.alloc(0);
    return undefined;
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

/**
 * body.pipe(sink) with errors propagated both ways and a premature end
 * detected. Used instead of stream.pipeline, which builds an AbortController
 * and a DOMException per call: measurable across thousands of small files.
 */
function pump(src: Readable, dst: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      src.unpipe(dst);
      src.destroy();
      dst.destroy();
      reject(err);
    };
    src.on('error', fail);
    dst.on('error', fail);
    src.once('close', () => {
      if (!src.readableEnded) fail(Object.assign(new Error('response body closed early'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    });
    dst.once('finish', () => {
      if (settled) return;
      settled = true;
      resolve();
    });
    src.pipe(dst);
  });
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

function header(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function contentLength(h: Record<string, string | string[] | undefined>): number | undefined {
  const v = header(h, 'content-length');
  if (v === undefined || !/^\d+$/.test(v.trim())) return undefined;
  return Number(v.trim());
}

function finalUrlOf(res: { context?: object }, fallback: string): string {
  const history = (res.context as { history?: unknown } | undefined)?.history;
  if (Array.isArray(history) && history.length > 0) {
    const last: unknown = history[history.length - 1];
    if (last instanceof URL) return last.href;
    if (typeof last === 'string') return last;
  }
  return fallback;
}

function httpError(status: number, headers: Record<string, string | string[] | undefined>, url: string): MediaCacheError {
  if (status >= 300 && status < 400) {
    const msg = header(headers, 'location') ? `too many redirects (stopped at HTTP ${status})` : `HTTP ${status} without a usable Location`;
    return new MediaCacheError('E_HTTP', msg, { status, url });
  }
  const retryable = status === 408 || status === 429 || status >= 500;
  const retryAfterMs = retryable ? parseRetryAfter(header(headers, 'retry-after'), Date.now()) : undefined;
  return new MediaCacheError('E_HTTP', `HTTP ${status}`, { status, url, retryable, retryAfterMs });
}

const NETWORK_CODES = new Set([
  'UND_ERR_SOCKET',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_CLOSED',
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** Map an undici / Node error to the SPEC's codes. */
function classify(e: unknown, url: string, timeoutMs: number): MediaCacheError {
  if (e instanceof MediaCacheError) return e;
  const code = errCode(e);
  const msg = e instanceof Error ? e.message : String(e);
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return timeout(`connect timed out after ${timeoutMs} ms`, url, e);
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return timeout(`no response headers within ${timeoutMs} ms`, url, e);
  if (code === 'UND_ERR_BODY_TIMEOUT') return timeout(`body stalled for more than ${timeoutMs} ms`, url, e);
  if (code === 'ENOSPC' || code === 'EDQUOT') return toMediaCacheError(e, url);
  if (msg === 'max redirects' || /redirect loop/i.test(msg)) {
    return new MediaCacheError('E_HTTP', `too many redirects (${msg})`, { url, cause: e });
  }
  // The request URL was checked by parseMediaUrl, so a bad URL here came
  // from a redirect's Location.
  if (code === 'UND_ERR_INVALID_ARG' && /URL protocol/i.test(msg)) {
    return new MediaCacheError('E_UNSUPPORTED_SCHEME', 'redirected to a scheme other than http or https', { url, cause: e });
  }
  if (code === 'ERR_INVALID_URL') {
    return new MediaCacheError('E_HTTP', 'redirected to an invalid URL', { url, cause: e });
  }
  if (code && (code.startsWith('HPE_') || code.startsWith('ERR_TLS') || code.includes('CERT') || code === 'UND_ERR_PRX_TLS')) {
    return new MediaCacheError('E_NETWORK', `${code}: ${msg}`, { url, cause: e, retryable: false });
  }
  if (code && NETWORK_CODES.has(code)) {
    return new MediaCacheError('E_NETWORK', `${code}: ${msg}`, { url, cause: e, retryable: true });
  }
  return toMediaCacheError(e, url);
}

function timeout(msg: string, url: string, cause: unknown): MediaCacheError {
  return new MediaCacheError('E_TIMEOUT', msg, { url, cause, retryable: true });
}

/** The errno-like code of an error, its cause, or the first of an AggregateError (happy eyeballs). */
function errCode(e: unknown): string | undefined {
  for (let cur: unknown = e, depth = 0; cur && depth < 4; depth++) {
    const c = (cur as { code?: unknown }).code;
    if (typeof c === 'string') return c;
    const agg = (cur as { errors?: unknown }).errors;
    if (Array.isArray(agg) && agg.length) {
      const first = (agg[0] as { code?: unknown }).code;
      if (typeof first === 'string') return first;
    }
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}
