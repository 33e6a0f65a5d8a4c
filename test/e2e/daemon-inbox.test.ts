/**
 * End to end: the real daemon takes `.urls` files from its inbox — written in
 * place in two halves, dropped as dotfile-then-rename, or already there at
 * start — caches every good URL, moves the file to processed/ and writes a
 * line-by-line report.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { startDaemon, makeRoot } from '../helpers/daemon.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';
import { parseReport } from '../../src/daemon/inbox/report.js';

const PNG = fixture('sample.png');
const png = (n: number): Buffer => Buffer.concat([PNG, Buffer.from(`e2e-tail-${n}`)]);
const md5 = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');

t.test('inbox intake end to end', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const bodies = Array.from({ length: 6 }, (_, i) => png(i));
  bodies.forEach((b, i) => origin.route(`/e${i}.png`, { body: b }));

  const root = makeRoot();
  const inbox = path.join(root, 'inbox');
  const processed = path.join(inbox, 'processed');
  fs.mkdirSync(inbox, { recursive: true });
  // Present before the daemon starts.
  fs.writeFileSync(path.join(inbox, 'before.urls'), `${origin.url('/e4.png')}\n`);

  // Teardowns run last-registered first: the folder goes only after the daemon has stopped.
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const d = await startDaemon(t, { root });

  await waitFor(() => fs.existsSync(path.join(processed, 'before.urls.report.tsv')), { timeoutMs: 20_000, what: 'report of the file present at start' });
  t.same(parseReport(fs.readFileSync(path.join(processed, 'before.urls.report.tsv'), 'utf8')), [
    { line: 1, url: origin.url('/e4.png'), outcome: 'done', result: md5(bodies[4]) },
  ]);

  // Written in place in two halves, 500 ms apart.
  const lines = [
    '# e2e batch', // 1
    origin.url('/e0.png'), // 2
    '', // 3
    origin.url('/e1.png'), // 4
    'not a url', // 5
    origin.url('/e0.png'), // 6 duplicate
    'ftp://files.example/a.png', // 7
    'file:///etc/hosts', // 8
    '   ', // 9
    origin.url('/nope.png'), // 10 → 404
    `\t${origin.url('/e2.png')}  `, // 11
  ];
  const text = '\ufeff' + lines.join('\r\n') + '\r\n';
  const file = path.join(inbox, 'halves.urls');
  const cut = Math.floor(text.length / 2);
  fs.writeFileSync(file, text.slice(0, cut));
  await new Promise((r) => setTimeout(r, 500)); // the writer's pause is the behaviour under test
  fs.appendFileSync(file, text.slice(cut));

  // Dotfile, then rename into place.
  const stage = path.join(inbox, '.drop.urls');
  fs.writeFileSync(stage, `${origin.url('/e3.png')}\n${origin.url('/e5.png')}\n`);
  fs.renameSync(stage, path.join(inbox, 'drop.urls'));

  const report = path.join(processed, 'halves.urls.report.tsv');
  await waitFor(() => fs.existsSync(report), { timeoutMs: 30_000, what: 'halves report' });
  t.notOk(fs.existsSync(file), 'file left the inbox');
  t.equal(fs.readFileSync(path.join(processed, 'halves.urls'), 'utf8'), text, 'the complete file was taken');
  t.same(parseReport(fs.readFileSync(report, 'utf8')), [
    { line: 2, url: origin.url('/e0.png'), outcome: 'done', result: md5(bodies[0]) },
    { line: 4, url: origin.url('/e1.png'), outcome: 'done', result: md5(bodies[1]) },
    { line: 5, url: 'not a url', outcome: 'invalid', result: 'E_INVALID_URL' },
    { line: 6, url: origin.url('/e0.png'), outcome: 'done', result: md5(bodies[0]) },
    { line: 7, url: 'ftp://files.example/a.png', outcome: 'invalid', result: 'E_UNSUPPORTED_SCHEME' },
    { line: 8, url: 'file:///etc/hosts', outcome: 'invalid', result: 'E_UNSUPPORTED_SCHEME' },
    { line: 10, url: origin.url('/nope.png'), outcome: 'failed', result: 'E_HTTP' },
    { line: 11, url: origin.url('/e2.png'), outcome: 'done', result: md5(bodies[2]) },
  ]);
  t.equal(origin.hits('/e0.png'), 1, 'duplicate line fetched once');

  const dropReport = path.join(processed, 'drop.urls.report.tsv');
  await waitFor(() => fs.existsSync(dropReport), { timeoutMs: 20_000, what: 'drop report' });
  t.same(parseReport(fs.readFileSync(dropReport, 'utf8')).map((r) => r.result), [md5(bodies[3]), md5(bodies[5])]);

  // Every good URL is in the cache, under its md5.
  for (const i of [0, 1, 2, 3, 4, 5]) {
    const rec = await d.rpc('find', { url: origin.url(`/e${i}.png`) });
    t.equal(rec.md5, md5(bodies[i]), `e${i} cached`);
    t.equal(md5(fs.readFileSync(rec.localPath)), rec.md5);
  }
  const jobs = await d.rpc('jobs', { state: 'failed' });
  t.equal(jobs.total, 1, 'only the 404 failed');
  t.equal(jobs.jobs[0].error?.status, 404);
  t.equal(d.stdout(), '', 'nothing on stdout');
});
