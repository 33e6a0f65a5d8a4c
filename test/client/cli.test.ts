/**
 * mcctl's main() in-process against a tiny NDJSON JSON-RPC server on a real
 * Unix socket: what goes to stdout/stderr and which exit code, per command.
 * The daemon itself is exercised in mcctl-e2e.test.ts.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { main, resolveSocket, socketPathProblem, type CliIO } from '../../src/client/cli.js';
import { currentPlatformEnv, defaultSocketPath } from '../../src/core/util/paths.js';
import type { AddParams, RpcEvent, StatusResult, SweepReport } from '../../src/core/protocol/rpc.js';
import type { MediaRecord } from '../../src/core/types.js';
import { appFault, NO_REPLY, startFakeServer, tempSocketPath, type FakeServer } from './ndjson-server.js';
import { waitFor } from '../helpers/wait.js';

class Capture {
  out = '';
  constructor(
    readonly isTTY = false,
    readonly columns = 100,
  ) {}
  write(s: string): boolean {
    this.out += s;
    return true;
  }
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function io(over: Partial<CliIO> = {}): CliIO & { stdout: Capture; stderr: Capture } {
  return { stdout: new Capture(), stderr: new Capture(), env: {}, ...over } as CliIO & { stdout: Capture; stderr: Capture };
}

async function run(argv: string[], over: Partial<CliIO> = {}): Promise<Run> {
  const i = io(over);
  const code = await main(argv, i);
  return { code, stdout: i.stdout.out, stderr: i.stderr.out };
}

function rec(md5: string, url: string, over: Partial<MediaRecord> = {}): MediaRecord {
  return {
    md5,
    sha256: 'ab'.repeat(32),
    localPath: `/c/images/${md5}.png`,
    fileSize: 2048,
    mimeType: 'image/png',
    mediaType: 'image',
    extension: '.png',
    url,
    urls: [url],
    fetchedAt: new Date().toISOString(),
    verifiedAt: new Date().toISOString(),
    width: 4,
    height: 3,
    ...over,
  };
}

const MD5 = '0123456789abcdef0123456789abcdef';
const STATS = {
  totalFiles: 2,
  totalSize: 3072,
  byType: { image: { count: 2, size: 3072 }, video: { count: 0, size: 0 }, audio: { count: 0, size: 0 }, document: { count: 0, size: 0 } },
  queue: { queued: 0, running: 0, done: 2, failed: 0 },
};

async function server(t: { teardown(fn: () => unknown): void }): Promise<FakeServer> {
  const s = await startFakeServer({
    stats: () => STATS,
    find: (p) => {
      if (p.url === 'http://h/a.png' || (typeof p.md5 === 'string' && MD5.startsWith(p.md5))) return rec(MD5, 'http://h/a.png');
      throw appFault('E_NOT_FOUND', `nothing cached for ${String(p.md5 ?? p.url)}`);
    },
    verify: (p) => {
      if (p.all) return { checked: 2, ok: 1, bad: [{ md5: MD5, localPath: '/c/images/x.png', reason: 'mismatch' }] };
      if (p.md5 === 'bad') return { checked: 1, ok: 0, bad: [{ md5: MD5, localPath: '/c/images/x.png', reason: 'mismatch' }] };
      if (typeof p.md5 === 'string' && MD5.startsWith(p.md5)) return { checked: 1, ok: 1, bad: [] };
      throw appFault('E_NOT_FOUND', `no cached file matches ${String(p.md5)}`);
    },
    jobs: () => ({ jobs: [], total: 0 }),
    remove: (p) => ({ removed: rec(String(p.md5), 'http://h/a.png') }),
  });
  t.teardown(() => s.close());
  return s;
}


t.test('stats: a table for people, exactly one JSON document with --json', async (t) => {
  const s = await server(t);
  const h = await run(['stats', '--socket', s.socket]);
  t.equal(h.code, 0);
  t.match(h.stdout, /^image\s+2\s+3\.0 KiB$/m);
  t.equal(h.stderr, '');
  const j = await run(['stats', '--json', '--socket', s.socket]);
  t.equal(j.code, 0);
  t.same(JSON.parse(j.stdout), STATS, 'stdout is one JSON document');
  t.equal(j.stderr, '');
});

t.test('the socket: --socket, else MEDIACACHE_SOCKET', async (t) => {
  const s = await server(t);
  const r = await run(['stats', '--json'], { env: { MEDIACACHE_SOCKET: s.socket } });
  t.equal(r.code, 0);
  t.equal(JSON.parse(r.stdout).totalFiles, 2);
  const { dir, socket } = tempSocketPath();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const over = await run(['stats', '--socket', socket], { env: { MEDIACACHE_SOCKET: s.socket } });
  t.equal(over.code, 3, '--socket wins over the environment');
  t.match(over.stderr, socket);
});

t.test('unreachable daemon: exit 3 fast, names the socket and how to start the daemon, nothing on stdout', async (t) => {
  const { dir, socket } = tempSocketPath();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const argv of [['stats'], ['status', '--json'], ['verify', 'abc'], ['add', 'http://h/a.png', '--wait'], ['watch'], ['jobs'], ['sweep'], ['find', 'ab'], ['remove', 'abcdef12', '--yes']]) {
    const started = Date.now();
    const r = await run([...argv, '--socket', socket]);
    t.equal(r.code, 3, `${argv.join(' ')} exits 3`);
    t.ok(Date.now() - started < 2000, 'within 2 s');
    t.equal(r.stdout, '');
    t.match(r.stderr, socket);
    t.match(r.stderr, /mediacached/);
  }
  const long = await run(['stats', '--socket', `/tmp/${'x'.repeat(120)}.sock`]);
  t.equal(long.code, 2, 'a socket path longer than the platform allows is a usage error');
  t.match(long.stderr, /longer than/);
});

t.test('verify: 0 when intact, 1 on corruption, 2 for an unknown md5', async (t) => {
  const s = await server(t);
  const ok = await run(['verify', MD5.slice(0, 12), '--socket', s.socket]);
  t.equal(ok.code, 0);
  t.match(ok.stdout, /1 checked, 1 ok, 0 bad/);
  const bad = await run(['verify', 'bad', '--socket', s.socket]);
  t.equal(bad.code, 1);
  t.match(bad.stdout, /CORRUPT/);
  const all = await run(['verify', '--all', '--json', '--socket', s.socket]);
  t.equal(all.code, 1);
  t.equal(JSON.parse(all.stdout).bad.length, 1);
  const unknown = await run(['verify', 'ffff', '--socket', s.socket]);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /E_NOT_FOUND: no cached file matches ffff/);
  t.equal(unknown.stdout, '');
  t.same(
    s.requests.filter((r) => r.method === 'verify').map((r) => r.params),
    [{ md5: MD5.slice(0, 12) }, { md5: 'bad' }, { all: true }, { md5: 'ffff' }],
  );
});

t.test('find by URL and by prefix; not found exits 2', async (t) => {
  const s = await server(t);
  const byUrl = await run(['find', 'http://h/a.png', '--json', '--socket', s.socket]);
  t.equal(byUrl.code, 0);
  t.equal(JSON.parse(byUrl.stdout).md5, MD5);
  const byPrefix = await run(['find', MD5.slice(0, 8).toUpperCase(), '--socket', s.socket]);
  t.equal(byPrefix.code, 0);
  t.match(byPrefix.stdout, /^dimensions\s+4x3$/m);
  const none = await run(['find', 'http://h/none.png', '--socket', s.socket]);
  t.equal(none.code, 2);
  t.same(
    s.requests.filter((r) => r.method === 'find').map((r) => r.params),
    [{ url: 'http://h/a.png' }, { md5: MD5.slice(0, 8) }, { url: 'http://h/none.png' }],
    'a query with :// is a URL, anything else an md5 prefix (lowercased)',
  );
});

t.test('add -f: BOM, CRLF, comments, duplicates; bad lines reported with their line numbers (exit 1)', async (t) => {
  const s = await server(t);
  s.handle('add', (p) => ({ items: (p as unknown as AddParams).urls.map((url, i) => ({ url, state: 'queued', jobId: `j${i}` })) }));
  const dir = t.testdir({ 'list.urls': '\ufeff# a comment\r\nhttp://h/a.png\r\n\r\n  http://h/b.png  \r\nftp://h/c.png\r\nhttp://h/a.png\r\n' });
  const r = await run(['add', '-f', path.join(dir, 'list.urls'), 'http://h/z.png', '--socket', s.socket]);
  t.same(s.requests.find((q) => q.method === 'add')?.params, { urls: ['http://h/z.png', 'http://h/a.png', 'http://h/b.png'], wait: false, force: false });
  t.equal(r.code, 1, 'a bad line counts as a failed job');
  t.match(r.stdout, /failed\s+E_UNSUPPORTED_SCHEME: .*list\.urls:5: /);
  t.match(r.stdout, /^queued\s+j0\s+http:\/\/h\/z\.png$/m);
  t.match(r.stdout, /3 queued/);

  const stdin = await run(['add', '-f', '-', '--json', '--socket', s.socket], { stdin: Readable.from([Buffer.from('http://h/s1.png\nhttp://h/s2.png\n')]) });
  t.equal(stdin.code, 0);
  t.same(
    JSON.parse(stdin.stdout).items.map((i: { url: string }) => i.url),
    ['http://h/s1.png', 'http://h/s2.png'],
  );
  const missing = await run(['add', '-f', path.join(dir, 'nope.urls'), '--socket', s.socket]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /cannot read .*nope\.urls/);
  const empty = await run(['add', '-f', '-', '--socket', s.socket], { stdin: Readable.from([Buffer.from('# nothing\n')]) });
  t.equal(empty.code, 2);
  t.match(empty.stderr, /no URLs/);
});

/** An `add` handler that plays a download with events, then answers like `wait: true`. */
function playAdd(s: FakeServer, steps = 4): void {
  s.handle('subscribe', (p) => ({ events: (p.events as string[]) ?? [] }));
  s.handle('add', (params, conn, id) => {
    const p = params as unknown as AddParams;
    const items = p.urls.map((url, i) => ({ url, jobId: `j${i}` }));
    void (async () => {
      for (const it of items) conn.notify({ type: 'job.queued', job: { id: it.jobId, url: it.url, state: 'queued', priority: 0, attempts: 0, createdAt: '', updatedAt: '', source: 'rpc' } } satisfies RpcEvent);
      for (let k = 1; k <= steps; k++) {
        for (const it of items) {
          if (it.url.includes('404')) continue;
          conn.notify({ type: 'job.progress', jobId: it.jobId, url: it.url, bytes: (k * 4000) / steps, totalBytes: 4000 } satisfies RpcEvent);
        }
        await new Promise((r) => setTimeout(r, 30));
      }
      const out = items.map((it, i) =>
        it.url.includes('404')
          ? { url: it.url, state: 'failed', jobId: it.jobId, error: { code: 'E_HTTP', status: 404, message: 'HTTP 404 Not Found' } }
          : { url: it.url, state: 'done', jobId: it.jobId, record: rec(String(i).repeat(32).slice(0, 32), it.url, { fileSize: 4000 }) },
      );
      for (const o of out) {
        const job = { id: o.jobId, url: o.url, state: o.state, priority: 0, attempts: 1, createdAt: '', updatedAt: '', source: 'rpc' } as const;
        if (o.error) conn.notify({ type: 'job.failed', job: { ...job, state: 'failed' }, error: o.error } as RpcEvent);
        else conn.notify({ type: 'job.done', job: { ...job, state: 'done' }, record: o.record! } as RpcEvent);
      }
      conn.reply(id, { items: out });
    })();
    return NO_REPLY;
  });
}

