/**
 * One HTTP download into `.tmp/`: stream the body to a fresh file while
 * hashing (MD5 + SHA-256), sniffing the type from the first bytes and
 * reading image dimensions from a bounded head buffer. Never reads the file
 * back, and holds a whole body in memory only when asked to (`memoryMax`)
 * and its announced length is within that bound: such a body never touches
 * the disk here (the caller writes it in one go, see group-commit.ts).
 *
 * Invariant: `fetchToTmp` either resolves with a complete tmp file (or an
 * in-memory body) whose hashes, size and type are known, or rejects with a
 * MediaCacheError having removed its tmp file and consumed/destroyed the
 * response body. The one exception: a resumable partial (resume.ts)
 * interrupted by the network, a stall or an abort is kept, synced, for the
 * next attempt.
 */
import { close, fdatasync, ftruncate, open } from 'node:fs';
import { promisify } from 'node:util';
import path from 'node:path';
import type { Agent as AgentType, Dispatcher } from 'undici';
import { Agent, EnvHttpProxyAgent, redirectInterceptor } from './undici-parts.js';
import { MediaCacheError } from '../errors.js';
import type { Sniffed } from '../content/sniff.js';
import { markSynced, removeQuietly, tmpFileName } from '../content/store.js';
import { HashSink } from './sink.js';
import { noteReceived } from '../util/young-gc.js';
import { classify, contentLength, finalUrlOf, header, httpError, type ResponseHeaders } from './classify-error.js';
import {
  CHECKPOINT_BYTES,
  claimPartial,
  dropPartial,
  findPrior,
  parseContentRange,
  partialPaths,
  releasePartial,
  removeSidecar,
  replayPrefix,
  sidecarFor,
  worthResuming,
  writeSidecar,
  type PartialPaths,
  type Prior,
} from './resume.js';

const openAsync = promisify(open);
const ftruncateAsync = promisify(ftruncate);
const fdatasyncAsync = promisify(fdatasync);
const closeAsync = promisify(close);
/** Failures after which a resumable partial is kept for the next attempt (the rest start over). */
const KEEP_PARTIAL_ON = new Set(['E_NETWORK', 'E_TIMEOUT', 'E_ABORTED']);
import { policyConnector, policyInterceptor, type LookupFn } from './policy-dispatch.js';
import type { UrlPolicy } from './url-policy.js';

export interface FetchOptions {
  tmpDir: string;
  dispatcher: Dispatcher;
  /** Connect, headers and body-stall limit; the overall deadline derives from it. */
  timeoutMs: number;
  maxFileSize: number;
  signal?: AbortSignal;
  onProgress?: (bytes: number, total?: number) => void;
  headers?: Record<string, string>;
  /** The cache quota: content larger than this is refused with E_QUOTA. */
  quotaBytes?: number;
  /** Write large bodies resumably and continue an earlier partial (see resume.ts). */
  resumable?: boolean;
  /**
   * Keep a body whose content-length is at most this many bytes in memory
   * (Fetched.body) instead of writing it to `.tmp/` (default 0: never).
   */
  memoryMax?: number;
  /** Where an in-memory body is assembled (default: a buffer of its own). */
  bodyBuffer?: (size: number) => Buffer;
  /**
   * fdatasync the tmp file before resolving (default true). false: the
   * caller syncs it before publishing it (a group commit). A resumable
   * partial is always synced here (its sidecar promises the bytes).
   */
  sync?: boolean;
}

export interface Fetched {
  /** The tmp file; with `body`, only the name reserved for it (nothing was created). */
  tmpPath: string;
  /** The whole body, when it was kept in memory (see FetchOptions.memoryMax); owns its ArrayBuffer. */
  body?: Buffer;
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
  /** The body's leading bytes (up to 64 KiB, as collected for sniffing and image dimensions). */
  head?: Buffer;
  /** Bytes reused from an earlier partial (not fetched again), when the download was resumed. */
  resumedFrom?: number;
}

