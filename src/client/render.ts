/**
 * Human output of mcctl: aligned tables and key/value blocks built from the
 * protocol's result types. Pure: values in, text out (no escape codes, so the
 * same text is right on a terminal and in a pipe); sizes via formatSize,
 * times via formatRelative with an injectable `now`.
 */
import type { ErrorInfo } from '../core/errors.js';
import { formatDuration, formatRelative, formatSize } from '../core/format.js';
import type { AddItem, JobInfo, JobsResult, RpcEvent, StatsResult, StatusResult, SweepReport, VerifyResult } from '../core/protocol.js';
import { MEDIA_TYPES, type MediaRecord } from '../core/types.js';

export type Align = 'left' | 'right';
export interface Column {
  header: string;
  align?: Align;
  /** Cut cells longer than this (with "…"). */
  max?: number;
}

/** Display width, counting code points (good enough for URLs and paths). */
function width(s: string): number {
  return [...s].length;
}

export function truncate(s: string, max: number): string {
  if (max <= 0) return '';
  const cps = [...s];
  return cps.length <= max ? s : `${cps.slice(0, Math.max(0, max - 1)).join('')}…`;
}

/** Left-truncate (keeps the end of a URL or path, which is the telling part). */
export function truncateLeft(s: string, max: number): string {
  if (max <= 0) return '';
  const cps = [...s];
  return cps.length <= max ? s : `…${cps.slice(cps.length - max + 1).join('')}`;
}

function pad(s: string, w: number, align: Align): string {
  const fill = ' '.repeat(Math.max(0, w - width(s)));
  return align === 'right' ? fill + s : s + fill;
}

