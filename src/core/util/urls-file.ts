/**
 * Parsing a `.urls` inbox file.
 *
 * - A UTF-8 BOM at the start is dropped; LF, CRLF and lone CR all end a line.
 * - Each line is trimmed; blank lines and lines starting with `#` are skipped
 *   (not returned) so a report lists only what the writer meant as a URL.
 * - Every other line is returned with its 1-based line number in the file,
 *   either with the normalised `url` or with the `error` from parseMediaUrl
 *   (E_INVALID_URL / E_UNSUPPORTED_SCHEME). Bad lines are data, never fatal.
 * - Duplicates are kept (each line is reported); callers enqueue a URL once.
 *
 * UrlsLineSplitter does the same incrementally, chunk by chunk, so a file of
 * any size is read with bounded memory: a line longer than MAX_LINE_CHARS is
 * not accumulated, only its start is kept and it is reported as too long.
 */
import { StringDecoder } from 'node:string_decoder';
import { MediaCacheError, type ErrorInfo } from '../errors.js';
import { parseMediaUrl } from '../fetch/url.js';

/** Longest line taken as a URL candidate; longer lines are invalid and never held whole. */
export const MAX_LINE_CHARS = 65_536;
/** How much of a line that is not a URL is ever echoed (reports, logs, batch state). */
export const ECHO_CHARS = 80;

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
  const out: UrlsLine[] = [];
  const s = new UrlsLineSplitter((raw, line, tooLong) => out.push(parseUrlsLine(raw, line, tooLong)));
  s.pushText(text);
  s.end();
  return out;
}

/** Parse one kept (non-blank, non-comment, trimmed) line. */
export function parseUrlsLine(raw: string, line: number, tooLong = false): UrlsLine {
  if (tooLong) {
    return { line, raw, error: { code: 'E_INVALID_URL', message: `line longer than ${MAX_LINE_CHARS} characters` } };
  }
  try {
    return { line, raw, url: parseMediaUrl(raw).href };
  } catch (e) {
    const err = e instanceof MediaCacheError ? e : new MediaCacheError('E_INVALID_URL', `not a URL: ${String(e)}`);
    return { line, raw, error: err.toJSON() };
  }
}

/**
 * Splits a stream of text into the lines a `.urls` file means, calling
 * `onLine(trimmed, lineNumber, tooLong)` for every non-blank, non-comment
 * line. Feed bytes with push() (UTF-8, split anywhere) or text with
 * pushText(), then end(). Memory: one line of at most MAX_LINE_CHARS.
 */
export class UrlsLineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private cur = '';
  private curLen = 0;
  private lineNo = 0;
  private atStart = true;
  /** The previous chunk ended with CR: a LF at the start of the next one belongs to it. */
  private afterCr = false;

  constructor(private readonly onLine: (raw: string, line: number, tooLong: boolean) => void) {}

  push(bytes: Buffer): void {
    this.pushText(this.decoder.write(bytes));
  }

  pushText(text: string): void {
    let s = text;
    if (this.atStart && s.length > 0) {
      this.atStart = false;
      if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
    }
    let i = 0;
    if (this.afterCr && s.length > 0) {
      this.afterCr = false;
      if (s.charCodeAt(0) === 0x0a) i = 1;
    }
    const n = s.length;
    while (i < n) {
      let j = i;
      while (j < n) {
        const c = s.charCodeAt(j);
        if (c === 0x0a || c === 0x0d) break;
        j++;
      }
      this.append(s, i, j);
      if (j === n) break;
      this.endLine();
      if (s.charCodeAt(j) === 0x0d) {
        if (j + 1 === n) this.afterCr = true;
        else if (s.charCodeAt(j + 1) === 0x0a) j++;
      }
      i = j + 1;
    }
  }

  end(): void {
    this.pushText(this.decoder.end());
    if (this.curLen > 0) this.endLine();
  }

  /** Lines seen so far (kept or not). */
  get lines(): number {
    return this.lineNo;
  }

  private append(s: string, from: number, to: number): void {
    if (to <= from) return;
    const room = MAX_LINE_CHARS + 1 - this.cur.length;
    // Copy (not slice) so a kept line never pins the whole chunk it came from.
    if (room > 0) this.cur += s.slice(from, Math.min(to, from + room));
    this.curLen += to - from;
  }

  private endLine(): void {
    this.lineNo++;
    const tooLong = this.curLen > MAX_LINE_CHARS;
    const raw = (tooLong ? this.cur.slice(0, MAX_LINE_CHARS) : this.cur).trim();
    this.cur = '';
    this.curLen = 0;
    if (raw === '' || raw.startsWith('#')) return;
    this.onLine(tooLong ? raw : flatCopy(raw), this.lineNo, tooLong);
  }
}

/** A string that shares no storage with the chunk it was cut from. */
function flatCopy(s: string): string {
  return s.length > 0 ? (' ' + s).slice(1) : s;
}

/**
 * What may be echoed of a line that is not a URL: at most `max` characters,
 * control and format characters (C0, DEL, C1, line/paragraph separators,
 * bidi controls) escaped, and an ellipsis when cut. Never the whole line.
 */
export function echoPrefix(raw: string, max = ECHO_CHARS): string {
  let out = '';
  let n = 0;
  let used = 0;
  for (const ch of raw.slice(0, max * 2)) {
    if (n >= max) break;
    const cp = ch.codePointAt(0)!;
    const bad = cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp === 0x2028 || cp === 0x2029 || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp === 0xfeff || cp === 0x5c;
    out += bad ? (cp === 0x5c ? '\\\\' : cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`) : ch;
    n++;
    used += ch.length;
  }
  return used < raw.length ? `${out}…` : out;
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
