/**
 * Parsing a `.urls` inbox file (SPEC, Inbox folders). Pure: text in, lines out.
 *
 * - A UTF-8 BOM at the start is dropped; LF, CRLF and lone CR all end a line.
 * - Each line is trimmed; blank lines and lines starting with `#` are skipped
 *   (not returned) so a report lists only what the writer meant as a URL.
 * - Every other line is returned with its 1-based line number in the file,
 *   either with the normalised `url` or with the `error` from parseMediaUrl
 *   (E_INVALID_URL / E_UNSUPPORTED_SCHEME). Bad lines are data, never fatal.
 * - Duplicates are kept (each line is reported); callers enqueue a URL once.
 */
import { MediaCacheError, type ErrorInfo } from '../errors.js';
import { parseMediaUrl } from '../fetch/url.js';

export interface UrlsLine {
  /** 1-based line number in the file. */
  line: number;
  /** The trimmed text of the line. */
  raw: string;
  /** Normalised href, when the line is a URL we fetch. */
  url?: string;
  error?: ErrorInfo;
}

export function parseUrlsFile(text: string): UrlsLine[] {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const out: UrlsLine[] = [];
  const lines = body.split(/\r\n|\n|\r/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].trim();
    if (raw === '' || raw.startsWith('#')) continue;
    out.push(parseLine(raw, i + 1));
  }
  return out;
}

function parseLine(raw: string, line: number): UrlsLine {
  try {
    return { line, raw, url: parseMediaUrl(raw).href };
  } catch (e) {
    const err = e instanceof MediaCacheError ? e : new MediaCacheError('E_INVALID_URL', `not a URL: ${String(e)}`);
    return { line, raw, error: err.toJSON() };
  }
}

/**
 * First line number of each distinct URL: a URL is enqueued once per file and
 * later duplicate lines share the first line's job.
 */
export function firstLines(lines: readonly UrlsLine[]): Map<string, number> {
  const first = new Map<string, number>();
  for (const l of lines) if (l.url !== undefined && !first.has(l.url)) first.set(l.url, l.line);
  return first;
}
