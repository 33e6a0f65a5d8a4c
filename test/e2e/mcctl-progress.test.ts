/**
 * `mcctl add --wait` end to end: under a pseudo-terminal (script(1)) the
 * progress bars are redrawn in place and move; piped, the same command
 * prints plain lines and no escape code at all.
 */
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { startOrigin } from '../helpers/origin.js';
import { bigMp4, exec, MCCTL, mcctl, shellQuote } from './mcctl-helpers.js';

t.test('progress bars against a throttled origin', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/slow1.mp4', { body: bigMp4(320 * 1024), bytesPerSec: 128 * 1024, headers: { 'content-type': 'video/mp4' } });
  origin.route('/slow2.mp4', { body: bigMp4(320 * 1024), bytesPerSec: 128 * 1024, headers: { 'content-type': 'video/mp4' } });
  const d = await startDaemon(t);

  await t.test('add --wait under a pseudo-terminal: the bars move; piped: no escape codes', async (t) => {
    const line = [process.execPath, MCCTL, 'add', origin.url('/slow1.mp4'), '--wait', '--socket', d.socket].map(shellQuote).join(' ');
    const tty = await exec('script', ['-qfec', line, '/dev/null']);
    t.equal(tty.code, 0, tty.stderr + tty.stdout);
    t.match(tty.stdout, /\x1b\[\d+A/, 'redrawn in place with ANSI');
    const pcts = new Set([...tty.stdout.matchAll(/(\d+)% \[/g)].map((m) => m[1]));
    t.ok(pcts.size >= 2, `two or more different percentages: ${[...pcts].join(', ')}`);
    t.match(tty.stdout, /done\s+[0-9a-f]{12}\s+320\.0 KiB\s+video\/mp4/);

    const piped = await mcctl(d, ['add', origin.url('/slow2.mp4'), '--wait']);
    t.equal(piped.code, 0, piped.stderr);
    t.notMatch(piped.stdout, /\x1b/, 'no escape codes when piped');
    t.notMatch(piped.stderr, /\x1b/);
    t.match(piped.stdout, /done\s+[0-9a-f]{12}\s+320\.0 KiB\s+video\/mp4/);
  });

});
