/**
 * The real mediacached and its clients: every RPC method end to end, and
 * hostile clients (garbage, huge lines, floods, vanishing clients,
 * fragmented and batched writes). One daemon serves the whole file.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon, RpcClient, RpcError, type DaemonHandle } from '../helpers/daemon.js';
import { fixture, startOrigin, type Origin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';
import { RPC_ERRORS } from '../../src/core/protocol/rpc.js';

let d: DaemonHandle;
let origin: Origin;

t.before(async () => {
  origin = await startOrigin();
  origin.route('/a.jpg', { body: fixture('sample.jpg'), headers: { 'content-type': 'image/jpeg' } });
  origin.route('/b.png', { body: fixture('sample.png') });
  origin.route('/page.html', { body: '<html>nope</html>', headers: { 'content-type': 'text/html' } });
  origin.route('/slow.gif', { body: Buffer.concat([fixture('sample.gif'), Buffer.alloc(512 * 1024)]), bytesPerSec: 64 * 1024 });
  d = await startDaemon(t);
});
t.teardown(() => origin.close());

async function rpcError(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RpcError) return e;
    throw e;
  }
  throw new Error('expected an RPC error');
}

t.test('add → wait → find → verify → remove, and cached answers without a download', async (t) => {
  const r = await d.rpc('add', { urls: [origin.url('/a.jpg'), 'not a url', 'ftp://x/y.jpg', origin.url('/page.html')], wait: true });
  t.equal(r.items.length, 4);
  const [ok, garbage, ftp, html] = r.items;
  t.equal(ok!.state, 'done');
  t.equal(ok!.record?.mediaType, 'image');
  t.equal(ok!.record?.width, 64);
  t.equal(ok!.record?.url, origin.url('/a.jpg'));
  t.ok(fs.existsSync(ok!.record!.localPath));
  t.same([garbage!.state, garbage!.error?.code], ['failed', 'E_INVALID_URL'], 'a bad line fails alone');
  t.same([ftp!.state, ftp!.error?.code], ['failed', 'E_UNSUPPORTED_SCHEME']);
  t.same([html!.state, html!.error?.code], ['failed', 'E_UNSUPPORTED_TYPE']);

  const hits = origin.hits('/a.jpg');
  const again = await d.rpc('add', { urls: [origin.url('/a.jpg')] });
  t.same([again.items[0]!.state, again.items[0]!.cached, again.items[0]!.record?.md5], ['done', true, ok!.record!.md5], 'cached: answered from the index');
  t.equal(origin.hits('/a.jpg'), hits, 'no new request to the origin');
  const forced = await d.rpc('add', { urls: [origin.url('/a.jpg')], force: true, wait: true });
  t.equal(forced.items[0]!.state, 'done');
  t.notOk(forced.items[0]!.cached);
  t.ok(origin.hits('/a.jpg') > hits, 'force downloads again');

  const md5 = ok!.record!.md5;
  t.equal((await d.rpc('find', { md5: md5.slice(0, 8) })).md5, md5, 'find by prefix');
  t.equal((await d.rpc('find', { url: origin.url('/a.jpg') })).md5, md5, 'find by url');
  const nf = await rpcError(d.rpc('find', { md5: 'ffffffffffffffffffffffffffffffff' }));
  t.same([nf.code, nf.data?.code], [RPC_ERRORS.APP, 'E_NOT_FOUND']);

  t.same(await d.rpc('verify', { md5 }), { checked: 1, ok: 1, bad: [] });
  await d.rpc('add', { urls: [origin.url('/b.png')], wait: true });
  const all = await d.rpc('verify', { all: true });
  t.same([all.checked, all.ok, all.bad], [2, 2, []]);
  fs.appendFileSync(ok!.record!.localPath, 'corruption');
  const bad = await d.rpc('verify', { all: true });
  t.same(bad.bad, [{ md5, localPath: ok!.record!.localPath, reason: 'mismatch' }], 'verify --all reports the corrupt file');

  const stats = await d.rpc('stats', {});
  t.equal(stats.totalFiles, 2);
  t.equal(stats.byType.image.count, 2);
  t.ok(stats.queue.done >= 2);
  t.ok(stats.queue.failed >= 1);

  const removed = await d.rpc('remove', { md5 });
  t.equal(removed.removed.md5, md5);
  t.notOk(fs.existsSync(ok!.record!.localPath));
  const gone = await rpcError(d.rpc('remove', { md5 }));
  t.equal(gone.data?.code, 'E_NOT_FOUND');

  const jobs = await d.rpc('jobs', { state: 'failed' });
  t.ok(jobs.jobs.every((j) => j.state === 'failed'));
  t.ok(jobs.jobs.some((j) => j.url === origin.url('/page.html') && j.error?.code === 'E_UNSUPPORTED_TYPE'));
});

t.test('subscribe: job events pushed to the subscriber only', async (t) => {
  const sub = await d.connect();
  const other = await d.connect();
  t.same(await sub.call('subscribe', { events: ['job.queued', 'job.done'] }), { events: ['job.queued', 'job.done'] });
  const url = origin.url('/b.png?sub=1');
  origin.route('/b.png?sub=1', { body: Buffer.concat([fixture('sample.png'), Buffer.from('sub')]) });
  await other.call('add', { urls: [url] });
  const done = await sub.nextEvent((e) => e.type === 'job.done' && e.job.url === url);
  t.equal(done.type === 'job.done' && done.record.mediaType, 'image');
  t.ok(sub.events.some((e) => e.type === 'job.queued' && e.job.url === url));
  t.notOk(sub.events.some((e) => e.type === 'job.progress'), 'unsubscribed types are filtered');
  t.equal(other.events.length, 0, 'non-subscriber gets nothing');
});

t.test('sweep and status', async (t) => {
  const s = await d.rpc('sweep', { wait: true });
  t.ok(s.report);
  t.equal(s.report?.id, s.id);
  const st = await d.rpc('status', {});
  t.equal(st.lastSweep?.id, s.id);
  t.equal(st.sweepRunning, false);
  t.ok(st.nextSweepAt && Date.parse(st.nextSweepAt) > Date.now(), 'next sweep scheduled');
  t.equal(st.paths.cacheDir, d.cacheDir);
  t.equal(st.config.concurrency, 5);
  t.ok(st.uptimeMs >= 0);
});

t.test('bad params: -32602 with data.code E_BAD_REQUEST', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['add', {}],
    ['add', { urls: [] }],
    ['add', { urls: 'http://x/' }],
    ['add', { urls: [1, 2] }],
    ['add', { urls: Array.from({ length: 10_001 }, (_, i) => `http://x/${i}.jpg`) }],
    ['add', { urls: ['http://x/'], wait: 'yes' }],
    ['add', { urls: ['http://x/'], bogus: 1 }],
    ['verify', {}],
    ['verify', { md5: 'xyz' }],
    ['find', {}],
    ['jobs', { state: 'sleeping' }],
    ['jobs', { limit: -1 }],
    ['remove', {}],
    ['subscribe', { events: ['job.exploded'] }],
    ['stats', [1, 2]],
  ];
  const c = await d.connect();
  for (const [m, p] of cases) {
    const e = await rpcError(c.call(m, p));
    t.same([e.code, e.data?.code], [RPC_ERRORS.INVALID_PARAMS, 'E_BAD_REQUEST'], `${m} ${JSON.stringify(p).slice(0, 60)}`);
  }
  const unknown = await rpcError(c.call('explode', {}));
  t.equal(unknown.code, RPC_ERRORS.METHOD_NOT_FOUND);
});

t.test('malformed JSON gets -32700 (id null) and the connection stays usable', async (t) => {
  const c = await d.connect();
  await c.sendRaw('{"jsonrpc": "2.0", "method": "stats", "id": 1\n');
  const m = await c.waitMessage((m) => m.error?.code === RPC_ERRORS.PARSE);
  t.equal(m.id, null);
  await c.sendRaw(Buffer.from([0xff, 0xfe, 0x00, 0x0a]));
  await waitFor(() => c.messages.filter((m) => m.error?.code === RPC_ERRORS.PARSE).length === 2, { what: 'second parse error' });
  t.equal((await c.call('stats', {})).queue.queued >= 0, true, 'still usable');
});

t.test('fragmented (byte by byte) and batched (many per packet) requests', async (t) => {
  const c = await d.connect();
  const line = c.requestLine('status', {}, 'frag');
  for (const b of Buffer.from(line)) await c.sendRaw(Buffer.from([b]));
  t.equal(((await c.waitMessage((m) => m.id === 'frag')).result as { pid: number }).pid, d.pid);
  const lines = Array.from({ length: 20 }, (_, i) => c.requestLine('stats', {}, `b${i}`)).join('');
  await c.sendRaw(lines);
  await waitFor(() => Array.from({ length: 20 }, (_, i) => `b${i}`).every((id) => c.messages.some((m) => m.id === id && m.result)), { what: '20 batched replies' });
  t.pass('all 20 answered');
});

t.test('an 8 MiB line: error reply, connection closed, daemon fine', async (t) => {
  const c = await d.connect();
  const big = Buffer.alloc(8 * 1024 * 1024, 0x20);
  big[big.length - 1] = 0x0a;
  void c.sendRaw(big);
  const m = await c.waitMessage((m) => m.error?.code === RPC_ERRORS.FRAME_TOO_LARGE, 20_000);
  t.equal(m.error?.data?.code, 'E_BAD_REQUEST');
  await c.closed;
  t.pass('closed by the daemon');
  t.equal((await d.rpc('status', {})).pid, d.pid, 'daemon still serving');
});

function rssKiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

t.test('oversized lines are discarded, not buffered: 8 clients × 8 MiB', { skip: process.platform !== 'linux' }, async (t) => {
  const before = rssKiB(d.pid)!;
  const big = Buffer.alloc(8 * 1024 * 1024, 0x61);
  const clients = await Promise.all(Array.from({ length: 8 }, () => d.connect()));
  for (const c of clients) void c.sendRaw(big);
  await Promise.all(clients.map((c) => c.waitMessage((m) => m.error?.code === RPC_ERRORS.FRAME_TOO_LARGE, 30_000)));
  await Promise.all(clients.map((c) => c.closed));
  const after = rssKiB(d.pid)!;
  t.comment(`daemon RSS ${Math.round(before / 1024)} MiB → ${Math.round(after / 1024)} MiB after 64 MiB of oversized lines`);
  t.ok(after - before < 48 * 1024, 'RSS grew by far less than the 64 MiB sent');
  t.equal((await d.rpc('status', {})).pid, d.pid);
});

t.test('50 clients × 100 stats at once are all answered', async (t) => {
  const t0 = Date.now();
  const clients = await Promise.all(Array.from({ length: 50 }, () => RpcClient.connect(d.socket)));
  t.teardown(() => clients.forEach((c) => c.destroy()));
  const results = await Promise.all(clients.map((c) => Promise.all(Array.from({ length: 100 }, () => c.call('stats', {})))));
  const n = results.reduce((a, r) => a + r.length, 0);
  t.equal(n, 5000);
  t.ok(results.every((r) => r.every((s) => typeof s.totalFiles === 'number')));
  t.comment(`5000 stats over 50 connections in ${Date.now() - t0} ms`);
});

t.test('a client that disconnects mid-request does not hurt the daemon', async (t) => {
  const c = await d.connect();
  const p = c.call('add', { urls: [origin.url('/slow.gif')], wait: true }).catch((e: Error) => e);
  await waitFor(async () => (await d.rpc('status', {})).active.some((a) => a.url === origin.url('/slow.gif')), { what: 'slow download running' });
  c.destroy();
  t.type(await p, Error);
  // The job itself carries on and finishes; the daemon keeps answering.
  await waitFor(async () => (await d.rpc('find', { url: origin.url('/slow.gif') }).catch(() => undefined))?.mediaType === 'image', { timeoutMs: 30_000, what: 'slow job done' });
  t.equal((await d.rpc('status', {})).pid, d.pid);
  t.notMatch(d.stderr(), /uncaught|unhandled/i, 'no uncaught errors logged');
  t.equal(d.stdout(), '', 'daemon wrote nothing to stdout');
  t.ok(fs.existsSync(path.join(d.cacheDir, '.lock')));
});
