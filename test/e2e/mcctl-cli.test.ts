/**
 * mcctl as a person meets it, end to end against the real daemon, with the
 * terminal parts under a real pseudo-terminal (script(1)): remove's prefix
 * rule and question, `add --wait --timeout` ending with exit 4 while the
 * download goes on, progress bars with speed and ETA at 64 and 120 columns
 * with and without NO_COLOR, one-line usage errors, and `watch` living
 * through a daemon restart.
 */
import t from 'tap';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { RpcError, startDaemon } from '../helpers/daemon.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';
import { bigMp4, cleanEnv, exec, MCCTL, mcctl, shellQuote } from './mcctl-helpers.js';

/** Run mcctl under a pseudo-terminal of `cols` columns; `input` is typed into it. */
function inPty(cols: number, args: string[], opts: { input?: string; env?: string } = {}): ReturnType<typeof exec> {
  // TERM set explicitly: the runner's own may be "dumb" or absent; NO_COLOR only when the test asks for it.
  const line = `stty cols ${cols} rows 24; env -u NO_COLOR TERM=xterm-256color ${opts.env ?? ''} ${[process.execPath, MCCTL, ...args].map(shellQuote).join(' ')}`;
  return exec('script', ['-qfec', line, '/dev/null'], opts.input);
}

