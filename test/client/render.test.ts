import t from 'tap';
import { AddProgress, bar, normalizeUrl, percent, type OutStream } from '../../src/client/progress.js';
import { keyValues, renderAddItem, renderAddSummary, renderJobs, renderRecord, renderStats, renderVerify, table, truncate, truncateLeft } from '../../src/client/render.js';
import { EXIT, exitCodeFor, UsageError } from '../../src/client/exit-codes.js';
import { ConnectionLostError, DaemonUnreachableError, ProtocolError, RequestTimeoutError, RpcReplyError } from '../../src/client/rpc-client.js';
import { MediaCacheError } from '../../src/core/errors.js';
import type { JobInfo, RpcEvent, StatsResult } from '../../src/core/protocol/rpc.js';
import type { MediaRecord } from '../../src/core/types.js';

const NOW = Date.parse('2026-01-01T12:00:00Z');

function record(over: Partial<MediaRecord> = {}): MediaRecord {
  return {
    md5: '9e107d9d372bb6826bd81d3542a419d6',
    sha256: 'd7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592',
    localPath: '/c/images/9e107d9d372bb6826bd81d3542a419d6.jpg',
    fileSize: 102400,
    mimeType: 'image/jpeg',
    mediaType: 'image',
    width: 1920,
    height: 1080,
    extension: '.jpg',
    url: 'http://h/a.jpg',
    urls: ['http://h/a.jpg', 'http://h/b.jpg'],
    fetchedAt: new Date(NOW - 180_000).toISOString(),
    verifiedAt: new Date(NOW - 7200_000).toISOString(),
    ...over,
  };
}

function job(id: string, url: string, over: Partial<JobInfo> = {}): JobInfo {
  return { id, url, state: 'queued', priority: 0, attempts: 0, createdAt: new Date(NOW).toISOString(), updatedAt: new Date(NOW - 60_000).toISOString(), source: 'rpc', ...over };
}

t.test('table: aligned columns, right-aligned numbers, no trailing blanks, truncation', async (t) => {
  const out = table(
    [{ header: 'NAME' }, { header: 'N', align: 'right' }, { header: 'NOTE', max: 6 }],
    [
      ['a', '1', ''],
      ['longer', '1234', 'abcdefghij'],
    ],
  );
  t.equal(out, ['NAME       N  NOTE', 'a          1', 'longer  1234  abcde…', ''].join('\n'));
  t.equal(truncate('abcdef', 4), 'abc…');
  t.equal(truncateLeft('http://x/very/long/path.jpg', 10), '…/path.jpg');
  t.equal(truncateLeft('short', 10), 'short');
  t.equal(keyValues([['a', '1'], ['long key', 'x\ny'], ['skip', undefined]]), 'a         1\nlong key  x\n          y\n');
});

t.test('stats and record use formatSize and relative times', async (t) => {
  const s: StatsResult = {
    totalFiles: 3,
    totalSize: 1536 * 1024 + 100,
    byType: { image: { count: 2, size: 1536 * 1024 }, video: { count: 0, size: 0 }, audio: { count: 1, size: 100 }, document: { count: 0, size: 0 } },
    queue: { queued: 1, running: 2, done: 3, failed: 4 },
  };
  const st = renderStats(s);
  t.match(st, /^TYPE\s+FILES\s+SIZE$/m);
  t.match(st, /^image\s+2\s+1\.5 MiB$/m);
  t.match(st, /^audio\s+1\s+100 B$/m);
  t.match(st, /^total\s+3\s+1\.5 MiB$/m);
  t.match(st, /queue: 1 queued, 2 running, 3 done, 4 failed/);
  const r = renderRecord(record(), NOW);
  t.match(r, /^size\s+100\.0 KiB \(102400 bytes\)$/m);
  t.match(r, /^dimensions\s+1920x1080$/m);
  t.match(r, /\(3m ago\)/);
  t.match(r, /\(2h ago\)/);
  t.match(r, /^urls\s+http:\/\/h\/a\.jpg\n\s+http:\/\/h\/b\.jpg$/m);
  t.notMatch(renderRecord(record({ width: undefined, height: undefined }), NOW), /dimensions/);
});

