/**
 * The index journal's file format (index-db.ts has its role): JSON lines,
 * appended one batch per flush, each batch written by ONE write call.
 *
 *   {"v":2,"journal":true,"columns":[…]}   first line of the file
 *   ["md5",…]\t<crc32>                    a record as it now is (a row, as in shards)
 *   {"rm":"<md5>"}\t<crc32>               a removal (tombstone)
 *   {"commit":<n>,"crc":<crc32>}          end of batch: n entries, CRC-32 of every
 *                                         byte since the previous commit line (the
 *                                         first batch's CRC covers the header too)
 *
 * A batch counts only with its commit line, so a batch cut short by a crash
 * (its append was never acknowledged) is told apart from damage inside a
 * batch that was. Each entry line also carries its own checksum
 * (checkedLine): a batch that fails its check is never applied as read, but
 * its entries whose own checksum holds are (they are exactly what was
 * written); the others are counted as lost, and the caller repairs from the
 * files on disk. Format 1 (still read, never written) had no per-entry
 * checksums: there a batch that fails its check is skipped whole.
 */
import { crc32 } from 'node:zlib';
import { checkedLine, checkedLineEnd, COLUMNS, LEGACY_COLUMNS, isHex, md5Hint, parseRow } from './record-codec.js';
import type { StoredRecord } from '../types.js';

export const JOURNAL_FORMAT_VERSION = 2;

export const JOURNAL_HEADER = JSON.stringify({ v: JOURNAL_FORMAT_VERSION, journal: true, columns: COLUMNS });
/** Format 1 was written with the 13 columns of its time (no metadata or quota columns). */
const V1_HEADER = JSON.stringify({ v: 1, journal: true, columns: LEGACY_COLUMNS });

/** The journal payload of a removal. */
export function tombstoneLine(md5: string): string {
  return `{"rm":"${md5}"}`;
}

/**
 * One batch as bytes: the entries (row or tombstone payloads, each written
 * with its checksum), then the commit line; the header first when the batch
 * opens a new file.
 */
export function journalBatch(entries: readonly string[], withHeader: boolean): Buffer {
  const lines = new Array<string>(entries.length);
  for (let k = 0; k < entries.length; k++) lines[k] = checkedLine(entries[k]);
  const body = Buffer.from(`${withHeader ? `${JOURNAL_HEADER}\n` : ''}${lines.join('\n')}\n`, 'utf8');
  const commit = Buffer.from(`{"commit":${entries.length},"crc":${crc32(body)}}\n`, 'utf8');
  return Buffer.concat([body, commit], body.length + commit.length);
}

/** A journal entry as read back: a record put (validated, with its row), or the md5 of a removal. */
export type JournalEntry = { rec: StoredRecord; row: string; rm?: undefined } | { rm: string; rec?: undefined; row?: undefined };

/** What scanJournal found. */
export interface JournalScan {
  /** Bytes up to the end of the last committed batch: what a next append keeps. */
  validLength: number;
  /** Intact (committed, count and CRC right) batches. */
  batches: number;
  /** Entries handed to `apply`. */
  entries: number;
  /** Committed entries NOT applied: lines that failed their check, or (format 1) every entry of a batch that failed its check. */
  lost: number;
  /** md5s the lost lines seem to name (hints for logs, at most 20). */
  lostHints: string[];
  /** Bytes after the last commit line: an append cut short by a crash (ignored). */
  tornBytes: number;
  /** Format of the header (undefined: unreadable). Only a current-format journal may be appended to. */
  version: 1 | 2 | undefined;
  /** Why the journal is damaged (a line or batch that is not what was written), else undefined. */
  damaged?: string;
}

const LF = 10;
const MAX_HINTS = 20;

type Pending = { e: JournalEntry; checked: boolean } | { bad: string };

function entryOf(payload: string): JournalEntry | undefined {
  if (payload.charCodeAt(0) === 91 /* [ */) {
    const rec = parseRow(payload);
    return rec && { rec, row: payload };
  }
  let o: { rm?: unknown } | undefined;
  try {
    o = JSON.parse(payload) as typeof o;
  } catch {
    return undefined;
  }
  return o !== null && typeof o === 'object' && isHex(o.rm, 32) ? { rm: o.rm } : undefined;
}

function commitOf(line: string): { commit: number; crc: number } | undefined {
  if (!line.startsWith('{"commit":')) return undefined;
  try {
    const o = JSON.parse(line) as { commit?: unknown; crc?: unknown };
    if (Number.isInteger(o.commit) && Number.isInteger(o.crc)) return o as { commit: number; crc: number };
  } catch {
    // not a commit line
  }
  return undefined;
}

