/**
 * The per-file report of an inbox batch: `processed/<name>.report.tsv`.
 *
 * One header line, then one row per non-blank, non-comment line of the file,
 * in file order: line number, URL (the normalised URL, or the raw text of an
 * invalid line), outcome (done | failed | invalid), md5 or error code.
 * Written atomically (tmp + fsync + rename), so a reader never sees half a report.
 */
import type { ErrorCode } from '../../core/errors.js';
import { writeFileDurable } from '../../core/util/durable-file.js';
import { redactUrl } from '../../core/util/redact.js';
import type { JobInfo } from '../../core/protocol/rpc.js';
import type { BatchLine } from '../jobs/job-store.js';

export const REPORT_HEADER = 'line\turl\toutcome\tresult';
export const REPORT_SUFFIX = '.report.tsv';

export type ReportOutcome = 'done' | 'failed' | 'invalid';

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

export function reportRows(lines: readonly BatchLine[], jobOf: (id: string) => JobInfo | undefined): ReportRow[] {
  return lines.map(([line, raw, jobId, code]): ReportRow => {
    if (!jobId) return { line, url: raw, outcome: 'invalid', result: code ?? 'E_INVALID_URL' };
    const j = jobOf(jobId);
    if (j?.state === 'done' && j.md5) return { line, url: j.url, outcome: 'done', result: j.md5 };
    const err: ErrorCode = j?.error?.code ?? 'E_UNAVAILABLE';
    return { line, url: j?.url ?? raw, outcome: 'failed', result: err };
  });
}

export function formatReport(rows: readonly ReportRow[]): string {
  const out = [REPORT_HEADER];
  for (const r of rows) out.push(`${r.line}\t${cell(redactUrl(r.url))}\t${r.outcome}\t${cell(r.result)}`);
  return `${out.join('\n')}\n`;
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

export async function writeReport(reportPath: string, rows: readonly ReportRow[]): Promise<void> {
  await writeFileDurable(reportPath, formatReport(rows));
}
