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
import { checkedLine, checkedLineEnd, COLUMNS, LEGACY_COLUMNS } from './record-codec.js';
import type { DataFormat } from '../util/durable-file.js';

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
/** Format 1 was written with the 13 columns of its time (no metadata or quota columns). */
const V1_HEADER = JSON.stringify({ v: 1, columns: LEGACY_COLUMNS });

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

const LF = 10;

function hasTab(buf: Buffer, start: number, end: number): boolean {
  const t = buf.indexOf(9, start);
  return t >= 0 && t < end;
}

/** Decode a shard file's bytes; never throws (damage is described in the result). */
export function decodeShard(buf: Buffer): ShardRead {
  const out: ShardRead = { rows: [], version: undefined, badLines: 0, missingRows: 0 };
  const damage = (why: string): void => {
    out.damaged ??= why;
  };
  const nl = buf.indexOf(LF);
  const h = readHeader(buf.toString('utf8', 0, nl < 0 ? buf.length : nl));
  out.version = h.version;
  if (h.version === undefined) damage('unreadable header');
  if (nl < 0) {
    if (buf.length > 0) damage('truncated shard (no complete line)');
    out.missingRows = h.expected ?? 0;
    return out;
  }
  let lines = 0;
  let pos = nl + 1;
  for (;;) {
    const end = buf.indexOf(LF, pos);
    if (end < 0) break;
    lines++;
    if (h.version === 1) out.rows.push(buf.toString('utf8', pos, end));
    else {
      const tab = checkedLineEnd(buf, pos, end);
      if (tab >= 0) out.rows.push(buf.toString('utf8', pos, tab));
      else if (h.version === undefined && buf[pos] === 91 /* [ */ && !hasTab(buf, pos, end)) {
        out.rows.push(buf.toString('utf8', pos, end)); // a format-1 row under a damaged header: validation decides
      } else {
        out.badLines++;
        damage('row checksum mismatch');
      }
    }
    pos = end + 1;
  }
  let partial = 0;
  if (pos < buf.length) {
    // A file cut short: its last line is incomplete (and not to be trusted
    // even when it happens to parse).
    partial = 1;
    out.badLines++;
    damage('truncated shard (no final newline)');
  }
  if (h.expected !== undefined) {
    const seen = lines + partial;
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
    const r = decodeShard(Buffer.from(text, 'utf8'));
    if (r.damaged) throw new Error(r.damaged);
    return { rows: r.rows };
  },
  stringify(data: ShardData): string {
    return encodeShard(data.rows);
  },
};
