/**
 * Turning user input into a URL we are willing to fetch. Pure: no IO, no DNS.
 *
 * Invariant: whatever this returns is an absolute http: or https: URL with a
 * host, so the downloader never has to re-check the scheme.
 */
import { MediaCacheError } from '../errors.js';

/** Longer inputs are not URLs anyone typed; refuse them before parsing. */
const MAX_URL_LENGTH = 8192;

const ALLOWED_PROTOCOLS = new Set(['http:', 'https:']);

export function parseMediaUrl(input: string): URL {
  if (typeof input !== 'string') {
    throw new MediaCacheError('E_INVALID_URL', `not a URL: expected a string, got ${typeof input}`);
  }
  const s = input.trim();
  if (s === '') throw new MediaCacheError('E_INVALID_URL', 'empty URL');
  if (s.length > MAX_URL_LENGTH) {
    throw new MediaCacheError('E_INVALID_URL', `URL longer than ${MAX_URL_LENGTH} characters`);
  }
  // WHATWG parsing silently drops interior tabs/newlines and percent-encodes
  // spaces in paths; in a .urls line or a CLI argument those mean the input is
  // not one URL (two glued together, a pasted paragraph), so refuse them.
  if (/[\s\x00-\x1f\x7f]/.test(s)) {
    throw new MediaCacheError('E_INVALID_URL', `not a URL (contains whitespace or control characters): ${preview(s)}`);
  }
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    const hint = /^[a-z][a-z0-9+.-]*:/i.test(s) ? '' : ' (missing http:// or https://?)';
    throw new MediaCacheError('E_INVALID_URL', `not a URL: ${preview(s)}${hint}`);
  }
  // "localhost:8080/x" parses as scheme "localhost:"; it is a URL missing its
  // scheme, not a request for an exotic protocol.
  if (/^[^:/?#]+:\d+(?:[/?#]|$)/.test(s)) {
    throw new MediaCacheError('E_INVALID_URL', `not a URL: ${preview(s)} (missing http:// or https://?)`);
  }
  if (!ALLOWED_PROTOCOLS.has(url.protocol)) {
    throw new MediaCacheError(
      'E_UNSUPPORTED_SCHEME',
      `unsupported scheme "${url.protocol.replace(/:$/, '')}" (only http and https): ${preview(s)}`,
      { url: s },
    );
  }
  // Special schemes always get a host from the WHATWG parser or throw, but
  // keep the invariant explicit rather than relying on that.
  if (url.hostname === '') {
    throw new MediaCacheError('E_INVALID_URL', `URL has no host: ${preview(s)}`);
  }
  return url;
}

function preview(s: string): string {
  return JSON.stringify(s.length > 120 ? `${s.slice(0, 117)}...` : s);
}