t.test('jobs, verify and add lines', async (t) => {
  const jobs = renderJobs(
    {
      jobs: [
        job('j1', 'http://h/a.jpg', { state: 'done', md5: '9e107d9d372bb6826bd81d3542a419d6' }),
        job('j2', 'http://h/404.jpg', { state: 'failed', error: { code: 'E_HTTP', status: 404, message: 'HTTP 404' } }),
      ],
      total: 5,
    },
    NOW,
  );
  t.match(jobs, /^ID\s+STATE\s+TRIES\s+UPDATED\s+URL\s+RESULT$/m);
  t.match(jobs, /^j1\s+done\s+0\s+1m ago\s+http:\/\/h\/a\.jpg\s+9e107d9d372b$/m);
  t.match(jobs, /E_HTTP: HTTP 404$/m, 'the status said once');
  t.notMatch(jobs, /404: HTTP 404/);
  t.match(jobs, /\(2 of 5 shown\)/);
  t.equal(renderJobs({ jobs: [], total: 0 }), 'no jobs (0 in total)\n');
  const v = renderVerify({ checked: 3, ok: 2, bad: [{ md5: 'ab', localPath: '/c/x.jpg', reason: 'mismatch' }] });
  t.match(v, /CORRUPT\s+ab\s+\/c\/x\.jpg/);
  t.match(v, /3 checked, 2 ok, 1 bad/);
  t.match(renderAddItem({ url: 'http://h/a.jpg', state: 'done', record: record(), cached: true }), /^cached\s+9e107d9d372b\s+100\.0 KiB\s+image\/jpeg\s+http:\/\/h\/a\.jpg$/);
  t.match(renderAddItem({ url: 'http://h/x', state: 'failed', error: { code: 'E_UNSUPPORTED_TYPE', message: 'text/html' } }), /^failed\s+E_UNSUPPORTED_TYPE: text\/html\s+http:\/\/h\/x$/);
  t.match(renderAddItem({ url: 'http://h/q', state: 'queued', jobId: 'j9' }), /^queued\s+j9\s+http:\/\/h\/q$/);
  // The URL column starts at the same place on done, cached, failed and queued lines.
  const lines = [
    renderAddItem({ url: 'http://h/a.jpg', state: 'done', record: record() }),
    renderAddItem({ url: 'http://h/a.jpg', state: 'done', record: record(), cached: true }),
    renderAddItem({ url: 'http://h/a.jpg', state: 'failed', error: { code: 'E_HTTP', status: 404, message: 'HTTP 404' } }),
    renderAddItem({ url: 'http://h/a.jpg', state: 'queued', jobId: 'j9' }),
  ];
  t.same(new Set(lines.map((l) => l.indexOf('http://h/a.jpg'))).size, 1, `aligned:\n${lines.join('\n')}`);
  // A bad line of a -f file: its message already quotes it; the URL is not printed twice.
  const bad = renderAddItem({ url: 'htp:/x y', state: 'failed', error: { code: 'E_INVALID_URL', message: 'list.urls:3: not a URL (contains whitespace or control characters): "htp:/x y"' } });
  t.equal(bad.split('htp:/x y').length - 1, 1, bad);
  t.equal(
    renderAddSummary([
      { url: 'a', state: 'done', record: record(), cached: true },
      { url: 'b', state: 'done', record: record() },
      { url: 'c', state: 'failed', error: { code: 'E_HTTP', message: 'x' } },
      { url: 'd', state: 'queued' },
    ]),
    '2 done (1 from cache), 1 failed, 1 queued\n',
  );
});

class FakeStream implements OutStream {
  out = '';
  constructor(
    readonly isTTY: boolean,
    readonly columns = 100,
  ) {}
  write(s: string): boolean {
    this.out += s;
    return true;
  }
}

