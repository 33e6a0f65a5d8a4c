/**
 * Mapping HTTP responses and undici/Node errors onto the project's error codes
 * (and the response-header helpers that needs). Callers branch on `code` and
 * `retryable`, never on messages.
 */
import { MediaCacheError, toMediaCacheError } from '../errors.js';
import { parseRetryAfter } from './retry.js';

export type ResponseHeaders = Record<string, string | string[] | undefined>;

export function header(h: ResponseHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

export function contentLength(h: ResponseHeaders): number | undefined {
  const v = header(h, 'content-length');
  if (v === undefined || !/^\d+$/.test(v.trim())) return undefined;
  return Number(v.trim());
}

export function finalUrlOf(res: { context?: object }, fallback: string): string {
  const history = (res.context as { history?: unknown } | undefined)?.history;
  if (Array.isArray(history) && history.length > 0) {
    const last: unknown = history[history.length - 1];
    if (last instanceof URL) return last.href;
    if (typeof last === 'string') return last;
  }
  return fallback;
}

export function httpError(status: number, headers: ResponseHeaders, url: string): MediaCacheError {
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

/** Map an undici / Node error to the project's codes. */
export function classify(e: unknown, url: string, timeoutMs: number): MediaCacheError {
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
  if (isProtocolError(e, code)) {
    return new MediaCacheError('E_PROTOCOL', `the origin's reply is not valid HTTP/1.1: ${msg}`, { url, cause: e, retryable: false });
  }
  if (code && (code.startsWith('ERR_TLS') || code.includes('CERT') || code === 'UND_ERR_PRX_TLS')) {
    return new MediaCacheError('E_NETWORK', `${code}: ${msg}`, { url, cause: e, retryable: false });
  }
  if (code && NETWORK_CODES.has(code)) {
    return new MediaCacheError('E_NETWORK', `${code}: ${msg}`, { url, cause: e, retryable: true });
  }
  return toMediaCacheError(e, url);
}

/**
 * The origin answered, but not with HTTP/1.1 we can parse: llhttp's parser
 * errors (bad chunk size, Transfer-Encoding with Content-Length, a non-HTTP
 * status line; undici's HTTPParserError, whose code is often unset) and
 * headers beyond the parser's limit. The same request gets the same answer,
 * so these are the origin's fault and not retried.
 */
function isProtocolError(e: unknown, code: string | undefined): boolean {
  if (code && (code.startsWith('HPE_') || code === 'UND_ERR_HEADERS_OVERFLOW')) return true;
  for (let cur: unknown = e, depth = 0; cur && depth < 4; depth++) {
    if ((cur as { name?: unknown }).name === 'HTTPParserError') return true;
    cur = (cur as { cause?: unknown }).cause;
  }
  return false;
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