/**
 * Overall deadline: a download may take DEADLINE_FACTOR x timeoutMs, plus
 * one second per MIN_AVG_BYTES_PER_SEC received. A trickling origin (one
 * byte just inside every stall window) fails; a slow but real transfer of
 * a large file does not.
 */
const DEADLINE_FACTOR = 4;
const MIN_AVG_BYTES_PER_SEC = 16 * 1024;

export interface DispatcherOptions {
  timeoutMs: number;
  maxRedirects?: number;
  env?: NodeJS.ProcessEnv;
  /** Checked on every hop and on every resolved address (url-policy.ts); absent or permissive: no checks. */
  policy?: UrlPolicy;
  /** Name resolution for direct connections (default dns.lookup). */
  lookup?: LookupFn;
}

export function createDispatcher(opts: DispatcherOptions): Dispatcher {
  const { timeoutMs, maxRedirects = 5, env = process.env, policy } = opts;
  if (!(timeoutMs > 0)) throw new MediaCacheError('E_BAD_REQUEST', `timeoutMs must be a positive number of milliseconds, got ${timeoutMs}`);
  if (!(Number.isInteger(maxRedirects) && maxRedirects >= 0)) {
    throw new MediaCacheError('E_BAD_REQUEST', `maxRedirects must be a non-negative integer, got ${maxRedirects}`);
  }
  const checked = policy !== undefined && !policy.permitsAll;
  const agentOpts: AgentType.Options = {
    // With a policy, connecting resolves names through it (the proxy agents
    // keep their own connector for the proxy; the hop check below covers them).
    connect: checked ? policyConnector({ timeoutMs, policy, lookup: opts.lookup }) : opts.lookup ? { timeout: timeoutMs, lookup: opts.lookup } : { timeout: timeoutMs },
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
  // its own proxy/NO_PROXY decision, and outside the policy check, so every
  // hop is checked (compose: later interceptors wrap earlier ones).
  const redirect = redirectInterceptor({ maxRedirections: maxRedirects });
  return checked ? base.compose(policyInterceptor(policy), redirect) : base.compose(redirect);
}

export async function fetchToTmp(url: URL, opts: FetchOptions): Promise<Fetched> {
  const { signal } = opts;
  const href = url.href;
  if (signal?.aborted) throw new MediaCacheError('E_ABORTED', 'download aborted', { url: href });
  const claimed = opts.resumable === true && claimPartial(href);
  try {
    const prior = claimed ? await findPrior(opts.tmpDir, href) : undefined;
    const dl = new TmpDownload(url, opts, claimed, prior);
    signal?.addEventListener('abort', dl.onUserAbort, { once: true });
    try {
      return await dl.run();
    } finally {
      signal?.removeEventListener('abort', dl.onUserAbort);
    }
  } finally {
    if (claimed) releasePartial(href);
  }
}

/** Error bodies up to this size are read to the end so the connection can be reused. */
const ERROR_BODY_DRAIN = 64 * 1024;

/**
 * One transfer, driven by undici's dispatch handler callbacks: the body's
 * chunks go straight into the HashSink, with no Readable stream and no
 * promise per chunk in between (for thousands of small files that layer cost
 * about a third of undici's time per request). Backpressure: when the sink's
 * buffer is full the transfer is paused and resumed on 'drain'.
 *
 * Settles exactly once: `finish` resolves, `fail` rejects (first reason wins:
 * our own reasons to stop, user abort or deadline, beat whatever error undici
 * reports as a consequence of the abort).
 */
class TmpDownload implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private context: object | undefined;
  private failure: MediaCacheError | undefined;
  private settled = false;
  private resolve!: (f: Fetched) => void;
  private reject!: (e: MediaCacheError) => void;
  private readonly started = Date.now();
  private deadlineTimer: NodeJS.Timeout | undefined;
  /** Set once the response is known good and the tmp file is being opened. */
  private tmpPath: string | undefined;
  /** Resolves when the open of tmpPath has completed (either way). */
  private opening: Promise<void> | undefined;
  private fd: number | undefined;
  private sink: HashSink | undefined;
  /** Chunks that arrived while the tmp file was still opening (at most what one socket read delivered). */
  private early: Buffer[] | undefined;
  private ended = false;
  /** The body is kept in memory (no tmp file): see FetchOptions.memoryMax. */
  private memory = false;
  /** The tmp file was fdatasynced here. */
  private synced = false;
  private headers: ResponseHeaders = {};
  private total: number | undefined;
  /** Non-2xx: the error already reported; the body is being drained (up to ERROR_BODY_DRAIN). */
  private httpErr: MediaCacheError | undefined;
  private drained = 0;
  /** Set when the body is written resumably (its partial and sidecar). */
  private partial: PartialPaths | undefined;
  /** Leading bytes reused from the partial (0 for a fresh download). */
  private resumedFrom = 0;
  /** Bytes of the partial before this attempt's first write (its kept prefix). */
  private base = 0;
  private validators: { etag?: string; lastModified?: string } = {};
  private nextCheckpoint = Infinity;
  private checkpointing: Promise<void> | undefined;

  constructor(
    private readonly url: URL,
    private readonly o: FetchOptions,
    /** This fetch holds the URL's resumable slot. */
    private readonly claimed = false,
    /** A partial an earlier attempt left, to continue with Range + If-Range. */
    private readonly prior?: Prior,
  ) {}

  readonly onUserAbort = (): void => this.fail(new MediaCacheError('E_ABORTED', 'download aborted', { url: this.url.href }));

  run(): Promise<Fetched> {
    const { timeoutMs } = this.o;
    const done = new Promise<Fetched>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.deadlineTimer = setTimeout(this.checkDeadline, DEADLINE_FACTOR * timeoutMs);
    this.deadlineTimer.unref();
    try {
      this.o.dispatcher.dispatch(
        {
          origin: this.url.origin,
          path: this.url.pathname + this.url.search,
          method: 'GET',
          headers: {
            'accept-encoding': 'identity',
            'user-agent': 'mediacache',
            ...(this.prior ? { range: `bytes=${this.prior.offset}-`, 'if-range': this.prior.ifRange } : {}),
            ...(this.o.headers ?? {}),
          },
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
          // Per request: the option on redirect({...}) is ignored (undici's redirect interceptor).
          throwOnMaxRedirect: true,
        } as Dispatcher.DispatchOptions,
        this,
      );
    } catch (e) {
      this.fail(classify(e, this.url.href, timeoutMs));
    }
    return done;
  }

  /**
   * Overall deadline: DEADLINE_FACTOR x timeoutMs, plus one second per
   * MIN_AVG_BYTES_PER_SEC received, so a trickling origin fails and a slow
   * but real transfer of a large file does not.
   */
  private readonly checkDeadline = (): void => {
    const allowedUntil = this.started + DEADLINE_FACTOR * this.o.timeoutMs + ((this.sink?.bytes ?? 0) * 1000) / MIN_AVG_BYTES_PER_SEC;
    const now = Date.now();
    if (now >= allowedUntil) {
      const secs = Math.round((now - this.started) / 1000);
      this.fail(new MediaCacheError('E_TIMEOUT', `download exceeded its overall deadline (${secs} s)`, { url: this.url.href, retryable: true }));
    } else {
      this.deadlineTimer = setTimeout(this.checkDeadline, allowedUntil - now + 5);
      this.deadlineTimer.unref();
    }
  };

  // ------------------------------------------------------------ undici callbacks

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.controller = controller;
    if (context && typeof context === 'object') this.context = context;
    if (this.failure) controller.abort(this.failure);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: ResponseHeaders): void {
    this.controller = controller;
    if (statusCode < 200 || this.settled) return; // 1xx informational: the real answer follows
    this.headers = headers;
    const href = this.url.href;
    if (statusCode === 416 && this.prior) {
      // The kept offset is past what the origin has now: start over.
      void dropPartial(this.prior);
      this.fail(new MediaCacheError('E_HTTP', 'HTTP 416 to a resumed download; starting over', { status: 416, url: href, retryable: true }));
      return;
    }
    if (statusCode > 299) {
      // Answer now; keep reading a small error body (onResponseData) so the
      // connection can be reused, and drop the connection for a big one.
      this.httpErr = httpError(statusCode, headers, finalUrlOf({ context: this.context }, href));
      this.fail(this.httpErr, false);
      return;
    }
    let offset = 0;
    if (statusCode === 206) {
      const cr = parseContentRange(header(headers, 'content-range'));
      const prior = this.prior;
      if (!prior || !cr || cr.start !== prior.offset || cr.total !== prior.total) {
        // Not the range asked for: start over on the next attempt.
        if (prior) void dropPartial(prior);
        this.fail(new MediaCacheError('E_NETWORK', `unexpected partial content (${header(headers, 'content-range') ?? 'no Content-Range'}); starting over`, { url: href, retryable: true }));
        return;
      }
      offset = cr.start;
      this.total = cr.total;
    } else {
      this.total = contentLength(headers);
    }
    if (this.total !== undefined && this.total > this.o.maxFileSize) {
      this.fail(new MediaCacheError('E_TOO_LARGE', `content-length ${this.total} exceeds the limit of ${this.o.maxFileSize} bytes`, { url: href }));
      return;
    }
    if (this.total !== undefined && this.o.quotaBytes !== undefined && this.total > this.o.quotaBytes) {
      this.fail(new MediaCacheError('E_QUOTA', `content-length ${this.total} is more than the whole cache quota of ${this.o.quotaBytes} bytes`, { url: href }));
      return;
    }
    const etag = header(headers, 'etag') ?? (offset > 0 ? this.prior?.sidecarData.etag : undefined);
    const lastModified = header(headers, 'last-modified') ?? (offset > 0 ? this.prior?.sidecarData.lastModified : undefined);
    this.validators = { ...(etag ? { etag } : {}), ...(lastModified ? { lastModified } : {}) };
    const resumable = offset > 0 || (this.claimed && worthResuming(this.total, this.validators));
    if (offset === 0 && this.total !== undefined && this.total <= (this.o.memoryMax ?? 0)) {
      // Small and announced: kept in memory, no file yet (and nothing to open first).
      if (this.prior) void dropPartial(this.prior).catch(() => undefined);
      this.memory = true;
      this.sink = this.newSink(undefined);
      return;
    }
    // Hold the body until the tmp file is open; nothing is created for error responses.
    controller.pause();
    this.early = [];
    this.opening = this.openTmp(offset, resumable).catch((e: unknown) => this.fail(classify(e, href, this.o.timeoutMs)));
  }

  /**
   * Open the tmp file: a fresh `<pid>-<uuid>.part`, or the URL's resumable
   * partial (truncated to the kept offset, whose bytes are then re-hashed
   * from disk); then feed the chunks that came meanwhile.
   */
  private async openTmp(offset: number, resumable: boolean): Promise<void> {
    const href = this.url.href;
    let tmpPath: string;
    let flags: string;
    if (resumable) {
      this.partial = this.prior ?? partialPaths(this.o.tmpDir, href);
      tmpPath = this.partial.part;
      // Append mode after the cut: writes continue at the end of the kept prefix.
      flags = offset > 0 ? 'a' : 'w';
    } else {
      // The origin no longer allows a resume (200 instead of 206, validator gone): start clean.
      if (this.prior) await dropPartial(this.prior);
      tmpPath = path.join(this.o.tmpDir, tmpFileName());
      flags = 'wx';
    }
    this.tmpPath = tmpPath;
    let fd: number;
    try {
      fd = await openAsync(tmpPath, flags);
    } catch (err) {
      this.tmpPath = undefined; // not ours: never remove a file we did not create
      this.partial = undefined;
      return this.fail(classify(err, href, this.o.timeoutMs));
    }
    this.fd = fd;
    if (this.settled) return; // fail() is waiting on `opening` to close and remove it
    if (this.partial) {
      if (offset > 0) await ftruncateAsync(fd, offset);
      this.base = offset;
      await writeSidecar(this.partial, sidecarFor(href, this.validators, this.total!, offset));
      this.nextCheckpoint = offset + CHECKPOINT_BYTES;
    }
    const sink = this.newSink(fd);
    if (offset > 0) {
      await replayPrefix(tmpPath, offset, (chunk, cb) => (this.settled ? cb(new Error('stopped')) : sink.prime(chunk, cb)));
      this.resumedFrom = offset;
    }
    if (this.settled) return;
    const early = this.early ?? [];
    this.early = undefined;
    let full = false;
    for (const c of early) full = !sink.write(c) || full;
    if (this.ended) sink.end(this.onSinkFinished);
    else if (!full) this.controller?.resume();
  }

  /** fdatasync what has landed and record it in the sidecar: a crash costs at most CHECKPOINT_BYTES again. */
  private checkpoint(): void {
    const sink = this.sink;
    const fd = this.fd;
    const partial = this.partial;
    if (this.checkpointing || !sink || fd === undefined || !partial) return;
    const durable = this.base + sink.written;
    this.nextCheckpoint = sink.bytes + CHECKPOINT_BYTES;
    this.checkpointing = (async () => {
      await fdatasyncAsync(fd);
      await writeSidecar(partial, sidecarFor(this.url.href, this.validators, this.total!, durable));
    })()
      .catch(() => undefined) // a missed checkpoint only means more to fetch again after a crash
      .finally(() => (this.checkpointing = undefined));
  }

  private newSink(fd: number | undefined): HashSink {
    const href = this.url.href;
    const sink = new HashSink(fd, { maxFileSize: this.o.maxFileSize, url: href, total: this.total, onProgress: this.o.onProgress, quotaBytes: this.o.quotaBytes });
    this.sink = sink;
    sink.on('error', (e: Error) => this.fail(classify(e, href, this.o.timeoutMs)));
    sink.on('drain', () => this.controller?.resume());
    return sink;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.httpErr) {
      this.drained += chunk.length;
      if (this.drained > ERROR_BODY_DRAIN && !controller.aborted) controller.abort(this.httpErr);
      return;
    }
    if (this.settled) return;
    noteReceived(chunk.length);
    if (this.early) {
      this.early.push(chunk);
      controller.pause();
      return;
    }
    if (this.sink && !this.sink.write(chunk)) controller.pause();
    if (this.partial && this.sink && this.sink.bytes >= this.nextCheckpoint) this.checkpoint();
  }

  onResponseEnd(): void {
    if (this.settled) return;
    this.ended = true;
    if (this.sink) this.sink.end(this.onSinkFinished);
    // else: the tmp file is still opening; its callback ends the sink
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    this.fail(classify(err, this.url.href, this.o.timeoutMs));
  }

  // ------------------------------------------------------------ completion

  private readonly onSinkFinished = (): void => {
    const sink = this.sink;
    const fd = this.fd;
    if (this.settled || !sink || (fd === undefined && !this.memory)) return;
    // sink 'error' settles through fail(); 'finish' only after every write landed
    if (sink.errored) return;
    const href = this.url.href;
    if (this.total !== undefined && sink.bytes !== this.total) {
      return this.fail(new MediaCacheError('E_NETWORK', `body ended after ${sink.bytes} of ${this.total} bytes`, { url: href, retryable: true }));
    }
    if (fd === undefined) return this.finish(sink);
    const closeAndFinish = (): void => {
      this.fd = undefined;
      close(fd, (cerr) => {
        if (cerr) return this.fail(classify(cerr, href, this.o.timeoutMs));
        if (this.settled) return;
        if (!this.partial) return this.finish(sink);
        // Complete: the sidecar goes (the part file is renamed into place by the commit).
        removeSidecar(this.partial).then(() => !this.settled && this.finish(sink), () => !this.settled && this.finish(sink));
      });
    };
    // Durable before anyone can rename it into place; done here on the open
    // fd so commitTmp does not have to reopen the file (see store.markSynced).
    // With sync: false the group commit syncs it before the rename instead.
    const syncAndClose = (): void => {
      if (this.o.sync === false) return closeAndFinish();
      fdatasync(fd, (err) => {
        if (err) return this.fail(classify(err, href, this.o.timeoutMs));
        if (this.settled) return;
        this.synced = true;
        closeAndFinish();
      });
    };
    if (this.checkpointing) void this.checkpointing.then(syncAndClose);
    else syncAndClose();
  };

  private finish(sink: HashSink): void {
    let out: Fetched;
    try {
      const tmpPath = this.tmpPath ?? path.join(this.o.tmpDir, tmpFileName());
      if (this.synced) markSynced(tmpPath);
      const r = sink.result();
      const h = this.headers;
      out = { tmpPath, md5: r.md5, sha256: r.sha256, size: sink.bytes, sniffed: r.sniffed, finalUrl: finalUrlOf({ context: this.context }, this.url.href) };
      if (this.memory) out.body = sink.body(this.o.bodyBuffer);
      if (r.dims) {
        out.width = r.dims.width;
        out.height = r.dims.height;
      }
      // The whole body serves the metadata reader from memory.
      if (out.body) out.head = out.body;
      else if (r.head) out.head = r.head;
      const etag = header(h, 'etag');
      const lastModified = header(h, 'last-modified');
      const contentType = header(h, 'content-type');
      if (etag !== undefined) out.etag = etag;
      if (lastModified !== undefined) out.lastModified = lastModified;
      if (contentType !== undefined) out.contentType = contentType;
      if (this.resumedFrom > 0) out.resumedFrom = this.resumedFrom;
    } catch (e) {
      return this.fail(classify(e, this.url.href, this.o.timeoutMs));
    }
    this.settled = true;
    clearTimeout(this.deadlineTimer);
    this.resolve(out);
  }

  /**
   * Stop the transfer (unless `abort` is false: an error body being
   * drained), remove the tmp file, reject (once; the first reason wins).
   */
  private fail(err: MediaCacheError, abort = true): void {
    if (this.settled) return;
    this.settled = true;
    this.failure = err;
    clearTimeout(this.deadlineTimer);
    if (abort && this.controller && !this.controller.aborted) {
      try {
        this.controller.abort(err);
      } catch {
        // already finished
      }
    }
    this.sink?.destroy();
    this.cleanup(err).then(
      () => this.reject(err),
      () => this.reject(err),
    );
  }

  /**
   * Close and remove the tmp file, if any, once its open and any write in
   * flight have completed. A resumable partial interrupted by the network, a
   * stall or an abort is kept instead (synced, its sidecar saying how much).
   */
  private async cleanup(err: MediaCacheError): Promise<void> {
    await this.opening;
    await this.sink?.whenIdle();
    await this.checkpointing;
    const fd = this.fd;
    this.fd = undefined;
    const partial = this.partial;
    if (partial && fd !== undefined && this.sink && KEEP_PARTIAL_ON.has(err.code)) {
      try {
        await fdatasyncAsync(fd);
        await writeSidecar(partial, sidecarFor(this.url.href, this.validators, this.total!, this.base + this.sink.written));
        await closeAsync(fd);
        return;
      } catch {
        // Cannot keep it reliably: start over next time.
      }
    }
    if (fd !== undefined) await new Promise<void>((r) => close(fd, () => r()));
    if (partial) await dropPartial(partial);
    else if (this.tmpPath) await removeQuietly(this.tmpPath);
  }
}
