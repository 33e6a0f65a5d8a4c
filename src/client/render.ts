/**
 * Human output of mcctl: aligned tables and key/value blocks built from the
 * protocol's result types. Pure: values in, text out; escape codes only from
 * an explicit Paint (color.ts, off by default), so the same call gives plain
 * text for a pipe. Sizes via formatSize, times via formatRelative with an
 * injectable `now`. Text that came from outside (URLs, file lines, error
 * messages) goes through printable(), so it cannot move the cursor or
 * smuggle raw bytes onto the terminal.
 */
import type { ErrorInfo } from '../core/errors.js';
import { formatDuration, formatRelative, formatSize } from '../core/util/format.js';
import type { AddItem, JobInfo, JobsResult, RpcEvent, StatsResult, StatusResult, SweepReport, VerifyResult } from '../core/protocol/rpc.js';
import { NO_PAINT, paintState, type Paint } from './color.js';
import { MEDIA_TYPES, type MediaRecord } from '../core/types.js';

export type Align = 'left' | 'right';
export interface Column {
  header: string;
  align?: Align;
  /** Cut cells longer than this (with "…"). */
  max?: number;
  /** May be narrowed (down to `min`, default 12) to fit a width; `cut: 'left'` keeps the end (URLs). */
  flex?: boolean;
  min?: number;
  cut?: 'left' | 'right';
  /** Colour for a cell, applied after padding (so widths are computed on plain text). */
  paint?: (padded: string, plain: string) => string;
}

/** Display width, counting code points (good enough for URLs and paths). */
function width(s: string): number {
  return [...s].length;
}

/**
 * Text from outside made safe for one terminal line: control characters
 * (C0, DEL, C1), bidi overrides and U+FFFD (what undecodable bytes become)
 * are shown as \xNN / \uNNNN escapes, and the result is cut at `max` code points.
 */
export function printable(s: string, max = 200): string {
  let out = '';
  let n = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    let piece = ch;
    if (c < 0x20 || (c >= 0x7f && c < 0xa0)) piece = `\\x${c.toString(16).padStart(2, '0')}`;
    else if ((c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) || c === 0xfffd) piece = `\\u${c.toString(16).padStart(4, '0')}`;
    if (n + piece.length > max) return `${out}…`;
    out += piece;
    n += piece.length;
  }
  return out;
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

/**
 * An aligned table with a header row; two spaces between columns; no trailing
 * blanks. With `maxWidth`, flex columns give up width (widest first) so that
 * every line fits; what cannot fit even then is cut at the end of the line.
 */