/**
 * Read a journal: the entries of every committed batch are handed to
 * `apply` in file order, except those that cannot be trusted. Rules:
 * - after the last commit line, complete entry lines followed by at most one
 *   incomplete line are the tail of an append a crash cut short (SIGKILL can
 *   stop a write between pages): never acknowledged, ignored, not damage;
 * - anything else that is not what the writer writes (an unreadable line or
 *   one failing its checksum, a commit whose count or CRC does not match, a
 *   wrong header) sets `damaged`. Of a batch that fails its check only the
 *   entries whose own checksum matches are applied (format 1: none); the
 *   rest count in `lost`. The caller decides what to do with the file.
 * Yields to the event loop every `sliceMs` of work (replaying a large
 * journal must not block the loop for long).
 */
export async function scanJournal(buf: Buffer, apply: (e: JournalEntry) => void, sliceMs = 10): Promise<JournalScan> {
  const out: JournalScan = { validLength: 0, batches: 0, entries: 0, lost: 0, lostHints: [], tornBytes: 0, version: undefined };
  const damage = (why: string, at: number): void => {
    out.damaged ??= `${why} at byte ${at}`;
  };
  let version: 1 | 2 | undefined;
  let batch: Pending[] = [];
  let batchStart = 0;
  let batchBad = false;
  let pos = 0;
  let lines = 0;
  let sliceStart = performance.now();
  for (;;) {
    const nl = buf.indexOf(LF, pos);
    if (nl < 0) break;
    // Checked on the bytes first: an intact entry line is decoded once, without its checksum.
    const tab = pos === 0 || version === 1 ? -1 : checkedLineEnd(buf, pos, nl);
    const payload = tab >= 0 ? buf.toString('utf8', pos, tab) : undefined;
    const line = payload === undefined ? buf.toString('utf8', pos, nl) : '';
    if (pos === 0) {
      version = line === JOURNAL_HEADER ? 2 : line === V1_HEADER ? 1 : undefined;
      if (version === undefined) {
        batchBad = true;
        damage('not a journal header', 0);
      }
    } else {
      const commit = payload === undefined ? commitOf(line) : undefined;
      if (payload !== undefined) {
        const e = entryOf(payload);
        if (e) batch.push({ e, checked: true });
        else {
          // Checksum right but not an entry: written by something else.
          batch.push({ bad: payload });
          batchBad = true;
          damage('invalid entry', pos);
        }
      } else if (commit) {
        const intact = !batchBad && commit.commit === batch.length && crc32(buf.subarray(batchStart, pos)) === commit.crc;
        if (!intact && !batchBad) damage(commit.commit === batch.length ? 'batch CRC mismatch' : 'batch entry count mismatch', pos);
        for (const p of batch) {
          if ('e' in p && (intact || p.checked)) {
            apply(p.e);
            out.entries++;
          } else {
            out.lost++;
            const hint = md5Hint('e' in p ? (p.e.row ?? tombstoneLine(p.e.rm!)) : p.bad);
            if (hint && out.lostHints.length < MAX_HINTS) out.lostHints.push(hint);
          }
        }
        // A batch that did not count as intact may have lost lines (count mismatch) we cannot see.
        if (!intact && commit.commit > batch.length) out.lost += commit.commit - batch.length;
        if (intact) out.batches++;
        // Even a damaged batch was committed: its end is where the next batch starts.
        out.validLength = nl + 1;
        batch = [];
        batchBad = false;
        batchStart = nl + 1;
      } else if (version === 1 || (version === undefined && !line.includes('\t'))) {
        // Format 1 entries have no checksum of their own: the batch's decides.
        const e = entryOf(line);
        if (e) batch.push({ e, checked: false });
        else {
          batch.push({ bad: line });
          batchBad = true;
          damage('unreadable line', pos);
        }
      } else {
        batch.push({ bad: line });
        batchBad = true;
        damage('entry checksum mismatch', pos);
      }
    }
    pos = nl + 1;
    if (++lines % 64 === 0 && performance.now() - sliceStart >= sliceMs) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
  if (batchBad) {
    // Not a torn append but damage (a commit line among them may be the
    // damaged line): keep what checks, as for a committed batch.
    for (const p of batch) {
      if ('e' in p && p.checked) {
        apply(p.e);
        out.entries++;
      } else if ('bad' in p) {
        out.lost++;
        const hint = md5Hint(p.bad);
        if (hint && out.lostHints.length < MAX_HINTS) out.lostHints.push(hint);
      }
    }
  }
  out.tornBytes = buf.length - out.validLength;
  out.version = version;
  return out;
}
