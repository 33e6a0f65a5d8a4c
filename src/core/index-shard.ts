/**
 * The shard file format of the index: `records/xx.jsonl`, JSON lines.
 *
 *   {"v":2,"columns":[…],"rows":N}     header: format, column order, row count
 *   ["<md5>",…]\t<crc32>               one record per line (index-record.ts:
 *                                      the row codec and checkedLine)
 *
 * Format 1 (still read, never written) had no row count and no per-row
 * checksums. Writing a shard is a join of its rows: no stringify of the
 * whole shard.
 *
 * Reading salvages: one damaged byte or a cut-off tail costs the rows it
 * touched, never the shard. A row is kept when its checksum matches (format
 * 2) or, in a format-1 file, when it parses and validates (the index
 * validates every row it takes). What could not be read is counted, so the
 * caller can report it: lines that failed their check, the partial last line
 * of a truncated file, and rows the header counts that are not there at all
 * (a file cut exactly at a line end).
 */
import { checkedLine, checkedPayload, COLUMNS } from './index-record.js';
import type { DataFormat } from './durable-file.js';

export const SHARD_FORMAT_VERSION = 2;

/** One shard as written: its rows (each a record's compact JSON, without checksum). */
export interface ShardData {
  rows: string[];
}

/** One shard as read back. */
export interface ShardRead {
  /** Row payloads whose checksum matched (format 1: every complete line); not yet validated as records. */
  rows: string[];
  /** Format of the header, undefined when the header is unreadable. */
  version: 1 | 2 | undefined;
  /** Lines that could not be read (checksum mismatch, cut short). */
  badLines: number;
  /** Rows the header counts that are missing from the file (truncated at a line end). */
  missingRows: number;
  /** The first problem found, when there is one. */
  damaged?: string;
}

const COLUMNS_JSON = JSON.stringify(COLUMNS);
const V1_HEADER = JSON.stringify({ v: 1, columns: COLUMNS });

function header(rows: number): string {
  return `{"v":${SHARD_FORMAT_VERSION},"columns":${COLUMNS_JSON},"rows":${rows}}`;
}

export function encodeShard(rows: readonly string[]): string {
  if (rows.length === 0) return `${header(0)}\n`;
  const lines = new Array<string>(rows.length);
  for (let k = 0; k < rows.length; k++) lines[k] = checkedLine(rows[k]);
  return `${header(rows.length)}\n${lines.join('\n')}\n`;
}

function readHeader(line: string): { version: 1 | 2 | undefined; expected?: number } {
  if (line === V1_HEADER) return { version: 1 };
  try {
    const h = JSON.parse(line) as { v?: unknown; columns?: unknown; rows?: unknown };
    if (h.v === 2 && JSON.stringify(h.columns) === COLUMNS_JSON && Number.isSafeInteger(h.rows) && (h.rows as number) >= 0) {
      return { version: 2, expected: h.rows as number };
    }
  } catch {
    // unreadable header: the rows may still be
  }
  return { version: undefined };
}

/** Decode a shard file; never throws (damage is described in the result). */
export function decodeShard(text: string): ShardRead {
  const out: ShardRead = { rows: [], version: undefined, badLines: 0, missingRows: 0 };
  const damage = (why: string): void => {
    out.damaged ??= why;
  };
  const nl = text.indexOf('\n');
  const h = readHeader(nl < 0 ? text : text.slice(0, nl));
  out.version = h.version;
  if (h.version === undefined) damage('unreadable header');
  if (nl < 0) {
    if (text.length > 0) damage('truncated shard (no complete line)');
    out.missingRows = h.expected ?? 0;
    return out;
  }
  let body = text.slice(nl + 1);
  let partial = 0;
  if (!body.endsWith('\n') && body.length > 0) {
    // A file cut short: its last line is incomplete (and not to be trusted
    // even when it happens to parse).
    const last = body.lastIndexOf('\n');
    body = last < 0 ? '' : body.slice(0, last + 1);
    partial = 1;
    out.badLines++;
    damage('truncated shard (no final newline)');
  }
  const lines = body === '' ? [] : body.slice(0, -1).split('\n');
  for (const line of lines) {
    if (h.version === 1) {
      out.rows.push(line);
      continue;
    }
    const payload = checkedPayload(line);
    if (payload !== undefined) out.rows.push(payload);
    else if (h.version === undefined && line.charCodeAt(0) === 91 /* [ */ && !line.includes('\t')) {
      out.rows.push(line); // a format-1 row under a damaged header: validation decides
    } else {
      out.badLines++;
      damage('row checksum mismatch');
    }
  }
  if (h.expected !== undefined) {
    const seen = lines.length + partial;
    if (seen < h.expected) {
      out.missingRows = h.expected - seen;
      damage(`${out.missingRows} row(s) missing (file cut short)`);
    } else if (seen > h.expected) {
      damage(`${seen - h.expected} more row(s) than the header counts`);
    }
  }
  return out;
}

/**
 * The lowdb format of a shard (for writing through a Low; reading goes
 * through decodeShard, which salvages). parse() throws on any damage.
 */
export const SHARD_FORMAT: DataFormat<ShardData> = {
  parse(text: string): ShardData {
    const r = decodeShard(text);
    if (r.damaged) throw new Error(r.damaged);
    return { rows: r.rows };
  },
  stringify(data: ShardData): string {
    return encodeShard(data.rows);
  },
};
