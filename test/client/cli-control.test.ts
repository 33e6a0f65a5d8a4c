/**
 * mcctl's main() in-process against the NDJSON test server: remove's prefix
 * rule and confirmation, the --wait --timeout exit code, job control
 * (cancel, retry, prune, --priority) as requests and output, the jobs table
 * on a narrow terminal, and a binary -f file.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { main, type CliIO } from '../../src/client/cli.js';
import type { JobInfo } from '../../src/core/protocol/rpc.js';
import type { MediaRecord } from '../../src/core/types.js';
import { NO_REPLY, RpcFault, appFault, startFakeServer, type FakeServer } from './ndjson-server.js';
import { RPC_ERRORS } from '../../src/core/protocol/rpc.js';

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

async function run(argv: string[], over: Partial<CliIO> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const i = { stdout: new Capture(), stderr: new Capture(), env: {}, ...over } as CliIO & { stdout: Capture; stderr: Capture };
  const code = await main(argv, i);
  return { code, stdout: i.stdout.out, stderr: i.stderr.out };
}

const MD5 = '0123456789abcdef0123456789abcdef';
function rec(): MediaRecord {
  const now = new Date().toISOString();
  return { md5: MD5, sha256: 'ab'.repeat(32), localPath: `/c/images/${MD5}.png`, fileSize: 2048, mimeType: 'image/png', mediaType: 'image', extension: '.png', url: 'http://h/a.png', urls: ['http://h/a.png'], fetchedAt: now, verifiedAt: now };
}
function job(id: string, over: Partial<JobInfo> = {}): JobInfo {
  const now = new Date().toISOString();
  return { id, url: `http://h/${id}.png`, state: 'queued', priority: 0, attempts: 0, createdAt: now, updatedAt: now, source: 'rpc', ...over };
}

async function server(t: { teardown(fn: () => unknown): void }): Promise<FakeServer> {
  const s = await startFakeServer({
    find: () => rec(),
    remove: (p) => ({ removed: { ...rec(), md5: String(p.md5) } }),
  });
  t.teardown(() => s.close());
  return s;
}

/** A stdin that claims to be a terminal and answers `answer` once asked. */
function ttyStdin(answer: string | undefined): PassThrough & { isTTY: boolean } {
  const p = Object.assign(new PassThrough(), { isTTY: true });
  p.pause();
  const origResume = p.resume.bind(p);
  p.resume = () => {
    setImmediate(() => (answer === undefined ? p.end() : p.write(answer)));
    return origResume();
  };
  return p;
}

t.test('remove: a short prefix is refused before any request; the daemon refuses it too', async (t) => {
  const s = await server(t);
  for (const short of ['9', 'abc', '0123456']) {
    const r = await run(['remove', short, '--yes', '--socket', s.socket]);
    t.equal(r.code, 2, short);
    t.match(r.stderr, /^mcctl: remove needs at least 8 hex digits of the md5 \(or all 32\)[^\n]*\n$/);
  }
  t.equal(s.requests.length, 0, 'nothing was sent');
});

t.test('remove on a terminal asks first; "n" keeps the file, "y" removes exactly the file shown; --yes skips', async (t) => {
  const s = await server(t);
  const no = await run(['remove', '01234567', '--socket', s.socket], { stdin: ttyStdin('n\n') });
  t.equal(no.code, 1);
  t.match(no.stderr, new RegExp(`remove ${MD5} \\(image/png, 2\\.0 KiB\\) /c/images/${MD5}\\.png\\? \\[y/N\\] `));
  t.match(no.stderr, /nothing removed/);
  t.same(s.requests.map((r) => r.method), ['find'], 'asked, did not remove');

  const eof = await run(['remove', '01234567', '--socket', s.socket], { stdin: ttyStdin(undefined) });
  t.equal(eof.code, 1, 'end of input is a no');

  const yes = await run(['remove', '01234567', '--socket', s.socket], { stdin: ttyStdin('y\n') });
  t.equal(yes.code, 0, yes.stderr);
  t.same(s.requests.at(-1), { method: 'remove', params: { md5: MD5 } }, 'removed by the full md5 that was shown');
  t.match(yes.stdout, `removed ${MD5}`);

  const n = s.requests.length;
  const skip = await run(['remove', '01234567', '--yes', '--socket', s.socket], { stdin: ttyStdin('n\n') });
  t.equal(skip.code, 0);
  t.same(s.requests.slice(n), [{ method: 'remove', params: { md5: '01234567' } }], '--yes: no question, no find');
});