const SGR = /\x1b\[\d*(;\d+)*m/;

t.test('mcctl for people against the real daemon', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/a.png', { body: fixture('sample.png') });
  origin.route('/b.gif', { body: fixture('sample.gif') });
  const d = await startDaemon(t);

  await t.test('remove: short prefix refused (client and daemon); on a terminal it asks; --yes skips', async (t) => {
    const added = await mcctl(d, ['add', origin.url('/a.png'), '--wait', '--json']);
    const rec = JSON.parse(added.stdout).items[0].record as { md5: string; localPath: string };
    const short = await mcctl(d, ['remove', rec.md5.slice(0, 1)]);
    t.equal(short.code, 2);
    t.match(short.stderr, /^mcctl: remove needs at least 8 hex digits[^\n]*\n$/);
    t.ok(fs.existsSync(rec.localPath), 'nothing deleted');
    // The daemon enforces the same minimum for any client.
    const err = await d.rpc('remove', { md5: rec.md5.slice(0, 4) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, RpcError);
    t.equal((err as RpcError).data?.code, 'E_BAD_REQUEST');
    t.match((err as RpcError).message, /at least 8 hex digits/);

    const no = await inPty(100, ['remove', rec.md5.slice(0, 8), '--socket', d.socket], { input: 'n\n' });
    t.equal(no.code, 1, no.stdout);
    t.match(no.stdout, new RegExp(`remove ${rec.md5} \\(image/png, [0-9.]+ (B|KiB)\\) \\S+\\? \\[y/N\\]`));
    t.match(no.stdout, /nothing removed/);
    t.ok(fs.existsSync(rec.localPath), '"n" keeps the file');

    const yes = await inPty(100, ['remove', rec.md5.slice(0, 8), '--socket', d.socket], { input: 'y\n' });
    t.equal(yes.code, 0, yes.stdout);
    t.match(yes.stdout, `removed ${rec.md5}`);
    t.notOk(fs.existsSync(rec.localPath), '"y" removes it');

    const again = await mcctl(d, ['add', origin.url('/a.png'), '--wait']);
    t.equal(again.code, 0);
    const skip = await inPty(100, ['remove', rec.md5.slice(0, 8), '--yes', '--socket', d.socket]);
    t.equal(skip.code, 0, skip.stdout);
    t.notMatch(skip.stdout, /\[y\/N\]/, '--yes: no question');
    t.notOk(fs.existsSync(rec.localPath));
  });

  await t.test('add --wait --timeout 2000 on a slow download: exit 4, the download goes on', async (t) => {
    origin.route('/slow.mp4', { body: bigMp4(160 * 1024), bytesPerSec: 32 * 1024 });
    const started = Date.now();
    const r = await mcctl(d, ['add', origin.url('/slow.mp4'), '--wait', '--timeout', '2000']);
    t.equal(r.code, 4, r.stderr);
    t.match(r.stderr, /^mcctl: stopped waiting after 2000 ms \(--timeout\); the daemon goes on with 1 of 1 downloads \(mcctl jobs shows them\)\n$/);
    t.notMatch(r.stderr, /cannot reach|did not answer/, 'not reported as unreachable');
    t.ok(Date.now() - started < 10_000);
    const done = await waitFor(
      async () => {
        const j = await d.rpc('jobs', {});
        return j.jobs.find((x) => x.url === origin.url('/slow.mp4') && x.state === 'done');
      },
      { timeoutMs: 60_000, what: 'the slow download to finish' },
    );
    t.ok(done, 'the daemon finished it after mcctl stopped waiting');
  });

  await t.test('progress under a pty: speed and ETA at 64 and 120 columns; NO_COLOR=1 has no colour codes', async (t) => {
    for (const cols of [64, 120]) {
      origin.route(`/p${cols}.mp4`, { body: bigMp4(256 * 1024), bytesPerSec: 128 * 1024 });
      const r = await inPty(cols, ['add', origin.url(`/p${cols}.mp4`), origin.url('/b.gif'), '--wait', '--force', '--socket', d.socket]);
      t.equal(r.code, 0, r.stdout);
      t.match(r.stdout, /\d+(\.\d)? (B|KiB|MiB)\/s/, `${cols}: a speed`);
      t.match(r.stdout, /\b\d+:\d\d\b/, `${cols}: an ETA`);
      t.match(r.stdout, /\d\/2 files/, `${cols}: overall files`);
      t.match(r.stdout, SGR, `${cols}: colour on a terminal`);
      const frames = r.stdout.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
      // The bars are redrawn in place, so each must fit; finished lines may wrap like any log line.
      const bars = frames.split('\n').filter((l) => /\] |files/.test(l));
      t.ok(bars.length > 2);
      for (const l of bars) t.ok([...l].length < cols, `${cols}: bar fits: ${l}`);
      const pcts = [...r.stdout.matchAll(/(\d+)% \[/g)].map((m) => Number(m[1]));
      t.ok(new Set(pcts).size >= 2, `${cols}: the bars move (${pcts.join(' ')})`);
    }
    origin.route('/nc.mp4', { body: bigMp4(192 * 1024), bytesPerSec: 128 * 1024 });
    const nc = await inPty(80, ['add', origin.url('/nc.mp4'), '--wait', '--socket', d.socket], { env: 'NO_COLOR=1' });
    t.equal(nc.code, 0, nc.stdout);
    t.match(nc.stdout, /\x1b\[\d+A/, 'still redrawn in place');
    t.notMatch(nc.stdout, SGR, 'NO_COLOR=1: no colour escape sequences');
    const jobs = await inPty(64, ['jobs', '--socket', d.socket], { env: 'NO_COLOR=1' });
    t.equal(jobs.code, 0);
    t.notMatch(jobs.stdout, /\x1b\[[0-9;]*m/, 'jobs: no colour with NO_COLOR');
    for (const l of jobs.stdout.replace(/\r/g, '').trimEnd().split('\n')) t.ok([...l].length <= 64, `jobs fits 64: ${l}`);
  });

  await t.test('usage mistakes: one line, a suggestion, exit 2', async (t) => {
    for (const [args, re] of [
      [['stauts'], /^mcctl: unknown command "stauts"; did you mean "stats" or "status"\?/],
      [['add', origin.url('/a.png'), '--wiat'], /did you mean --wait\?/],
      [['help', 'bogus'], /unknown command "bogus"/],
      [['completion', '--json'], /completion prints a shell script/],
    ] as Array<[string[], RegExp]>) {
      const r = await mcctl(d, args);
      t.equal(r.code, 2, args.join(' '));
      t.match(r.stderr, re);
      t.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
      t.equal(r.stdout, '');
    }
    const help = await mcctl(d, ['help', 'remove']);
    t.equal(help.code, 0);
    t.match(help.stdout, /^mcctl remove <md5>/);
    const v = await mcctl(d, ['-V']);
    t.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
  });
});

t.test('watch survives a daemon restart', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/w.png', { body: fixture('sample.png') });
  const d1 = await startDaemon(t);
  const w = spawn(process.execPath, [MCCTL, 'watch', '--socket', d1.socket], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  w.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  w.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<number | null>((resolve) => w.on('close', (c) => resolve(c)));
  t.teardown(() => void w.kill('SIGKILL'));
  await waitFor(() => err.includes('watching'), { timeoutMs: 30_000, what: 'watch to start' });

  await d1.stop();
  await waitFor(() => /lost the daemon/.test(err), { timeoutMs: 30_000, what: 'the lost notice' });
  t.equal(w.exitCode, null, 'still running while the daemon is gone');
  const d2 = await startDaemon(t, { root: d1.root });
  await waitFor(() => /reconnected/.test(err), { timeoutMs: 30_000, what: 'the reconnected notice' });
  await d2.rpc('add', { urls: [origin.url('/w.png')], wait: true });
  await waitFor(() => /done\s+\S+\s+[0-9a-f]{12}/.test(out), { timeoutMs: 30_000, what: 'the new daemon\'s event in watch' });
  t.match(out, /queued\s+\S+\s+http:\/\/\S+\/w\.png/);
  w.kill('SIGINT');
  t.equal(await exited, 0, 'Ctrl-C ends it with 0');
  t.match(err, /lost the daemon at \S+; reconnecting \(Ctrl-C to stop\)\nmcctl: reconnected to \S+; watching again\n/);
});