function progressEvents(): RpcEvent[] {
  const a = job('j1', 'http://h/a.mp4');
  const b = job('j2', 'http://h/b.jpg');
  return [
    { type: 'job.queued', job: a },
    { type: 'job.queued', job: b },
    { type: 'job.queued', job: job('other', 'http://elsewhere/z.png') },
    { type: 'job.progress', jobId: 'j1', url: a.url, bytes: 25_000, totalBytes: 100_000 },
    { type: 'job.progress', jobId: 'other', url: 'http://elsewhere/z.png', bytes: 1, totalBytes: 2 },
    { type: 'job.progress', jobId: 'j1', url: a.url, bytes: 75_000, totalBytes: 100_000 },
    { type: 'job.failed', job: { ...b, state: 'failed' }, error: { code: 'E_HTTP', status: 404, message: 'HTTP 404' } },
    { type: 'job.done', job: { ...a, state: 'done' }, record: record({ url: a.url, fileSize: 100_000 }) },
  ];
}

t.test('progress on a TTY: bars redrawn in place, moving percentages, finished lines kept', async (t) => {
  const s = new FakeStream(true);
  let now = 0;
  const p = new AddProgress({ stream: s, urls: ['http://h/a.mp4', 'http://h/b.jpg', 'http://h/cached.png'], minIntervalMs: 0, now: () => now++ });
  const accepted = progressEvents().map((e) => p.onEvent(e));
  t.same(accepted, [true, true, false, true, false, true, true, true], 'events about other URLs are ignored');
  p.finish([
    { url: 'http://h/a.mp4', state: 'done', jobId: 'j1', record: record({ url: 'http://h/a.mp4', fileSize: 100_000 }) },
    { url: 'http://h/b.jpg', state: 'failed', jobId: 'j2', error: { code: 'E_HTTP', status: 404, message: 'HTTP 404' } },
    { url: 'http://h/cached.png', state: 'done', record: record({ url: 'http://h/cached.png' }), cached: true },
  ]);
  t.match(s.out, /\x1b\[\?25l/, 'cursor hidden while drawing');
  t.match(s.out, /\x1b\[\d+A\x1b\[J/, 'moves up and clears to redraw');
  t.ok(s.out.endsWith('\x1b[?25h'), 'cursor shown again at the end');
  t.match(s.out, / 25% \[#+\.+\]/);
  t.match(s.out, / 75% \[#+\.+\]/);
  t.match(s.out, /\d+\/3 files/, 'overall bar counts files');
  t.notMatch(s.out, /elsewhere/, 'no bar for a job of another client');
  // Each finished job printed exactly once.
  t.equal(s.out.split('E_HTTP: HTTP 404').length - 1, 1);
  t.equal(s.out.match(/cached\s+9e107d9d372b/g)?.length, 1);
  t.equal(s.out.match(/done\s+9e107d9d372b\s+97\.7 KiB\s+image\/jpeg\s+http:\/\/h\/a\.mp4/g)?.length, 1);
  // Every redraw fits the terminal width (a wrapped line would break the cursor arithmetic).
  const visible = s.out.replace(/\x1b\[[0-9?]*[A-Za-z]/g, '').replace(/\r/g, '');
  for (const line of visible.split('\n')) t.ok([...line].length < 100, `fits: ${line}`);
});

t.test('progress piped: one plain line per finished job, no escape codes', async (t) => {
  const s = new FakeStream(false);
  const p = new AddProgress({ stream: s, urls: ['http://h/a.mp4', 'http://h/b.jpg', 'http://h/cached.png'], minIntervalMs: 0 });
  for (const e of progressEvents()) p.onEvent(e);
  p.finish([{ url: 'http://h/cached.png', state: 'done', record: record(), cached: true }]);
  t.notMatch(s.out, /\x1b/, 'no escape codes');
  const lines = s.out.trimEnd().split('\n');
  t.equal(lines.length, 3, 'one line per job');
  t.match(lines[0], /^failed\s+E_HTTP: HTTP 404/);
  t.match(lines[1], /^done\s+9e107d9d372b/);
  t.match(lines[2], /^cached/);
});

t.test('progress throttles redraws', async (t) => {
  const s = new FakeStream(true);
  let now = 1000;
  const p = new AddProgress({ stream: s, urls: ['http://h/a.mp4'], minIntervalMs: 100, now: () => now });
  p.onEvent({ type: 'job.queued', job: job('j1', 'http://h/a.mp4') });
  const draws = (): number => s.out.split('\x1b[J').length - 1;
  const first = draws();
  for (let i = 1; i <= 50; i++) p.onEvent({ type: 'job.progress', jobId: 'j1', url: 'http://h/a.mp4', bytes: i * 10, totalBytes: 1000 });
  t.equal(draws(), first, 'no redraw within the interval');
  now += 150;
  await new Promise((r) => setTimeout(r, 150));
  t.equal(draws(), first + 1, 'one redraw after it');
  t.match(s.out, / 50% /, 'showing the latest numbers');
  p.stop();
});

t.test('bar, percent and URL normalisation', async (t) => {
  t.equal(bar(0.5, 10), '[#####.....]');
  t.equal(bar(2, 4), '[####]');
  t.equal(bar(NaN, 4), '[....]');
  t.equal(percent(0.999), ' 99%');
  t.equal(percent(1), '100%');
  t.equal(normalizeUrl(' HTTP://Example.com '), 'http://example.com/');
  t.equal(normalizeUrl('not a url'), 'not a url');
});

t.test('exit code table', async (t) => {
  t.same(EXIT, { OK: 0, FAILED: 1, USAGE: 2, NOT_FOUND: 2, UNREACHABLE: 3, WAIT_TIMEOUT: 4, INTERRUPTED: 130 });
  const cases: Array<[unknown, number]> = [
    [new DaemonUnreachableError('/s', 'ENOENT'), 3],
    [new DaemonUnreachableError('/s', 'ECONNREFUSED'), 3],
    [new DaemonUnreachableError('/s', 'EACCES'), 3],
    [new DaemonUnreachableError('/s', 'ETIMEDOUT'), 3],
    [new ConnectionLostError('/s'), 3],
    [new RequestTimeoutError('/s', 'stats', 10), 3],
    [new UsageError('bad'), 2],
    [new RpcReplyError(-32000, 'nope', { code: 'E_NOT_FOUND' }), 2],
    [new RpcReplyError(-32000, 'several', { code: 'E_AMBIGUOUS' }), 2],
    [new RpcReplyError(-32602, 'bad params'), 2],
    [new RpcReplyError(-32000, 'bad url', { code: 'E_INVALID_URL' }), 2],
    [new RpcReplyError(-32000, 'disk', { code: 'E_DISK_FULL' }), 1],
    [new RpcReplyError(-32000, 'draining', { code: 'E_UNAVAILABLE' }), 1],
    [new ProtocolError('garbage'), 1],
    [new MediaCacheError('E_INTEGRITY', 'x'), 1],
    [new Error('boom'), 1],
  ];
  for (const [e, code] of cases) t.equal(exitCodeFor(e), code, `${(e as Error).name}: ${(e as Error).message.split('\n')[0]}`);
});

t.test('status shows what start-up found damaged, and nothing when all is well', async (t) => {
  const { renderStatus } = await import('../../src/client/render.js');
  const base = {
    version: '1.0.0', pid: 1, startedAt: new Date(NOW).toISOString(), uptimeMs: 1000,
    paths: { cacheDir: '/c', indexDir: '/c/index', socket: '/s', inboxes: [] },
    config: { concurrency: 5, perHost: 4, timeoutMs: 30000, maxFileSize: 1024, sweepSchedule: '0 3 * * *', logLevel: 'info' },
    queue: { queued: 0, running: 0, done: 0, failed: 0 }, active: [], sweepRunning: false,
  };
  t.notMatch(renderStatus(base, NOW), /damage/);
  const out = renderStatus({
    ...base,
    damage: {
      index: { files: ['/c/index/records/0a.jsonl.corrupt-x'], missingShards: ['1f'], lostRows: 3 },
      jobs: { files: [], lostJobs: 2, restoredJobs: 5 },
    },
  }, NOW);
  t.match(out, /damage\s+index: 3 record\(s\) unreadable, shard file\(s\) 1f missing; files re-adopted by a sweep/);
  t.match(out, /jobs: 2 lost, 5 re-queued from inbox batches/);
  t.match(out, /kept: \/c\/index\/records\/0a\.jsonl\.corrupt-x/);
});