t.test('add --wait --timeout: the wait ends with exit 4 while the daemon goes on; a silent daemon is still exit 3', async (t) => {
  const s = await server(t);
  s.handle('subscribe', () => ({ events: [] }));
  s.handle('add', (p, conn) => {
    for (const url of p.urls as string[]) conn.notify({ type: 'job.queued', job: { ...job('j1'), url } });
    return NO_REPLY;
  });
  s.handle('status', () => ({}));
  const started = Date.now();
  const r = await run(['add', 'http://h/slow.mp4', '--wait', '--timeout', '300', '--socket', s.socket]);
  t.equal(r.code, 4);
  t.match(r.stderr, /^mcctl: stopped waiting after 300 ms \(--timeout\); the daemon goes on with 1 of 1 downloads \(mcctl jobs shows them\)\n$/);
  t.ok(Date.now() - started < 3000);
  const tty = new Capture(true, 80);
  const live = await run(['add', 'http://h/slow.mp4', '--wait', '--timeout', '300', '--socket', s.socket], { stdout: tty });
  t.equal(live.code, 4);
  t.match(live.stderr, /goes on with 1 of 1 downloads/);
  t.match(tty.out, /0\/1 files/, 'the bars were up');
  t.ok(tty.out.endsWith('\x1b[?25h'), 'bars taken down');

  s.handle('sweep', () => NO_REPLY);
  const sw2 = await run(['sweep', '--wait', '--timeout', '300', '--socket', s.socket]);
  t.equal(sw2.code, 4);
  t.match(sw2.stderr, /the sweep goes on/);

  s.handle('status', () => NO_REPLY);
  const dead = await run(['add', 'http://h/slow.mp4', '--wait', '--timeout', '300', '--socket', s.socket]);
  t.equal(dead.code, 3, 'no answer to the liveness check either: unreachable');
  t.match(dead.stderr, /did not answer "status"/);
});

