/**
 * Shutdown is bounded whatever is stuck: a process whose shutdown never
 * finishes, with a libuv worker thread parked in open() of a FIFO (which
 * makes a plain process.exit() wait forever), still ends at the deadline,
 * having removed its lock first.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { ensureBuilt, REPO_ROOT } from '../helpers/build.js';
import { waitFor } from '../helpers/wait.js';

t.test('the shutdown deadline ends a process stuck in a worker thread, lock removed', { skip: process.platform === 'win32' && 'no FIFOs' }, async (t) => {
  await ensureBuilt();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-deadline-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fifo = path.join(dir, 'stuck.urls');
  execFileSync('mkfifo', [fifo]);
  const lock = path.join(dir, '.lock');
  fs.writeFileSync(lock, 'held');
  const lifecycle = pathToFileURL(path.join(REPO_ROOT, 'dist', 'daemon', 'lifecycle.js')).href;
  const script = `
    import fs from 'node:fs';
    import { armShutdownDeadline, installSignalHandlers } from ${JSON.stringify(lifecycle)};
    const logger = { error: (m) => process.stderr.write('E ' + m + '\\n'), warn() {}, info() {}, debug() {} };
    const forced = () => fs.rmSync(${JSON.stringify(lock)}, { force: true });
    installSignalHandlers({ logger, forced, reload: async () => {}, shutdown: (sig) => {
      armShutdownDeadline(500, sig, logger, forced);
      return new Promise(() => {}); // a step that never finishes
    } });
    fs.readFile(${JSON.stringify(fifo)}, () => {}); // parks a worker thread: no writer ever comes
    setInterval(() => {}, 1000);
    process.stderr.write('ready\\n');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  t.teardown(() => void child.kill('SIGKILL'));
  await waitFor(() => err.includes('ready'), { timeoutMs: 30_000, what: 'child ready' });
  const t0 = Date.now();
  child.kill('SIGTERM');
  const timeout = new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000).unref());
  const r = await Promise.race([exited, timeout]);
  t.not(r, 'hung', 'the process ended');
  if (r === 'hung') return;
  t.ok(Date.now() - t0 < 15_000, `ended ${Date.now() - t0} ms after SIGTERM (deadline 500 ms)`);
  t.equal(r.signal, 'SIGKILL', 'ended by its own SIGKILL (process.exit would have waited for the worker)');
  t.notOk(fs.existsSync(lock), 'lock removed before it ended');
  t.match(err, /shutdown still not finished 500 ms after SIGTERM; exiting anyway/);
});
