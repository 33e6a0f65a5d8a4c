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
import path from 'node:path';
import { Agent, EnvHttpProxyAgent, interceptors, request, type Dispatcher } from 'undici';
import { MediaCacheError } from './errors.js';
import type { Sniffed } from './sniff.js';
import { markSynced, removeQuietly, tmpFileName } from './store.js';
import { HashSink, pump } from './download-sink.js';
import { classify, contentLength, finalUrlOf, header, httpError } from './download-errors.js';

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
const BODY_HIGH_WATER = 256 * 1024;

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

    tmpPath = path.join(tmpDir, tmpFileName());
    fh = await fs.open(tmpPath, 'wx');
    sink = new HashSink(fh.fd, { maxFileSize, url: href, total, onProgress });
    // The signal ends the pump too: a deadline or abort that fires after the body
    // already failed has no stream event left to wake it.
    await pump(body, sink, ac.signal);
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
