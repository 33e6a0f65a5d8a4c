import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ExecHooks, type HookOutcome } from '../../../src/daemon/hooks/exec-hook.js';
import type { HookEvent } from '../../../src/daemon/hooks/events.js';
import { waitFor } from '../../helpers/wait.js';

const logs: Array<[string, string, Record<string, unknown> | undefined]> = [];
const logger = {
  error: (m: string, x?: Record<string, unknown>) => logs.push(['error', m, x]),
  warn: (m: string, x?: Record<string, unknown>) => logs.push(['warn', m, x]),
  info: (m: string, x?: Record<string, unknown>) => logs.push(['info', m, x]),
  debug: (m: string, x?: Record<string, unknown>) => logs.push(['debug', m, x]),
};

function tmp(t: { teardown(fn: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-exec-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function script(dir: string, name: string, body: string): string[] {
  const p = path.join(dir, name);
  fs.writeFileSync(p, body);
  return [process.execPath, p];
}

const record = { md5: 'a'.repeat(32), sha256: 'b'.repeat(64), fileSize: 123, mimeType: 'image/png', mediaType: 'image' as const, extension: '.png', width: 4, height: 3, urls: ['http://o/x.png'], fetchedAt: '2024-01-01T00:00:00.000Z', verifiedAt: '2024-01-01T00:00:00.000Z', localPath: '/c/images/aaa.png', url: 'http://o/x.png' };
const done = (id: string): HookEvent => ({ id, type: 'job.done', createdAt: '2024-01-01T00:00:00.000Z', data: { jobId: 'j1', url: 'http://o/x.png', source: 'rpc', attempts: 1, record } });
const failed = (id: string): HookEvent => ({ id, type: 'job.failed', createdAt: '2024-01-01T00:00:00.000Z', data: { jobId: 'j2', url: 'http://o/y.png', source: 'rpc', attempts: 1, code: 'E_HTTP', message: 'HTTP 404', status: 404 } });

/** Hooks in these tests are node scripts; without tap's coverage loader they start far faster. */
const plainEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('_TAPJS') && k !== 'NODE_V8_COVERAGE'));

function outcomes(h: ExecHooks): HookOutcome[] {
  const list: HookOutcome[] = [];
  h.onOutcome = (o) => list.push(o);
  return list;
}

t.test('the hook gets the event JSON on stdin and MEDIACACHE_* variables, not the daemon settings', async (t) => {
  const dir = tmp(t);
  const out = path.join(dir, 'out.json');
  const argv = script(dir, 'h.mjs', `
    let s = ''; process.stdin.on('data', (d) => (s += d)).on('end', () => {
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('MEDIACACHE_')));
      require('node:fs').writeFileSync(process.argv[2], JSON.stringify({ stdin: JSON.parse(s), env, argv: process.argv.slice(3) }));
      process.stderr.write('hello from the hook\\n'); process.exit(3);
    });`.replace('require(\'node:fs\')', "(await import('node:fs'))").replace('.on(\'end\', () =>', ".on('end', async () =>"));
  const h = new ExecHooks({ commands: { 'job.done': [...argv, out, 'a b'], 'job.failed': [...argv, out + '.f'] }, timeoutMs: 10_000, concurrency: 2, logger, env: { ...plainEnv, MEDIACACHE_WEBHOOK_SECRET: 'leak' } });
  const oc = outcomes(h);
  h.run(done('d1'));
  h.run(failed('f1'));
  await waitFor(() => oc.length === 2, { what: 'two hooks ended', timeoutMs: 20_000 });
  const got = JSON.parse(fs.readFileSync(out, 'utf8'));
  t.same(got.stdin, done('d1'), 'stdin holds the event');
  t.same(got.argv, ['a b'], 'argv passed without a shell');
  t.equal(got.env.MEDIACACHE_WEBHOOK_SECRET, undefined, "the daemon's own MEDIACACHE_* are not passed on");
  t.match(got.env, { MEDIACACHE_EVENT: 'job.done', MEDIACACHE_DELIVERY_ID: 'd1', MEDIACACHE_URL: 'http://o/x.png', MEDIACACHE_MD5: record.md5, MEDIACACHE_PATH: record.localPath, MEDIACACHE_SIZE: '123', MEDIACACHE_TYPE: 'image', MEDIACACHE_WIDTH: '4', MEDIACACHE_JOB_ID: 'j1' });
  const f = JSON.parse(fs.readFileSync(out + '.f', 'utf8'));
  t.match(f.env, { MEDIACACHE_EVENT: 'job.failed', MEDIACACHE_ERROR_CODE: 'E_HTTP', MEDIACACHE_HTTP_STATUS: '404', MEDIACACHE_URL: 'http://o/y.png' });
  t.equal(f.env.MEDIACACHE_MD5, undefined);
  const o = oc.find((x) => x.id === 'd1')!;
  t.equal(o.code, 3, 'exit status reported');
  t.equal(o.stderr, 'hello from the hook');
  t.ok(logs.some(([lvl, m, x]) => lvl === 'warn' && m === 'exec hook failed' && x?.exitCode === 3 && x?.stderr === 'hello from the hook'), 'exit status and stderr logged');
  await h.close(1000);
});

t.test('a hung hook is killed at its limit (SIGTERM, then SIGKILL if ignored), its children with it', async (t) => {
  const dir = tmp(t);
  const pidFile = path.join(dir, 'child.pid');
  // Ignores SIGTERM and starts a grandchild that would outlive it.
  const argv = script(dir, 'hang.mjs', `
    import { spawn } from 'node:child_process'; import fs from 'node:fs';
    process.on('SIGTERM', () => {});
    const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    fs.writeFileSync(${JSON.stringify(pidFile)}, String(c.pid));
    setInterval(() => {}, 1000);`);
  const h = new ExecHooks({ commands: { 'job.done': argv }, timeoutMs: 3000, killGraceMs: 300, concurrency: 1, logger, env: plainEnv });
  const oc = outcomes(h);
  const t0 = Date.now();
  h.run(done('hang'));
  await waitFor(() => oc.length === 1, { what: 'hung hook killed', timeoutMs: 20_000 });
  const took = Date.now() - t0;
  t.equal(oc[0].timedOut, true);
  t.equal(oc[0].signal, 'SIGKILL', 'escalated to SIGKILL');
  t.ok(took >= 3000 && took < 15_000, `ended after its limit (${took} ms)`);
  const gpid = Number(fs.readFileSync(pidFile, 'utf8'));
  await waitFor(() => {
    try {
      process.kill(gpid, 0);
      return false;
    } catch {
      return true;
    }
  }, { what: 'grandchild gone' });
  t.pass('the hook’s own child was killed too');
  t.ok(logs.some(([, m]) => m === 'exec hook over its time limit; killing it'));
  await h.close(1000);
});

t.test('concurrency bound: hooks queue behind a hung one, run() never blocks', async (t) => {
  const dir = tmp(t);
  const argv = script(dir, 'slow.mjs', `process.stdin.resume(); process.stdin.on('end', () => setTimeout(() => {}, Number(process.env.MEDIACACHE_JOB_ID === 'j1' ? 60000 : 10)));`);
  const h = new ExecHooks({ commands: { 'job.done': argv, 'job.failed': argv }, timeoutMs: 30_000, concurrency: 2, logger, env: plainEnv });
  const oc = outcomes(h);
  const t0 = Date.now();
  h.run(done('hang1'));
  for (let i = 0; i < 4; i++) h.run(failed(`f${i}`));
  t.ok(Date.now() - t0 < 200, 'run() only queues');
  t.equal(h.active, 0, 'nothing is spawned within the caller’s turn');
  await waitFor(() => h.active === 2, { what: 'two started' });
  t.equal(h.active, 2, 'at most two at once');
  await waitFor(() => oc.length === 4, { what: 'the four others finished beside the hung one', timeoutMs: 20_000 });
  t.same(oc.map((o) => o.id).sort(), ['f0', 'f1', 'f2', 'f3']);
  t.equal(h.active, 1, 'the hung one still holds one slot');
  await h.close(100); // kills it
  t.equal(h.active, 0);
});

t.test('a program that cannot start is logged, stderr is bounded, queue overflow is dropped', async (t) => {
  const dir = tmp(t);
  const h = new ExecHooks({ commands: { 'job.done': [path.join(dir, 'missing')] }, timeoutMs: 5000, concurrency: 1, logger });
  const oc = outcomes(h);
  h.run(done('nope'));
  await waitFor(() => oc.length === 1, { what: 'spawn failure' });
  t.match(oc[0].error, /ENOENT/);
  t.ok(logs.some(([lvl, m]) => lvl === 'error' && m === 'exec hook could not start'));
  await h.close(100);

  const noisy = script(dir, 'noisy.mjs', `process.stderr.write('x'.repeat(100000));`);
  const h2 = new ExecHooks({ commands: { 'job.done': noisy }, timeoutMs: 5000, concurrency: 1, maxStderrBytes: 100, maxQueue: 2, logger, env: plainEnv });
  const oc2 = outcomes(h2);
  for (let i = 0; i < 5; i++) h2.run(done(`n${i}`));
  await waitFor(() => oc2.length === 2, { what: 'the two that fit the queue', timeoutMs: 20_000 });
  t.match(oc2[0].stderr, /^x{100} \[\.\.\. 99900 more bytes\]$/);
  t.equal(logs.filter(([, m]) => m === 'exec hook queue full; event dropped').length, 3, 'the other three dropped, each logged');
  await h2.close(1000);
});