t.test('cancel, retry, prune and add --priority send their parameters and report', async (t) => {
  const s = await server(t);
  // As the daemon answers (src/daemon/jobs/control.ts): the job as it is now, or E_NOT_FOUND.
  s.handle('cancel', (p) => {
    if (p.id === 'nope') throw appFault('E_NOT_FOUND', 'no job nope');
    return { job: job(String(p.id ?? 'j1'), { state: 'failed' }), cancelled: true };
  });
  s.handle('retry', (p) => ({ jobs: p.failed ? [job('j1'), job('j2')] : [job(String(p.id))] }));
  s.handle('prune', () => ({ pruned: 7, remaining: 3 }));
  s.handle('add', (p) => ({ items: (p.urls as string[]).map((url) => ({ url, state: 'queued', jobId: 'j9' })) }));

  const c = await run(['cancel', 'j1', '--socket', s.socket]);
  t.equal(c.code, 0);
  t.match(c.stdout, /^cancelled\s+j1\s+http:\/\/h\/j1\.png$/m);
  await run(['cancel', 'http://h/x.png', '--socket', s.socket]);
  t.same(s.requests.at(-1)?.params, { url: 'http://h/x.png' }, 'a URL is sent as url');
  const none = await run(['cancel', 'nope', '--socket', s.socket]);
  t.equal(none.code, 2, 'nothing to cancel: exit 2');
  t.match(none.stderr, /no job nope/);

  const rf = await run(['retry', '--failed', '--socket', s.socket]);
  t.equal(rf.code, 0);
  t.same(s.requests.at(-1), { method: 'retry', params: { failed: true } });
  t.match(rf.stdout, /2 jobs queued again/);
  const r1 = await run(['retry', 'j5', '--json', '--socket', s.socket]);
  t.same(JSON.parse(r1.stdout).jobs.map((j: JobInfo) => j.id), ['j5']);

  const pr = await run(['prune', '--older-than', '7d', '--keep', '10', '--socket', s.socket]);
  t.equal(pr.code, 0);
  t.same(s.requests.at(-1), { method: 'prune', params: { olderThanMs: 7 * 86_400_000, keep: 10 } });
  t.match(pr.stdout, /forgot 7 ended jobs, 3 remembered/);

  await run(['add', 'http://h/a.png', '--priority', '-3', '--socket', s.socket]);
  t.same(s.requests.at(-1)?.params, { urls: ['http://h/a.png'], wait: false, force: false, priority: -3 });

  s.handle('prune', () => {
    throw new RpcFault(RPC_ERRORS.METHOD_NOT_FOUND, 'Method not found');
  });
  const old = await run(['prune', '--keep', '1', '--socket', s.socket]);
  t.equal(old.code, 1);
  t.match(old.stderr, /does not support "prune" \(it is older than this mcctl/);
});

t.test('jobs on a 64-column terminal fits; colours only on a TTY without NO_COLOR', async (t) => {
  const s = await server(t);
  const long = `https://media.example.org/${'deep/'.repeat(12)}clip.mp4`;
  s.handle('jobs', () => ({
    jobs: [job('j1', { url: long, state: 'failed', attempts: 4, error: { code: 'E_TIMEOUT', message: 'no data for 30000 ms' } }), job('j2', { url: long, state: 'done', attempts: 1, md5: MD5 })],
    total: 2,
  }));
  for (const cols of [64, 120]) {
    const out = new Capture(true, cols);
    t.equal((await run(['jobs', '--socket', s.socket], { stdout: out })).code, 0);
    const plain = out.out.replace(/\x1b\[[0-9;]*m/g, '');
    for (const l of plain.trimEnd().split('\n')) t.ok([...l].length < cols, `${cols}: ${l}`);
    t.match(out.out, /\x1b\[31mfailed/);
    t.match(plain, /clip\.mp4/, 'the end of the URL stays');
  }
  const nc = new Capture(true, 64);
  await run(['jobs', '--socket', s.socket], { stdout: nc, env: { NO_COLOR: '1' } });
  t.notMatch(nc.out, /\x1b/, 'NO_COLOR: no escape sequences');
  const piped = await run(['jobs', '--socket', s.socket]);
  t.notMatch(piped.stdout, /\x1b/);
  t.match(piped.stdout, long, 'piped: the whole URL');
});

t.test('add -f of a binary file: one line, exit 2, none of its bytes echoed', async (t) => {
  const s = await server(t);
  const dir = t.testdir();
  const bin = path.join(dir, 'photo.jpg');
  fs.writeFileSync(bin, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x1b, 0x5b, 0x32, 0x4a, 0x0a, 0x80, 0x81]));
  const r = await run(['add', '-f', 'photo.jpg', '--socket', s.socket], { cwd: dir });
  t.equal(r.code, 2);
  t.match(r.stderr, /^mcctl: photo\.jpg is not a text file of URLs \(it holds NUL bytes\)[^\n]*\n$/);
  t.notMatch(r.stderr + r.stdout, /[\x00\x1b\x80-\x9f\ufffd]/, 'no raw bytes');
  // Without NUL bytes, control characters and undecodable bytes of bad lines come out escaped.
  const junk = path.join(dir, 'junk.urls');
  fs.writeFileSync(junk, Buffer.concat([Buffer.from('http://h/ok.png\n\x1b[2Jnot-a-url'), Buffer.from([0x80, 0x81]), Buffer.from('\n')]));
  s.handle('add', (p) => ({ items: (p.urls as string[]).map((url) => ({ url, state: 'queued', jobId: 'j1' })) }));
  const j = await run(['add', '-f', 'junk.urls', '--socket', s.socket], { cwd: dir });
  t.equal(j.code, 1, 'a bad line is a failed item');
  t.notMatch(j.stdout, /[\x00-\x09\x0b-\x1f\x80-\x9f\ufffd]/, `escaped: ${JSON.stringify(j.stdout)}`);
  t.match(j.stdout, /^failed  E_INVALID_URL: junk\.urls:2: not a URL \(contains whitespace or control characters\): "\\u001b\[2Jnot-a-url\\ufffd\\ufffd"$/m);
  t.equal(j.stdout.split('not-a-url').length - 1, 1, 'the bad line is shown once');
});
