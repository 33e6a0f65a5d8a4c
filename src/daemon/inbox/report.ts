/**
 * The per-file report of an inbox batch: `processed/<name>.report.tsv`.
 *
 * One header line, then one row per non-blank, non-comment line of the file,
 * in file order: line number, URL (the normalised URL, or an escaped prefix
 * of at most ECHO_CHARS characters of an invalid line), outcome (done |
 * failed | invalid), md5 or error code. A refused file (not a regular file,
 * over a cap) has a single row: line 0, the reason, `refused`, the code.
 *
 * Written atomically (tmp + fsync + rename) and streamed, so a reader never
 * sees half a report and a million-row report never sits in memory as one
 * string. Mode 0640 whatever the umask: who may read it is
 * decided by the inbox folder's own mode (a shared inbox's group sees the
 * reports of what it dropped).
 */
import path from 'node:path';
import type { ErrorCode } from '../../core/errors.js';
import { redactUrl } from '../../core/util/redact.js';
import type { JobInfo } from '../../core/protocol/rpc.js';
import { writeChunksDurable } from '../../core/util/durable-chunks.js';
import type { BatchRecord } from '../jobs/job-store.js';

export const REPORT_HEADER = 'line\turl\toutcome\tresult';
export const REPORT_SUFFIX = '.report.tsv';
export const REPORT_MODE = 0o640;

export type ReportOutcome = 'done' | 'failed' | 'invalid' | 'refused';

export interface ReportRow {
  line: number;
  url: string;
  outcome: ReportOutcome;
  /** md5 for done, error code otherwise. */
  result: string;
}

/** Tabs and line breaks inside a field would break the TSV shape. */
function cell(s: string): string {
  return s.replace(/[\t\r\n]+/g, ' ');
}

export function* reportRows(b: Pick<BatchRecord, 'lines' | 'refused'>, jobOf: (id: string) => JobInfo | undefined): Generator<ReportRow> {
  if (b.refused) {
    yield { line: 0, url: b.refused.reason, outcome: 'refused', result: b.refused.code };
    return;
  }
  for (const [line, raw, jobId, code] of b.lines) {
    if (!jobId) {
      yield { line, url: raw, outcome: 'invalid', result: code ?? 'E_INVALID_URL' };
      continue;
    }
    const j = jobOf(jobId);
    if (j?.state === 'done' && j.md5) {
      yield { line, url: j.url, outcome: 'done', result: j.md5 };
      continue;
    }
    const err: ErrorCode = j?.error?.code ?? 'E_UNAVAILABLE';
    yield { line, url: j?.url ?? raw, outcome: 'failed', result: err };
  }
}

function formatRow(r: ReportRow): string {
  return `${r.line}\t${cell(redactUrl(r.url))}\t${r.outcome}\t${cell(r.result)}\n`;
}

export function formatReport(rows: Iterable<ReportRow>): string {
  let out = `${REPORT_HEADER}\n`;
  for (const r of rows) out += formatRow(r);
  return out;
}

/** Parse a report back (tests, tools); the inverse of formatReport. */
export function parseReport(text: string): ReportRow[] {
  const lines = text.split('\n').filter((l) => l !== '');
  if (lines[0] !== REPORT_HEADER) throw new Error(`not a report: first line is ${JSON.stringify(lines[0])}`);
  return lines.slice(1).map((l) => {
    const [line, url, outcome, result] = l.split('\t');
    return { line: Number(line), url, outcome: outcome as ReportOutcome, result };
  });
}

/**
 * Write the report `dir/name` durably from `rows` (streamed; see
 * durable-chunks.ts). `dir` may be a /proc/self/fd path (inbox-dir.ts).
 */
export async function writeReport(dir: string, name: string, rows: Iterable<ReportRow>): Promise<void> {
  function* pieces(): Generator<string> {
    yield `${REPORT_HEADER}\n`;
    for (const r of rows) yield formatRow(r);
  }
  await writeChunksDurable(path.join(dir, name), pieces(), REPORT_MODE);
}