export function table(columns: readonly Column[], rows: readonly (readonly string[])[], maxWidth?: number): string {
  let cells = rows.map((r) => columns.map((c, i) => (c.max ? truncate(r[i] ?? '', c.max) : (r[i] ?? ''))));
  const widths = columns.map((c, i) => Math.max(width(c.header), ...cells.map((r) => width(r[i]))));
  if (maxWidth !== undefined && maxWidth > 0) {
    let excess = widths.reduce((a, b) => a + b, 0) + 2 * (columns.length - 1) - maxWidth;
    while (excess > 0) {
      let widest = -1;
      for (let i = 0; i < columns.length; i++) {
        if (!columns[i].flex || widths[i] <= (columns[i].min ?? 12)) continue;
        if (widest < 0 || widths[i] > widths[widest]) widest = i;
      }
      if (widest < 0) break;
      const next = columns.reduce((m, c, i) => (c.flex && i !== widest && widths[i] < widths[widest] ? Math.max(m, widths[i]) : m), columns[widest].min ?? 12);
      const take = Math.min(excess, widths[widest] - Math.max(next, columns[widest].min ?? 12)) || 1;
      widths[widest] -= take;
      excess -= take;
    }
    cells = cells.map((r) => r.map((s, i) => (width(s) > widths[i] ? (columns[i].cut === 'left' ? truncateLeft(s, widths[i]) : truncate(s, widths[i])) : s)));
  }
  const line = (r: readonly string[], header: boolean): string => {
    let out = r
      .map((s, i) => {
        const padded = pad(s, widths[i], columns[i].align ?? 'left');
        return !header && columns[i].paint ? columns[i].paint!(padded, s) : padded;
      })
      .join('  ');
    out = out.replace(/ +$/, '');
    return out;
  };
  const text = [line(columns.map((c) => c.header), true), ...cells.map((r) => line(r, false))];
  // Last resort when the fixed columns alone are too wide: cut the line (dropping its colours, which a cut could leave open).
  const plain = (l: string): string => l.replace(/\x1b\[[0-9;]*m/g, '');
  return (maxWidth ? text.map((l) => (width(plain(l)) > maxWidth ? truncate(plain(l), maxWidth) : l)) : text).join('\n') + '\n';
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

/**
 * "E_HTTP 404: too many redirects", "E_HTTP: HTTP 404", "E_TIMEOUT: …": the
 * status is said once (the daemon's message for a plain HTTP error already is "HTTP 404").
 */
export function errorText(e: ErrorInfo): string {
  const msg = printable(e.message ?? '');
  const statusSaid = e.status !== undefined && new RegExp(`\\b${e.status}\\b`).test(msg);
  return `${e.code}${e.status && !statusSaid ? ` ${e.status}` : ''}${msg ? `: ${msg}` : ''}`;
}

export function renderStats(s: StatsResult): string {
  const rows = MEDIA_TYPES.map((t) => [t, String(s.byType[t]?.count ?? 0), formatSize(s.byType[t]?.size ?? 0)]);
  rows.push(['total', String(s.totalFiles), formatSize(s.totalSize)]);
  const q = s.queue;
  return (
    table([{ header: 'TYPE' }, { header: 'FILES', align: 'right' }, { header: 'SIZE', align: 'right' }], rows) +
    `\nqueue: ${q.queued} queued, ${q.running} running, ${q.done} done, ${q.failed} failed\n` +
    quotaLines(s).map((l) => `${l}\n`).join('')
  );
}

/** The media metadata of a record as key/value lines (only what is known). */
function mediaLines(r: MediaRecord): Array<readonly [string, string | undefined]> {
  const codecs = [r.videoCodec, r.audioCodec].filter((c) => c !== undefined).join(' + ');
  const audio = [
    r.sampleRate !== undefined ? `${r.sampleRate} Hz` : undefined,
    r.channels !== undefined ? `${r.channels} ch` : undefined,
  ].filter((x) => x !== undefined);
  return [
    ['duration', r.durationSec !== undefined ? `${r.durationSec} s` : undefined],
    ['codecs', codecs || undefined],
    ['frame rate', r.frameRate !== undefined ? `${r.frameRate} fps` : undefined],
    ['audio', audio.length ? audio.join(', ') : undefined],
    ['bitrate', r.bitrate !== undefined ? `${Math.round(r.bitrate / 1000)} kb/s` : undefined],
    ['pages', r.pageCount !== undefined ? `${r.pageCount}${r.encrypted ? ' (encrypted)' : ''}` : r.encrypted ? 'encrypted' : undefined],
    ['orientation', r.orientation !== undefined && r.orientation !== 1 ? `EXIF ${r.orientation}` : undefined],
    ['frames', r.frameCount !== undefined && r.frameCount > 1 ? String(r.frameCount) : undefined],
  ];
}

/** Quota, pinned and evicted lines for stats and status (none when the daemon reports none). */
export function quotaLines(s: Pick<StatsResult, 'quota' | 'pinned' | 'evicted'>): string[] {
  const out: string[] = [];
  const q = s.quota;
  if (q) {
    const limits = [q.maxSize > 0 ? `max ${formatSize(q.maxSize)} (evicts down to ${formatSize(q.lowWater)})` : '', q.minFree > 0 ? `min free ${formatSize(q.minFree)}` : '']
      .filter(Boolean)
      .join(', ');
    out.push(`quota: ${formatSize(q.used)} used, ${limits}${q.free !== undefined ? `, ${formatSize(q.free)} free on disk` : ''}`);
    if (q.blockedByPinned) out.push('quota: CANNOT BE MET: pinned content alone is over it (pinned content is never evicted; unpin some)');
    else if (q.unmet) out.push('quota: CANNOT BE MET: nothing left to evict (files in use, or the disk is full of other things)');
  }
  if (s.pinned && s.pinned.count > 0) out.push(`pinned: ${s.pinned.count} files, ${formatSize(s.pinned.size)}`);
  if (s.evicted && s.evicted.count > 0) out.push(`evicted: ${s.evicted.count} records, ${formatSize(s.evicted.size)} (re-downloaded when added again)`);
  return out;
}

export function renderRecord(r: MediaRecord, now = Date.now()): string {
  return keyValues([
    ['md5', r.md5],
    ['sha256', r.sha256],
    ['path', r.localPath],
    ['size', `${formatSize(r.fileSize)} (${r.fileSize} bytes)`],
    ['type', `${r.mimeType} (${r.mediaType}, ${r.extension})`],
    ['dimensions', r.width !== undefined && r.height !== undefined ? `${r.width}x${r.height}` : undefined],
    ...mediaLines(r),
    ['urls', r.urls.length ? r.urls.join('\n') : r.url],
    ['fetched', `${r.fetchedAt} (${formatRelative(r.fetchedAt, now)})`],
    ['verified', `${r.verifiedAt} (${formatRelative(r.verifiedAt, now)})`],
    ['pinned', r.pinned ? 'yes (never evicted)' : undefined],
    ['EVICTED', r.evictedAt ? `${r.evictedAt} (${formatRelative(r.evictedAt, now)}); the file is gone, add a URL to download it again` : undefined],
    ['restored', r.restoredAt ? `${r.restoredAt} (downloaded again after an eviction)` : undefined],
    ['revalidated', r.revalidatedAt ? `${r.revalidatedAt} (${formatRelative(r.revalidatedAt, now)})` : undefined],
    ['changed', r.upstreamChanges?.length ? r.upstreamChanges.map((c) => `${c.at}  ${c.url}: ${c.from} -> ${c.to}`).join('\n') : undefined],
  ]);
}

export function renderVerify(v: VerifyResult): string {
  const lines = v.bad.map((b) => `${b.reason === 'missing' ? 'MISSING ' : 'CORRUPT '} ${b.md5}  ${b.localPath}`);
  lines.push(`${v.checked} checked, ${v.ok} ok, ${v.bad.length} bad`);
  return lines.join('\n') + '\n';
}

/** "retry in 12s (E_TIMEOUT)" while a job waits for its next attempt; undefined otherwise. */
export function retryText(j: JobInfo, now = Date.now()): string | undefined {
  const at = j.state === 'queued' ? (j.nextRetryAt ?? (j.attempts > 0 ? j.notBefore : undefined)) : undefined;
  if (!at) return undefined;
  const t = Date.parse(at);
  const when = Number.isFinite(t) && t > now ? `in ${formatRelative(t, now).replace(/^in /, '')}` : 'now';
  const why = j.lastError ?? j.error;
  return `retry ${when}${why ? ` (${why.code}${why.status ? ` ${why.status}` : ''})` : ''}`;
}

function jobResult(j: JobInfo, now: number): string {
  const retry = retryText(j, now);
  if (retry) return retry;
  if (j.error) return errorText(j.error);
  if (j.md5) return shortMd5(j.md5);
  if (j.state === 'running' && j.bytes !== undefined) {
    return j.totalBytes ? `${formatSize(j.bytes)} / ${formatSize(j.totalBytes)}` : formatSize(j.bytes);
  }
  if (j.notBefore) return `starts ${formatRelative(j.notBefore, now)}`;
  return '';
}

export interface JobsRenderOptions {
  now?: number;
  /** Terminal width to fit (undefined: no limit, e.g. piped into grep). */
  width?: number;
  paint?: Paint;
}

export function renderJobs(r: JobsResult, opts: JobsRenderOptions | number = {}): string {
  const o: JobsRenderOptions = typeof opts === 'number' ? { now: opts } : opts;
  const now = o.now ?? Date.now();
  const paint = o.paint ?? NO_PAINT;
  if (r.jobs.length === 0) return `no jobs (${r.total} in total)\n`;
  const rows = r.jobs.map((j) => [j.id, j.state, String(j.attempts ?? 0), formatRelative(j.updatedAt, now), printable(j.url), jobResult(j, now)]);
  return (
    table(
      [
        { header: 'ID' },
        { header: 'STATE', paint: (padded, plain) => paintState(paint, plain, padded) },
        { header: 'TRIES', align: 'right' },
        { header: 'UPDATED' },
        { header: 'URL', max: 120, flex: true, min: 16, cut: 'left' },
        { header: 'RESULT', max: 80, flex: true, min: 12, paint: (padded, plain) => (plain.startsWith('retry ') ? paint.warn(padded) : padded) },
      ],
      rows,
      o.width,
    ) + (r.total > r.jobs.length ? `(${r.jobs.length} of ${r.total} shown)\n` : '')
  );
}

/** Width of the middle of an `add` line (md5, size, type) that a failed line's error spans. */
const ADD_MIDDLE = 12 + 2 + 9 + 2 + 15;

/**
 * One line per item of an `add` reply, in fixed columns:
 *   done    9e107d9d372b   97.7 KiB  image/jpeg       http://h/a.jpg
 *   failed  E_HTTP: HTTP 404                          http://h/b.jpg
 * A failed line whose message already shows the URL (a bad URL, a bad line
 * of a -f file) does not print it again.
 */
export function renderAddItem(i: AddItem, paint: Paint = NO_PAINT): string {
  const url = printable(i.url);
  if (i.error || i.state === 'failed') {
    const err = i.error ? errorText(i.error) : 'unknown error';
    const probe = url.slice(0, 24);
    // URL errors quote the input in their message already (JSON-escaped), so the URL column would repeat it.
    const inputError = i.error?.code === 'E_INVALID_URL' || i.error?.code === 'E_UNSUPPORTED_SCHEME';
    const mentions = inputError || (probe !== '' && err.includes(probe));
    return `${paint.fail('failed')}  ${mentions ? err : `${err.padEnd(ADD_MIDDLE)}  ${url}`}`;
  }
  if (i.record) {
    const r = i.record;
    const state = i.cached ? 'cached' : 'done';
    return `${paintState(paint, state, state.padEnd(6))}  ${shortMd5(r.md5).padEnd(12)}  ${formatSize(r.fileSize).padStart(9)}  ${r.mimeType.padEnd(15)}  ${url}`;
  }
  return `${i.state.padEnd(6)}  ${(i.jobId ?? '').padEnd(ADD_MIDDLE)}  ${url}`;
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
    ['metadata', r.metadataFilled !== undefined ? `${r.metadataFilled} records filled` : undefined],
  ];
  if (r.changedUpstream.length) pairs.push(['changed', r.changedUpstream.map((c) => `${c.md5}  ${c.url}`).join('\n')]);
  if (r.revalidated) {
    const v = r.revalidated;
    pairs.push(['revalidated', `${v.asked} asked: ${v.notModified} not modified, ${v.unchanged} unchanged, ${v.changed} changed, ${v.failed} failed`]);
  }
  if (r.movedUpstream?.length) pairs.push(['moved', r.movedUpstream.map((c) => `${c.url}: ${c.from} -> ${c.to}`).join('\n')]);
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
    ...quotaLines(s).map((l): readonly [string, string] => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]),
    ...clusterLines(s.cluster),
  ]);
}