/** An aligned table with a header row; two spaces between columns; no trailing blanks. */
export function table(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const cells = rows.map((r) => columns.map((c, i) => (c.max ? truncate(r[i] ?? '', c.max) : (r[i] ?? ''))));
  const widths = columns.map((c, i) => Math.max(width(c.header), ...cells.map((r) => width(r[i]))));
  const line = (r: readonly string[]): string =>
    r
      .map((s, i) => pad(s, widths[i], columns[i].align ?? 'left'))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

/** "key   value" lines with the keys padded to one width; multi-line values are indented. */
export function keyValues(pairs: ReadonlyArray<readonly [string, string | undefined]>): string {
  const shown = pairs.filter((p): p is readonly [string, string] => p[1] !== undefined);
  const w = Math.max(0, ...shown.map(([k]) => width(k)));
  return shown.map(([k, v]) => `${pad(k, w, 'left')}  ${v.split('\n').join(`\n${' '.repeat(w + 2)}`)}`).join('\n') + '\n';
}

export function shortMd5(md5: string): string {
  return md5.slice(0, 12);
}

export function errorText(e: ErrorInfo): string {
  return `${e.code}${e.status ? ` ${e.status}` : ''}: ${e.message}`;
}

export function renderStats(s: StatsResult): string {
  const rows = MEDIA_TYPES.map((t) => [t, String(s.byType[t]?.count ?? 0), formatSize(s.byType[t]?.size ?? 0)]);
  rows.push(['total', String(s.totalFiles), formatSize(s.totalSize)]);
  const q = s.queue;
  return (
    table([{ header: 'TYPE' }, { header: 'FILES', align: 'right' }, { header: 'SIZE', align: 'right' }], rows) +
    `\nqueue: ${q.queued} queued, ${q.running} running, ${q.done} done, ${q.failed} failed\n`
  );
}

export function renderRecord(r: MediaRecord, now = Date.now()): string {
  return keyValues([
    ['md5', r.md5],
    ['sha256', r.sha256],
    ['path', r.localPath],
    ['size', `${formatSize(r.fileSize)} (${r.fileSize} bytes)`],
    ['type', `${r.mimeType} (${r.mediaType}, ${r.extension})`],
    ['dimensions', r.width !== undefined && r.height !== undefined ? `${r.width}x${r.height}` : undefined],
    ['urls', r.urls.length ? r.urls.join('\n') : r.url],
    ['fetched', `${r.fetchedAt} (${formatRelative(r.fetchedAt, now)})`],
    ['verified', `${r.verifiedAt} (${formatRelative(r.verifiedAt, now)})`],
  ]);
}

export function renderVerify(v: VerifyResult): string {
  const lines = v.bad.map((b) => `${b.reason === 'missing' ? 'MISSING ' : 'CORRUPT '} ${b.md5}  ${b.localPath}`);
  lines.push(`${v.checked} checked, ${v.ok} ok, ${v.bad.length} bad`);
  return lines.join('\n') + '\n';
}

function jobResult(j: JobInfo): string {
  if (j.error) return errorText(j.error);
  if (j.md5) return shortMd5(j.md5);
  if (j.state === 'running' && j.bytes !== undefined) {
    return j.totalBytes ? `${formatSize(j.bytes)} / ${formatSize(j.totalBytes)}` : formatSize(j.bytes);
  }
  if (j.notBefore) return `retry ${formatRelative(j.notBefore)}`;
  return '';
}

export function renderJobs(r: JobsResult, now = Date.now()): string {
  if (r.jobs.length === 0) return `no jobs (${r.total} in total)\n`;
  const rows = r.jobs.map((j) => [j.id, j.state, formatRelative(j.updatedAt, now), j.url, jobResult(j)]);
  return (
    table([{ header: 'ID' }, { header: 'STATE' }, { header: 'UPDATED' }, { header: 'URL', max: 60 }, { header: 'RESULT', max: 60 }], rows) +
    (r.total > r.jobs.length ? `(${r.jobs.length} of ${r.total} shown)\n` : '')
  );
}

/** One line per item of an `add` reply. */
export function renderAddItem(i: AddItem): string {
  if (i.error || i.state === 'failed') return `failed  ${i.error ? errorText(i.error) : 'unknown error'}  ${i.url}`;
  if (i.record) {
    const r = i.record;
    return `${i.cached ? 'cached' : 'done  '}  ${shortMd5(r.md5)}  ${formatSize(r.fileSize).padStart(9)}  ${r.mimeType}  ${i.url}`;
  }
  return `${i.state.padEnd(6)}  ${i.jobId ?? ''}  ${i.url}`;
}

export function renderAddSummary(items: readonly AddItem[]): string {
  const failed = items.filter((i) => i.state === 'failed' || i.error).length;
  const done = items.filter((i) => i.state === 'done' && !i.error).length;
  const cached = items.filter((i) => i.cached && !i.error).length;
  const pending = items.length - failed - done;
  const parts = [`${done} done${cached ? ` (${cached} from cache)` : ''}`, `${failed} failed`];
  if (pending) parts.push(`${pending} queued`);
  return parts.join(', ') + '\n';
}

export function renderSweepReport(r: SweepReport, now = Date.now()): string {
  const pairs: Array<readonly [string, string | undefined]> = [
    ['sweep', `${r.id}${r.complete ? '' : ' (cut short; the next sweep resumes)'}`],
    ['finished', `${formatRelative(r.finishedAt, now)}, took ${formatDuration(r.durationMs)}`],
    ['checked', `${r.checked} files, ${formatSize(r.bytesHashed)}`],
    ['missing', String(r.missing.length)],
    ['corrupt', String(r.corrupt.length)],
    ['repaired', String(r.repaired.length)],
    ['unrepaired', r.unrepaired.length ? r.unrepaired.map((u) => `${u.md5}  ${errorText(u.error)}`).join('\n') : '0'],
    ['adopted', String(r.adopted.length)],
  ];
  if (r.changedUpstream.length) pairs.push(['changed', r.changedUpstream.map((c) => `${c.md5}  ${c.url}`).join('\n')]);
  return keyValues(pairs);
}

export function renderStatus(s: StatusResult, now = Date.now()): string {
  const q = s.queue;
  const active = s.active.map((a) => {
    const pct = a.totalBytes ? ` ${Math.floor((a.bytes / a.totalBytes) * 100)}%` : '';
    return `${truncateLeft(a.url, 60)}${pct} ${formatSize(a.bytes)}${a.totalBytes ? ` / ${formatSize(a.totalBytes)}` : ''}`;
  });
  const last = s.lastSweep;
  return keyValues([
    ['daemon', `mediacached ${s.version}, pid ${s.pid}, up ${formatDuration(s.uptimeMs)}`],
    ['socket', s.paths.socket],
    ['cache', s.paths.cacheDir],
    ['index', s.paths.indexDir],
    ['inboxes', s.paths.inboxes.length ? s.paths.inboxes.join('\n') : '(none)'],
    ['config', s.paths.configFile],
    ['log', s.paths.logFile],
    ['settings', `concurrency ${s.config.concurrency}, per host ${s.config.perHost}, timeout ${s.config.timeoutMs} ms, max file ${formatSize(s.config.maxFileSize)}`],
    ['queue', `${q.queued} queued, ${q.running} running, ${q.done} done, ${q.failed} failed`],
    ['active', active.length ? active.join('\n') : undefined],
    [
      'last sweep',
      last
        ? `${formatRelative(last.finishedAt, now)}: ${last.checked} checked, ${last.corrupt.length} corrupt, ${last.missing.length} missing, ${last.repaired.length} repaired (took ${formatDuration(last.durationMs)})`
        : 'never',
    ],
    ['sweeping', s.sweepRunning ? 'yes, now' : undefined],
    ['damage', s.damage ? damageText(s.damage) : undefined],
    ['next sweep', `${s.nextSweepAt ? formatRelative(s.nextSweepAt, now) : 'not scheduled'} (${s.config.sweepSchedule})`],
  ]);
}

/** What start-up found damaged, for `status` (docs/operations.md says what to do). */
function damageText(d: NonNullable<StatusResult['damage']>): string {
  const lines: string[] = [];
  const i = d.index;
  if (i.lostRows > 0 || i.missingShards.length > 0 || i.files.length > 0) {
    const missing = i.missingShards.length ? `, shard file(s) ${i.missingShards.join(' ')} missing` : '';
    lines.push(`index: ${i.lostRows} record(s) unreadable${missing}; files re-adopted by a sweep`);
  }
  const j = d.jobs;
  if (j.lostJobs > 0 || j.restoredJobs > 0 || j.files.length > 0) lines.push(`jobs: ${j.lostJobs} lost, ${j.restoredJobs} re-queued from inbox batches`);
  for (const f of [...i.files, ...j.files]) lines.push(`kept: ${f}`);
  return lines.join('\n');
}

/** One line per event for `watch` (human form). */
export function renderEvent(e: RpcEvent, at: Date = new Date()): string {
  const ts = at.toISOString().slice(11, 19);
  switch (e.type) {
    case 'job.queued':
      return `${ts} queued    ${e.job.id}  ${e.job.url}`;
    case 'job.progress':
      return `${ts} progress  ${e.jobId}  ${formatSize(e.bytes)}${e.totalBytes ? ` / ${formatSize(e.totalBytes)}` : ''}  ${e.url}`;
    case 'job.done':
      return `${ts} done      ${e.job.id}  ${shortMd5(e.record.md5)}  ${formatSize(e.record.fileSize)}  ${e.job.url}`;
    case 'job.failed':
      return `${ts} failed    ${e.job.id}  ${errorText(e.error)}  ${e.job.url}`;
    case 'sweep.progress':
      return `${ts} sweep     ${e.sweepId}  ${e.step} ${e.done}${e.total !== undefined ? `/${e.total}` : ''}`;
    case 'sweep.done':
      return `${ts} swept     ${e.report.id}  ${e.report.checked} checked, ${e.report.corrupt.length} corrupt, ${e.report.missing.length} missing, ${e.report.repaired.length} repaired`;
    default:
      return `${ts} ${(e as { type?: string }).type ?? 'event'}  ${JSON.stringify(e)}`;
  }
}