t.test('add --wait on a terminal: subscribes first, bars move, exit 1 when a job failed', async (t) => {
  const s = await server(t);
  playAdd(s);
  const i = io({ stdout: new Capture(true, 120) });
  const code = await main(['add', 'http://h/a.png', 'http://h/404.png', '--wait', '--socket', s.socket], i);
  t.equal(code, 1);
  t.same(
    s.requests.map((r) => r.method),
    ['subscribe', 'add'],
    'subscribed before adding',
  );
  const out = i.stdout.out;
  t.match(out, /\x1b\[\d+A/, 'redrawn in place');
  const pcts = new Set(out.match(/\d+%/g));
  t.ok(pcts.size >= 2, `several percentages shown: ${[...pcts].join(' ')}`);
  t.match(out, /failed\x1b\[39m\s+E_HTTP: HTTP 404/, 'failed line in red, the status said once');
  t.match(out, /\x1b\[32mdone/, 'done line in green');
  t.match(out, /1 done, 1 failed/);
  t.ok(out.includes('\x1b[?25h'), 'cursor restored');
});

t.test('add --wait piped: plain lines, no escape codes; --json: one document', async (t) => {
  const s = await server(t);
  playAdd(s);
  const r = await run(['http://h/a.png', 'http://h/b.png', '--socket', s.socket]);
  t.equal(r.code, 0, 'the seed shorthand: mcctl <url> waits');
  t.notMatch(r.stdout, /\x1b/);
  t.equal(r.stdout.trimEnd().split('\n').length, 3, 'one line per job and a summary');
  t.match(r.stdout, /2 done, 0 failed/);

  // --json does not subscribe: the add reply is the document.
  s.handle('add', (p) => ({ items: (p as unknown as AddParams).urls.map((url) => ({ url, state: 'done', record: rec(MD5, url), cached: true })) }));
  const j = await run(['add', 'http://h/a.png', '--wait', '--json', '--socket', s.socket]);
  t.equal(j.code, 0);
  const doc = JSON.parse(j.stdout);
  t.equal(doc.items[0].record.md5, MD5);
});

t.test('Ctrl-C while waiting: bars removed, cursor back, exit 130; watch ends with 0', async (t) => {
  const s = await server(t);
  s.handle('subscribe', () => ({ events: [] }));
  s.handle('add', () => NO_REPLY);
  const ac = new AbortController();
  const i = io({ stdout: new Capture(true), signal: ac.signal });
  const p = main(['add', 'http://h/a.png', '--wait', '--socket', s.socket], i);
  await waitFor(() => s.requests.some((r) => r.method === 'add'), { what: 'add request' });
  for (const c of s.conns) c.notify({ type: 'job.queued', job: { id: 'j', url: 'http://h/a.png', state: 'queued', priority: 0, attempts: 0, createdAt: '', updatedAt: '', source: 'rpc' } });
  await waitFor(() => i.stdout.out.includes('0/1 files'), { what: 'a bar' });
  ac.abort();
  t.equal(await p, 130);
  t.ok(i.stdout.out.endsWith('\x1b[?25h'), 'cursor shown again');
  t.match(i.stderr.out, /stopped waiting/);

  const ac2 = new AbortController();
  const w = io({ signal: ac2.signal });
  const wp = main(['watch', '--json', '--socket', s.socket], w);
  await waitFor(() => s.requests.filter((r) => r.method === 'subscribe').length === 2, { what: 'watch subscribed' });
  const ev: RpcEvent = { type: 'job.progress', jobId: 'j', url: 'http://h/a.png', bytes: 1 };
  for (const c of s.conns) c.notify(ev);
  await waitFor(() => w.stdout.out.length > 0, { what: 'event printed' });
  ac2.abort();
  t.equal(await wp, 0);
  t.same(
    w.stdout.out
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l)),
    [ev],
    'JSON lines, nothing else',
  );
});

t.test('watch reconnects when the daemon goes away; a lost connection mid-request exits 3', async (t) => {
  const s = await server(t);
  s.handle('subscribe', () => ({ events: [] }));
  const ac = new AbortController();
  const w = io({ signal: ac.signal });
  const wp = main(['watch', '--socket', s.socket], w);
  await waitFor(() => s.requests.some((r) => r.method === 'subscribe'), { what: 'subscribe' });
  for (const c of s.conns) c.sock.destroy();
  await waitFor(() => s.requests.filter((r) => r.method === 'subscribe').length === 2, { what: 'subscribed again' });
  await waitFor(() => /reconnected/.test(w.stderr.out), { what: 'reconnected notice' });
  t.match(w.stderr.out, /lost the daemon at .*; reconnecting/);
  ac.abort();
  t.equal(await wp, 0, 'Ctrl-C still ends it with 0');

  s.handle('status', (_p, conn) => {
    conn.sock.destroy();
    return NO_REPLY;
  });
  const r = await run(['status', '--socket', s.socket]);
  t.equal(r.code, 3);
  t.match(r.stderr, s.socket);
});

t.test('--timeout: no answer in time exits 3 and says so', async (t) => {
  const s = await server(t);
  s.handle('stats', () => NO_REPLY);
  const started = Date.now();
  const r = await run(['stats', '--timeout', '200', '--socket', s.socket]);
  t.equal(r.code, 3);
  t.match(r.stderr, /did not answer "stats" within 200 ms/);
  t.ok(Date.now() - started < 2000);
});

t.test('jobs, sweep, status, remove', async (t) => {
  const s = await server(t);
  const j = await run(['jobs', '--state', 'failed', '--limit', '5', '--socket', s.socket]);
  t.equal(j.code, 0);
  t.same(s.requests.find((r) => r.method === 'jobs')?.params, { state: 'failed', limit: 5 });
  const report: SweepReport = {
    id: 'sw1',
    startedAt: new Date().toISOString(),
    finishedAt: new Date().toISOString(),
    durationMs: 1200,
    complete: true,
    checked: 5,
    bytesHashed: 5000,
    missing: [],
    corrupt: [MD5],
    quarantined: [],
    repaired: [],
    unrepaired: [{ md5: MD5, error: { code: 'E_HTTP', status: 404, message: 'gone' } }],
    changedUpstream: [],
    adopted: [],
    cleanedTmp: 0,
    steps: [],
  };
  s.handle('sweep', (p) => (p.wait ? { report, joined: false, id: 'sw1' } : { joined: false, id: 'sw2' }));
  const sw = await run(['sweep', '--wait', '--socket', s.socket]);
  t.equal(sw.code, 1, 'a sweep that could not repair something exits 1');
  t.match(sw.stdout, /^unrepaired\s+0123456789abcdef0123456789abcdef\s+E_HTTP 404: gone$/m);
  const bg = await run(['sweep', '--socket', s.socket]);
  t.equal(bg.code, 0);
  t.match(bg.stdout, /sweep sw2 started/);
  const st: StatusResult = {
    version: '0.1.0',
    pid: 42,
    startedAt: new Date().toISOString(),
    uptimeMs: 3723_000,
    paths: { cacheDir: '/c', indexDir: '/c/index', socket: s.socket, inboxes: ['/in/a', '/in/b'] },
    config: { concurrency: 5, perHost: 2, timeoutMs: 30000, maxFileSize: 2 ** 31, sweepSchedule: '0 3 * * *', logLevel: 'info' },
    queue: { queued: 1, running: 1, done: 0, failed: 0 },
    active: [{ jobId: 'j', url: 'http://h/big.mp4', bytes: 512, totalBytes: 1024, startedAt: new Date().toISOString() }],
    sweepRunning: false,
    nextSweepAt: new Date(Date.now() + 3 * 3600_000).toISOString(),
  };
  s.handle('status', () => st);
  const stR = await run(['status', '--socket', s.socket]);
  t.equal(stR.code, 0);
  t.match(stR.stdout, /mediacached 0\.1\.0, pid 42, up 1h 2m 3s/);
  t.match(stR.stdout, /^inboxes\s+\/in\/a\n\s+\/in\/b$/m);
  t.match(stR.stdout, /big\.mp4 50% 512 B \/ 1\.0 KiB/);
  t.match(stR.stdout, /^next sweep\s+in 3h \(0 3 \* \* \*\)$/m);
  t.match(stR.stdout, /^last sweep\s+never$/m);
  const rm = await run(['remove', MD5, '--socket', s.socket]);
  t.same(s.requests.at(-1), { method: 'remove', params: { md5: MD5 } }, 'not on a terminal: no question, no find first');
  t.equal(rm.code, 0);
  t.match(rm.stdout, `removed ${MD5}`);
});

t.test('usage errors exit 2 with one line on stderr and nothing on stdout', async (t) => {
  for (const argv of [['bogus'], ['stats', '--bad'], [], ['jobs', '--state', 'nope'], ['remove', '9'], ['remove', 'xyz12345'], ['help', 'bogus']]) {
    const r = await run(argv);
    t.equal(r.code, 2, argv.join(' '));
    t.equal(r.stdout, '');
    t.match(r.stderr, /^mcctl: [^\n]+\n$/, `one line: ${r.stderr}`);
  }
  const h = await run(['--help']);
  t.equal(h.code, 0);
  t.match(h.stdout, /Commands:/);
  t.equal(h.stderr, '');
});

t.test('add: more URLs than one call may carry go as several calls; items come back in order', async (t) => {
  const s = await server(t);
  s.handle('add', (p) => ({ items: (p as unknown as AddParams).urls.map((url) => ({ url, state: 'queued', jobId: url.slice(-5) })) }));
  const urls = Array.from({ length: 12_001 }, (_, i) => `http://h/${i}.png`);
  const dir = t.testdir({ 'big.urls': urls.join('\n') });
  const r = await run(['add', '-f', path.join(dir, 'big.urls'), '--json', '--socket', s.socket]);
  t.equal(r.code, 0, r.stderr);
  const calls = s.requests.filter((q) => q.method === 'add').map((q) => (q.params as AddParams).urls.length);
  t.same(calls, [5000, 5000, 2001]);
  t.same(
    JSON.parse(r.stdout).items.map((i: { url: string }) => i.url),
    urls,
  );
});

t.test('watch for people: one line per event, repeated progress folded', async (t) => {
  const s = await server(t);
  s.handle('subscribe', () => ({ events: [] }));
  const ac = new AbortController();
  const w = io({ signal: ac.signal });
  const wp = main(['watch', '--socket', s.socket], w);
  await waitFor(() => s.requests.some((r) => r.method === 'subscribe'), { what: 'subscribe' });
  const job = { id: 'j1', url: 'http://h/a.png', state: 'queued', priority: 0, attempts: 0, createdAt: '', updatedAt: '', source: 'rpc' } as const;
  const evs: RpcEvent[] = [
    { type: 'job.queued', job },
    { type: 'job.progress', jobId: 'j1', url: job.url, bytes: 10, totalBytes: 20 },
    { type: 'job.progress', jobId: 'j1', url: job.url, bytes: 15, totalBytes: 20 },
    { type: 'job.progress', jobId: 'j1', url: job.url, bytes: 20, totalBytes: 20 },
    { type: 'job.progress', jobId: 'j1', url: job.url, bytes: 20, totalBytes: 20 },
    { type: 'job.done', job: { ...job, state: 'done' }, record: rec(MD5, job.url) },
    { type: 'sweep.progress', sweepId: 'sw', step: 'rehash', done: 3, total: 9 },
  ];
  for (const c of s.conns) for (const e of evs) c.notify(e);
  await waitFor(() => w.stdout.out.includes('rehash'), { what: 'all events' });
  ac.abort();
  t.equal(await wp, 0);
  const lines = w.stdout.out.trimEnd().split('\n');
  t.equal(lines.length, 5, 'queued, first progress, complete progress, done, sweep');
  t.match(lines[0], /queued\s+j1\s+http:\/\/h\/a\.png/);
  t.match(lines[2], /20 B \/ 20 B/);
  t.match(lines[3], /done\s+j1\s+0123456789ab/);
  t.match(lines[4], /sweep\s+sw\s+rehash 3\/9/);
  t.match(w.stderr.out, /watching/);
});

t.test('sweep --wait shows its progress on one line on a terminal, nothing extra when piped', async (t) => {
  const s = await server(t);
  s.handle('subscribe', () => ({ events: ['sweep.progress'] }));
  const report = {
    id: 'sw9', startedAt: '', finishedAt: new Date().toISOString(), durationMs: 10, complete: true, checked: 9, bytesHashed: 900,
    missing: [], corrupt: [], quarantined: [], repaired: [], unrepaired: [], changedUpstream: [], adopted: [], cleanedTmp: 0, steps: [],
  };
  s.handle('sweep', (_p, conn, id) => {
    void (async () => {
      for (const done of [3, 6, 9]) {
        conn.notify({ type: 'sweep.progress', sweepId: 'sw9', step: 'rehash', done, total: 9 } satisfies RpcEvent);
        await new Promise((r) => setTimeout(r, 20));
      }
      conn.reply(id, { id: 'sw9', joined: false, report });
    })();
    return NO_REPLY;
  });
  const tty = io({ stdout: new Capture(true, 80) });
  t.equal(await main(['sweep', '--wait', '--socket', s.socket], tty), 0);
  t.match(tty.stdout.out, /\r\x1b\[Ksweeping: rehash 3\/9/);
  t.match(tty.stdout.out, /sweeping: rehash 9\/9\r\x1b\[K/, 'the line is cleared before the report');
  t.match(tty.stdout.out, /^checked\s+9 files, 900 B$/m);
  const piped = await run(['sweep', '--wait', '--socket', s.socket]);
  t.equal(piped.code, 0);
  t.notMatch(piped.stdout, /\x1b|sweeping/);
  t.same(
    s.requests.map((r) => r.method),
    ['subscribe', 'sweep', 'sweep'],
    'only the terminal run subscribed',
  );
});

t.test('socket resolution matches the daemon; too-long paths are refused per platform', async (t) => {
  t.equal(await resolveSocket('/given.sock', { MEDIACACHE_SOCKET: '/env.sock' }), '/given.sock');
  t.equal(await resolveSocket(undefined, { MEDIACACHE_SOCKET: '/env.sock' }), '/env.sock');
  const env = { XDG_RUNTIME_DIR: '/run/user/1234' };
  t.equal(await resolveSocket(undefined, env), defaultSocketPath({ ...currentPlatformEnv(), env }), 'the same function the daemon uses');
  const p105 = `/tmp/${'x'.repeat(95)}.sock`;
  t.equal(Buffer.byteLength(p105), 105);
  t.equal(await socketPathProblem(p105, 'linux'), undefined, '105 bytes fit on Linux');
  t.match(await socketPathProblem(p105, 'darwin'), /longer than the 103/, 'but not on macOS');
  t.match(await socketPathProblem(`/tmp/${'x'.repeat(110)}`, 'linux'), /longer than the 107/);
  t.equal(await socketPathProblem('/tmp/s.sock', 'linux'), undefined);
  t.equal(await socketPathProblem('\\\\.\\pipe\\mediacache-me', 'win32'), undefined);
  t.match(await socketPathProblem('/tmp/s.sock', 'win32'), /named pipe/);
});
