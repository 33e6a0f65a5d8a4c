/**
 * The human output that depends on the terminal: progress bars with speed
 * and ETA at 64 and 120 columns, the one overall measure, colours (and none
 * with NO_COLOR or in a pipe), the jobs table fitted to the width, retry
 * information, and text from outside made printable.
 */
import t from 'tap';
import { AddProgress, RateMeter, type OutStream } from '../../src/client/progress.js';
import { printable, renderAddItem, renderEvent, renderJobs, errorText } from '../../src/client/render.js';
import { ANSI_PAINT, colorWanted, paintFor } from '../../src/client/color.js';
import type { JobInfo } from '../../src/core/protocol/rpc.js';
import type { MediaRecord } from '../../src/core/types.js';

const NOW = Date.parse('2026-01-01T12:00:00Z');
const ESC_RE = /\x1b\[[0-9;?]*[A-Za-z]/g;

class FakeStream implements OutStream {
  out = '';
  constructor(
    readonly isTTY: boolean,
    readonly columns: number,
  ) {}
  write(s: string): boolean {
    this.out += s;
    return true;
  }
}

function job(id: string, url: string, over: Partial<JobInfo> = {}): JobInfo {
  return { id, url, state: 'queued', priority: 0, attempts: 0, createdAt: new Date(NOW).toISOString(), updatedAt: new Date(NOW - 60_000).toISOString(), source: 'rpc', ...over };
}

function record(url: string, size: number): MediaRecord {
  return {
    md5: '9e107d9d372bb6826bd81d3542a419d6',
    sha256: 'ab'.repeat(32),
    localPath: '/c/videos/9e107d9d372bb6826bd81d3542a419d6.mp4',
    fileSize: size,
    mimeType: 'video/mp4',
    mediaType: 'video',
    extension: '.mp4',
    url,
    urls: [url],
    fetchedAt: new Date(NOW).toISOString(),
    verifiedAt: new Date(NOW).toISOString(),
  };
}

const LONG = 'https://media.example.org/some/rather/long/path/to/a/video/file-with-a-long-name-0001.mp4';

/** Two downloads at 1 MiB/s for 4 s (one of unknown size), one queued: the bars as drawn. */
function drive(columns: number): { p: AddProgress; s: FakeStream } {
  const s = new FakeStream(true, columns);
  let now = NOW;
  const p = new AddProgress({ stream: s, urls: [LONG, 'http://h/b.bin', 'http://h/c.jpg'], minIntervalMs: 0, now: () => now });
  p.onEvent({ type: 'job.queued', job: job('j1', LONG) });
  p.onEvent({ type: 'job.queued', job: job('j2', 'http://h/b.bin') });
  p.onEvent({ type: 'job.queued', job: job('j3', 'http://h/c.jpg') });
  for (let i = 1; i <= 8; i++) {
    now += 500;
    p.onEvent({ type: 'job.progress', jobId: 'j1', url: LONG, bytes: i * 512 * 1024, totalBytes: 8 * 1024 * 1024 });
    p.onEvent({ type: 'job.progress', jobId: 'j2', url: 'http://h/b.bin', bytes: i * 512 * 1024 });
  }
  return { p, s };
}

t.test('bars at 120 columns: size, speed and ETA per file; overall files, bytes, speed, ETA', async (t) => {
  const { p } = drive(120);
  const lines = p.barLines();
  for (const l of lines) t.ok([...l].length <= 119, `fits 120: ${l}`);
  t.match(lines[0], /^ 50% \[#+\.+\]\s+4\.0 MiB \/ 8\.0 MiB\s+1\.0 MiB\/s\s+0:04\s+…\S*-0001\.mp4$/, 'known size: percent, size, speed, ETA');
  t.match(lines[1], /^\s+\? \[\.+\]\s+4\.0 MiB\s+1\.0 MiB\/s\s+--:--\s+http:\/\/h\/b\.bin/, 'unknown size: speed, no ETA');
  const overall = lines[lines.length - 1];
  t.match(overall, /^ 16% \[#+\.+\]\s+0\/3 files\s+8\.0 MiB\s+2\.0 MiB\/s\s+ETA 0:21$/, overall);
});

t.test('bars at 64 columns keep percent, speed, ETA and the end of the URL', async (t) => {
  const { p, s } = drive(64);
  const lines = p.barLines();
  for (const l of lines) t.ok([...l].length <= 63, `fits 64: ${l}`);
  t.match(lines[0], /^ 50% \[#{5}\.{5}\]\s+1\.0 MiB\/s\s+0:04\s+…\S*-0001\.mp4$/, lines[0]);
  t.match(lines[lines.length - 1], /0\/3 files.*2\.0 MiB\/s\s+ETA 0:21$/);
  const visible = s.out.replace(ESC_RE, '').replace(/\r/g, '');
  for (const l of visible.split('\n')) t.ok([...l].length <= 63, `every drawn line fits: ${l}`);
  p.stop();
});

t.test('one overall measure: a file is one share, a running file its byte fraction, never a switch of scale', async (t) => {
  const s = new FakeStream(true, 100);
  let now = NOW;
  const p = new AddProgress({ stream: s, urls: ['http://h/1', 'http://h/2'], minIntervalMs: 0, now: () => now });
  p.onEvent({ type: 'job.queued', job: job('a', 'http://h/1') });
  p.onEvent({ type: 'job.queued', job: job('b', 'http://h/2') });
  const seen: number[] = [];
  now += 100;
  p.onEvent({ type: 'job.progress', jobId: 'a', url: 'http://h/1', bytes: 900, totalBytes: 1000 });
  seen.push(p.overallFraction());
  // b starts with a size 1000x larger: a byte measure would drop from 90% to ~0%; ours does not move back.
  p.onEvent({ type: 'job.progress', jobId: 'b', url: 'http://h/2', bytes: 0, totalBytes: 1_000_000 });
  seen.push(p.overallFraction());
  p.onEvent({ type: 'job.done', job: job('a', 'http://h/1', { state: 'done' }), record: record('http://h/1', 1000) });
  seen.push(p.overallFraction());
  p.onEvent({ type: 'job.progress', jobId: 'b', url: 'http://h/2', bytes: 500_000, totalBytes: 1_000_000 });
  seen.push(p.overallFraction());
  t.same(seen, [0.45, 0.45, 0.5, 0.75]);
  for (let i = 1; i < seen.length; i++) t.ok(seen[i] >= seen[i - 1], 'never goes back');
  p.stop();
});

t.test('a job waiting for its next attempt shows the try and when, in bars, jobs and watch', async (t) => {
  const s = new FakeStream(true, 100);
  const now = NOW;
  const p = new AddProgress({ stream: s, urls: ['http://h/slow'], minIntervalMs: 0, now: () => now });
  const retrying = job('r1', 'http://h/slow', { attempts: 1, nextRetryAt: new Date(NOW + 12_000).toISOString(), lastError: { code: 'E_TIMEOUT', message: 'no answer in 30000 ms' } });
  p.onEvent({ type: 'job.queued', job: retrying });
  t.match(p.barLines()[0], /try 2, retry in 12s \(E_TIMEOUT\)\s+http:\/\/h\/slow/);
  p.stop();
  const table = renderJobs({ jobs: [retrying], total: 1 }, { now: NOW });
  t.match(table, /^r1\s+queued\s+1\s+1m ago\s+http:\/\/h\/slow\s+retry in 12s \(E_TIMEOUT\)$/m);
  t.match(renderEvent({ type: 'job.queued', job: retrying }, new Date(NOW)), /retrying\s+r1\s+try 2, retry in 12s \(E_TIMEOUT\)\s+http:\/\/h\/slow/);
  const failed = job('r1', 'http://h/slow', { state: 'failed', attempts: 4 });
  t.match(renderEvent({ type: 'job.failed', job: failed, error: { code: 'E_TIMEOUT', message: 'no answer' } }, new Date(NOW)), /E_TIMEOUT: no answer \(after 4 tries\)/);
});

t.test('jobs table fits 64 and 120 columns; piped it is not cut', async (t) => {
  const jobs = Array.from({ length: 4 }, (_, i) =>
    job(`j${i}`, `${LONG}?n=${i}`, i % 2 ? { state: 'failed', attempts: 3, error: { code: 'E_NETWORK', message: 'connect ECONNREFUSED 127.0.0.1:9 while fetching the thing' } } : { state: 'done', attempts: 1, md5: '9e107d9d372bb6826bd81d3542a419d6' }),
  );
  for (const width of [63, 119]) {
    const out = renderJobs({ jobs, total: 4 }, { now: NOW, width });
    for (const l of out.trimEnd().split('\n')) t.ok([...l].length <= width, `${width + 1} cols: ${l}`);
    t.match(out, /…\S*n=1/, 'URLs keep their end');
    t.match(out, /^j1\s+failed\s+3\s+1m ago\s+/m);
  }
  const piped = renderJobs({ jobs, total: 4 }, { now: NOW });
  t.match(piped, new RegExp(LONG.replace(/[.?/]/g, '\\$&')), 'full URL when no width is given');
});

t.test('colour: green done, red failed on a TTY; none with NO_COLOR, TERM=dumb or a pipe', async (t) => {
  t.equal(colorWanted({ isTTY: true }, {}), true);
  t.equal(colorWanted({ isTTY: true }, { NO_COLOR: '1' }), false);
  t.equal(colorWanted({ isTTY: true }, { NO_COLOR: '' }), true, 'an empty NO_COLOR does not count (no-color.org)');
  t.equal(colorWanted({ isTTY: true }, { TERM: 'dumb' }), false);
  t.equal(colorWanted({ isTTY: false }, {}), false);
  const rec = record('http://h/a.mp4', 10);
  t.match(renderAddItem({ url: 'http://h/a.mp4', state: 'done', record: rec }, ANSI_PAINT), /^\x1b\[32mdone  \x1b\[39m/);
  t.match(renderAddItem({ url: 'http://h/a.mp4', state: 'failed', error: { code: 'E_HTTP', status: 500, message: 'HTTP 500' } }, ANSI_PAINT), /^\x1b\[31mfailed\x1b\[39m/);
  const painted = renderJobs({ jobs: [job('j1', 'http://h/a', { state: 'failed', error: { code: 'E_HTTP', message: 'x' } })], total: 1 }, { now: NOW, paint: ANSI_PAINT, width: 80 });
  t.match(painted, /\x1b\[31mfailed\x1b\[39m/);
  t.equal(painted.replace(ESC_RE, ''), renderJobs({ jobs: [job('j1', 'http://h/a', { state: 'failed', error: { code: 'E_HTTP', message: 'x' } })], total: 1 }, { now: NOW, width: 80 }), 'same layout with and without colour');

  // A whole --wait run on a TTY with NO_COLOR: bars (cursor codes) but no colour codes.
  const s = new FakeStream(true, 80);
  const p = new AddProgress({ stream: s, urls: ['http://h/a.mp4'], minIntervalMs: 0, paint: paintFor(s, { NO_COLOR: '1' }) });
  p.onEvent({ type: 'job.queued', job: job('j1', 'http://h/a.mp4') });
  p.onEvent({ type: 'job.done', job: job('j1', 'http://h/a.mp4', { state: 'done' }), record: rec });
  p.finish([]);
  t.notMatch(s.out, /\x1b\[\d*m/, 'no SGR colour codes with NO_COLOR');
  t.match(s.out, /done\s+9e107d9d372b/);
});

t.test('text from outside cannot reach the terminal raw', async (t) => {
  t.equal(printable('a\x1b[2Jb\x00c\x7f\u202e'), 'a\\x1b[2Jb\\x00c\\x7f\\u202e');
  t.equal(printable('\ufffd\ufffd'), '\\ufffd\\ufffd', 'undecodable bytes are shown as escapes');
  t.equal(printable('x'.repeat(300), 10), `${'x'.repeat(10)}…`);
  t.equal(errorText({ code: 'E_HTTP', status: 404, message: 'HTTP 404' }), 'E_HTTP: HTTP 404');
  t.equal(errorText({ code: 'E_HTTP', status: 302, message: 'too many redirects' }), 'E_HTTP 302: too many redirects');
});

t.test('RateMeter: bytes per second over the recent window', async (t) => {
  const m = new RateMeter();
  t.equal(m.rate(0), undefined);
  m.add(0, 0);
  m.add(1000, 1000);
  t.equal(m.rate(1000), 1000);
  for (let i = 2; i <= 20; i++) m.add(i * 1000, i * 1000 + (i > 10 ? (i - 10) * 1000 : 0));
  t.ok(m.rate(20_000)! > 1500, 'follows the recent speed, not the average since the start');
  t.ok(m.rate(40_000)! < m.rate(20_000)!, 'a stall lowers the speed');
});
