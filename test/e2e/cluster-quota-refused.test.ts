/**
 * End to end: a size quota is not supported in cluster mode yet, so
 * mediacached refuses --max-size/--min-free with --database at start (exit
 * 2, stable code E_BAD_REQUEST, one line, nothing created), never runs
 * with the quota silently ignored.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { daemonEnv, makeRoot, spawnDaemon } from '../helpers/daemon.js';
import { ensureBuilt } from '../helpers/build.js';

t.before(ensureBuilt);

t.test('--max-size or --min-free with --database: exit 2 with E_BAD_REQUEST before anything is opened', async (t) => {
  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  // Never reached: the refusal comes before any connection.
  const url = 'postgres://media:s3cret@127.0.0.1:1/media';
  const cacheDir = path.join(root, 'c');
  const base = ['--socket', path.join(root, 'd.sock'), '--cache-dir', cacheDir, '--inbox', path.join(root, 'in')];
  for (const [extra, env, key] of [
    [['--database', url, '--max-size', '1G'], {}, 'max-size'],
    [['--database', url, '--min-free', '5G'], {}, 'min-free'],
    [[], { MEDIACACHE_DATABASE: url, MEDIACACHE_MAX_SIZE: '1G' }, 'max-size'],
  ] as const) {
    const s = spawnDaemon([...base, ...extra], daemonEnv(root, env), t);
    const e = await s.exited;
    t.equal(e.code, 2, `${key}: exit code 2 (usage)`);
    t.match(s.stderr(), new RegExp(`^mediacached: E_BAD_REQUEST: ${key} \\(a cache size quota\\) is not supported with --database`), 'code and reason on one line');
    t.equal(s.stderr().trim().split('\n').length, 1, 'one line, no stack trace');
    t.notMatch(s.stderr(), /s3cret/, 'the database password is not echoed');
  }
  t.notOk(fs.existsSync(cacheDir), 'nothing was created');
  t.notOk(fs.existsSync(path.join(root, 'd.sock')), 'no socket');
});