/** Cluster mode: the database, the cluster's queue, and one line per daemon with its share. */
function clusterLines(c: StatusResult['cluster']): Array<readonly [string, string]> {
  if (!c) return [];
  const q = c.queue;
  const nodes = c.nodes.map(
    (n) =>
      `${n.id}${n.id === c.nodeId ? ' (this one)' : ''}  ${n.alive ? 'alive' : 'gone'}, pid ${n.pid} on ${n.hostName}: ${n.running} running, ${n.done} done, ${n.failed} failed`,
  );
  return [
    ['cluster', `PostgreSQL ${c.database}; ${c.nodes.filter((n) => n.alive).length} of ${c.nodes.length} daemons alive`],
    ['cluster queue', `${q.queued} queued, ${q.running} running, ${q.done} done, ${q.failed} failed`],
    ['daemons', nodes.join('\n')],
  ];
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
export function renderEvent(e: RpcEvent, at: Date = new Date(), paint: Paint = NO_PAINT): string {
  const ts = at.toISOString().slice(11, 19);
  switch (e.type) {
    case 'job.queued': {
      const retry = retryText(e.job, at.getTime());
      if (retry) return `${ts} ${paint.warn('retrying ')} ${e.job.id}  try ${e.job.attempts + 1}, ${retry}  ${printable(e.job.url)}`;
      return `${ts} queued    ${e.job.id}  ${printable(e.job.url)}`;
    }
    case 'job.progress':
      return `${ts} progress  ${e.jobId}  ${formatSize(e.bytes)}${e.totalBytes ? ` / ${formatSize(e.totalBytes)}` : ''}  ${printable(e.url)}`;
    case 'job.done':
      return `${ts} ${paint.ok('done     ')} ${e.job.id}  ${shortMd5(e.record.md5)}  ${formatSize(e.record.fileSize)}  ${printable(e.job.url)}`;
    case 'job.failed':
      return `${ts} ${paint.fail('failed   ')} ${e.job.id}  ${errorText(e.error)}${e.job.attempts > 1 ? ` (after ${e.job.attempts} tries)` : ''}  ${printable(e.job.url)}`;
    case 'sweep.progress':
      return `${ts} sweep     ${e.sweepId}  ${e.step} ${e.done}${e.total !== undefined ? `/${e.total}` : ''}`;
    case 'upstream.changed':
      return `${ts} changed   ${e.change.url}  ${shortMd5(e.change.from)} -> ${shortMd5(e.change.to)}`;
    case 'sweep.done':
      return `${ts} swept     ${e.report.id}  ${e.report.checked} checked, ${e.report.corrupt.length} corrupt, ${e.report.missing.length} missing, ${e.report.repaired.length} repaired`;
    default:
      return `${ts} ${printable((e as { type?: string }).type ?? 'event')}  ${printable(JSON.stringify(e))}`;
  }
}
