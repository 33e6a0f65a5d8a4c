/**
 * Operator-facing behaviour of mediacached: journald priority prefixes when
 * stderr is systemd's JOURNAL_STREAM (unit and a real daemon), and a
 * misspelt MEDIACACHE_* variable refused with a "did you mean".
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { createDaemonLogger, journaldStderr } from '../../src/daemon/log.js';
import { ConfigError, resolveConfig } from '../../src/daemon/config.js';
import { ensureBuilt } from '../helpers/build.js';
import { DAEMON_BIN, DAEMON_NODE_ARGS } from '../helpers/daemon.js';
import { waitFor } from '../helpers/wait.js';
import { cleanEnv } from './mcctl-helpers.js';

t.test('journald format: <N> priority per line, no timestamp, no colour', async (t) => {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => (text += d.toString()));
  const log = createDaemonLogger({ level: 'debug', console: out, journald: true, colors: true });
  log.error('disk full', { path: '/c' });
  log.warn('download failed', { code: 'E_HTTP' });
  log.info('started');
  log.debug('detail');
  log.error('boom', { error: Object.assign(new Error('bad\nthing'), { code: 'EIO' }) });
  await log.end();
  const lines = text.trimEnd().split('\n');
  t.equal(lines[0], '<3>disk full {"path":"/c"}');
  t.equal(lines[1], '<4>download failed {"code":"E_HTTP"}');
  t.equal(lines[2], '<6>started');
  t.equal(lines[3], '<7>detail');
  for (const l of lines) t.match(l, /^<[3467]>/, `every line carries a priority: ${l}`);
  t.notMatch(text, /\d{4}-\d\d-\d\dT|\x1b/, 'no timestamp, no colour');
});

t.test('JOURNAL_STREAM counts only when it names our stderr', async (t) => {
  const dir = t.testdir();
  const f = path.join(dir, 'err.log');
  const fd = fs.openSync(f, 'w');
  t.teardown(() => fs.closeSync(fd));
  const st = fs.fstatSync(fd, { bigint: true });
  t.equal(journaldStderr({ JOURNAL_STREAM: `${st.dev}:${st.ino}` }, fd), true);
  t.equal(journaldStderr({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1n}` }, fd), false, 'another stream: inherited, not ours');
  t.equal(journaldStderr({}, fd), false);
  t.equal(journaldStderr({ JOURNAL_STREAM: 'garbage' }, fd), false);
});

t.test('a real daemon with stderr on the JOURNAL_STREAM writes <N> lines', async (t) => {
  await ensureBuilt();
  const root = fs.mkdtempSync(path.join('/tmp', 'mc-j-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const errFile = path.join(root, 'stderr.log');
  const fd = fs.openSync(errFile, 'w');
  const st = fs.fstatSync(fd, { bigint: true });
  const env = { ...cleanEnv(), JOURNAL_STREAM: `${st.dev}:${st.ino}`, XDG_CONFIG_HOME: path.join(root, 'xdg'), XDG_STATE_HOME: path.join(root, 'xdg'), HOME: root };
  const p = spawn(process.execPath, [...DAEMON_NODE_ARGS, DAEMON_BIN, '--cache-dir', path.join(root, 'cache'), '--socket', path.join(root, 'd.sock'), '--inbox', path.join(root, 'inbox')], {
    env,
    stdio: ['ignore', 'ignore', fd],
  });
  fs.closeSync(fd);
  const exited = new Promise<number | null>((resolve) => p.on('close', (c) => resolve(c)));
  t.teardown(() => void p.kill('SIGKILL'));
  await waitFor(() => fs.existsSync(path.join(root, 'd.sock')) && /starting/.test(fs.readFileSync(errFile, 'utf8')), { timeoutMs: 60_000, what: 'the daemon to start' });
  p.kill('SIGTERM');
  t.equal(await exited, 0);
  const lines = fs.readFileSync(errFile, 'utf8').trimEnd().split('\n');
  t.match(lines[0], /^<6>mediacached \S+ starting/);
  for (const l of lines) t.match(l, /^<\d>/, `priority prefix: ${l}`);
  t.notMatch(lines.join('\n'), /^<\d>\d{4}-\d\d-\d\dT/m, 'no own timestamp');
});

t.test('a misspelt MEDIACACHE_* variable stops the start with a "did you mean"', async (t) => {
  const base = { argv: [], platformEnv: { platform: 'linux' as const, env: {}, homedir: '/home/u', tmpdir: '/tmp', uid: 1000, username: 'u' }, readFile: () => undefined, cwd: '/w' };
  for (const [name, want] of [
    ['MEDIACACHE_CONCURENCY', 'MEDIACACHE_CONCURRENCY'],
    ['MEDIACACHE_LOGLEVEL', 'MEDIACACHE_LOG_LEVEL'],
    ['MEDIACACHE_SOCKETT', 'MEDIACACHE_SOCKET'],
  ]) {
    const e = await resolveConfig({ ...base, env: { [name]: '3' } }).then(
      () => undefined,
      (x: unknown) => x,
    );
    t.type(e, ConfigError, name);
    t.match((e as Error).message, `unknown environment variable ${name}. Did you mean ${want}?`);
  }
  const r = await resolveConfig({ ...base, env: { MEDIACACHE_CONCURRENCY: '3', MEDIACACHE_CACHE_DIR: '/c', OTHER_THING: 'x' } });
  t.equal(r.kind, 'config', 'known names (and other variables) are fine');
});
