/**
 * The daemon is gone: every mcctl command exits 3 within 2 s (or within 1.5 s
 * of a bare node start when the machine is so loaded that node alone takes
 * longer), names the
 * socket it tried and says how to start the daemon — after a clean stop
 * (socket removed: ENOENT) and after a crash (socket file left: ECONNREFUSED).
 */
import t from 'tap';
import fs from 'node:fs';
import { startDaemon } from '../helpers/daemon.js';
import { mcctl, nodeStartMs } from './mcctl-helpers.js';

const URL = 'http://127.0.0.1:9/a.png';
const COMMANDS = [['stats'], ['status'], ['verify', 'abc'], ['verify', '--all'], ['find', 'abc'], ['jobs'], ['sweep'], ['remove', 'abcdef12', '--yes'], ['watch'], ['add', URL, '--wait'], [URL]];

t.test('after a clean stop', async (t) => {
  const d = await startDaemon(t);
  const ok = await mcctl(d, ['stats']);
  t.equal(ok.code, 0, 'reachable while running');
  const exit = await d.stop();
  t.equal(exit.code, 0);
  t.notOk(fs.existsSync(d.socket), 'the daemon removed its socket');
  const before = await nodeStartMs();
  const runs = [];
  for (const args of COMMANDS) runs.push({ args, r: await mcctl(d, args) });
  const base = Math.max(before, await nodeStartMs());
  for (const { args, r } of runs) {
    t.equal(r.code, 3, `${args.join(' ')} → 3`);
    t.ok(r.ms < Math.max(2500, 2 * base + 1000), `${args.join(' ')} took ${r.ms} ms (node -e 0: ${base} ms)`);
    t.match(r.stderr, d.socket);
    t.match(r.stderr, /mediacached/);
    t.equal(r.stdout, '');
  }
});

t.test('after a crash (stale socket file)', async (t) => {
  const d = await startDaemon(t);
  const exit = await d.stop('SIGKILL');
  t.equal(exit.signal, 'SIGKILL');
  t.ok(fs.existsSync(d.socket), 'the socket file is left behind');
  const base = await nodeStartMs();
  for (const args of [['stats'], ['status', '--json'], ['add', URL, '--wait']]) {
    const r = await mcctl(d, args);
    t.equal(r.code, 3, `${args.join(' ')} → 3`);
    t.ok(r.ms < Math.max(2500, 2 * base + 1000), `${args.join(' ')} took ${r.ms} ms (node -e 0: ${base} ms)`);
    t.match(r.stderr, /ECONNREFUSED/);
    t.match(r.stderr, d.socket);
    t.equal(r.stdout, '');
  }
});
