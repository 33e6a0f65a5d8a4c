/**
 * End to end: the real `node bin/mcctl.js` against the real daemon
 * (test/helpers/daemon.ts) and a loopback HTTP origin: exit codes, --json
 * documents, the files on disk. Progress bars: mcctl-e2e-progress.test.ts;
 * daemon gone: mcctl-e2e-unreachable.test.ts.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { startDaemon } from '../helpers/daemon.js';
import { fixture, startOrigin, type Origin } from '../helpers/origin.js';
import type { AddResult, StatsResult, VerifyResult } from '../../src/core/protocol/rpc.js';
import type { MediaRecord } from '../../src/core/types.js';
import { filesOnDisk, mcctl } from './mcctl-helpers.js';

t.test('mcctl against the real daemon', async (t) => {
  const origin: Origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/a.png', { body: fixture('sample.png'), headers: { 'content-type': 'image/png' } });
  origin.route('/b.jpg', { body: fixture('sample.jpg'), headers: { 'content-type': 'image/jpeg' } });
  origin.route('/c.gif', { body: fixture('sample.gif') });
  origin.route('/d.pdf', { body: fixture('sample.pdf') });
  const d = await startDaemon(t);

  let png: MediaRecord;
  await t.test('add --wait --json returns the records', async (t) => {
    const r = await mcctl(d, ['add', origin.url('/a.png'), origin.url('/b.jpg'), '--wait', '--json']);
    t.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as AddResult;
    t.equal(doc.items.length, 2);
    for (const it of doc.items) {
      t.equal(it.state, 'done');
      t.ok(it.record && fs.existsSync(it.record.localPath), 'file is on disk');
    }
    png = doc.items[0]!.record!;
    t.equal(png.mimeType, 'image/png');
    t.equal(png.md5, crypto.createHash('md5').update(fixture('sample.png')).digest('hex'));
    t.equal(r.stderr, '');
  });

  await t.test('add -f list.urls --wait with one 404 exits 1 and names the failure', async (t) => {
    const dir = t.testdir({
      'list.urls': `\ufeff# batch\r\n${origin.url('/c.gif')}\r\n${origin.url('/missing.png')}\r\n\r\n${origin.url('/d.pdf')}\r\n`,
    });
    const r = await mcctl(d, ['add', '-f', path.join(dir, 'list.urls'), '--wait']);
    t.equal(r.code, 1, r.stderr);
    t.match(r.stdout, new RegExp(`failed\\s+E_HTTP: HTTP 404.*${origin.url('/missing.png').replace(/[.?]/g, '\\$&')}`));
    t.match(r.stdout, /done\s+[0-9a-f]{12}\s+.*image\/gif/);
    t.match(r.stdout, /application\/pdf/);
    t.match(r.stdout, /2 done, 1 failed/);
    t.notMatch(r.stdout, /\x1b/, 'piped: no escape codes');
  });

  await t.test('stats --json totals equal the files on disk', async (t) => {
    const [r, human] = await Promise.all([mcctl(d, ['stats', '--json']), mcctl(d, ['stats'])]);
    t.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as StatsResult;
    const disk = filesOnDisk(d.cacheDir);
    t.equal(s.totalFiles, disk.count);
    t.equal(s.totalSize, disk.size);
    t.equal(s.totalFiles, 4);
    t.equal(s.byType.image.count, 3);
    t.equal(s.byType.document.count, 1);
    t.match(human.stdout, /^total\s+4\s+/m);
  });

  await t.test('find by URL and by prefix; unknown exits 2', async (t) => {
    const [byUrl, byPrefix, none] = await Promise.all([
      mcctl(d, ['find', origin.url('/a.png'), '--json']),
      mcctl(d, ['find', png.md5.slice(0, 10)]),
      mcctl(d, ['find', origin.url('/never.png')]),
    ]);
    t.equal(byUrl.code, 0, byUrl.stderr);
    t.equal((JSON.parse(byUrl.stdout) as MediaRecord).md5, png.md5);
    t.equal(byPrefix.code, 0, byPrefix.stderr);
    t.match(byPrefix.stdout, new RegExp(`^md5\\s+${png.md5}$`, 'm'));
    t.match(byPrefix.stdout, /^dimensions\s+\d+x\d+$/m);
    t.equal(none.code, 2);
    t.match(none.stderr, /E_NOT_FOUND/);
  });

  await t.test('verify: 0 by prefix, 1 after a byte is flipped (and for --all), 2 for an unknown md5', async (t) => {
    const ok = await mcctl(d, ['verify', png.md5.slice(0, 12)]); // the seed's form: mcctl verify a1b2c3d4e5f6
    t.equal(ok.code, 0, ok.stderr + ok.stdout);
    const all0 = await mcctl(d, ['verify', '--all', '--json']);
    t.equal(all0.code, 0);
    t.equal((JSON.parse(all0.stdout) as VerifyResult).checked, 4);

    const buf = fs.readFileSync(png.localPath);
    buf[buf.length >> 1] ^= 0xff;
    fs.writeFileSync(png.localPath, buf);
    const bad = await mcctl(d, ['verify', png.md5.slice(0, 12)]);
    t.equal(bad.code, 1, 'corruption found');
    t.match(bad.stdout, /CORRUPT/);
    const all = await mcctl(d, ['verify', '--all', '--json']);
    t.equal(all.code, 1, 'verify --all exits 1 while one file is corrupt');
    const v = JSON.parse(all.stdout) as VerifyResult;
    t.same(
      v.bad.map((b) => b.md5),
      [png.md5],
    );
    const unknown = await mcctl(d, ['verify', 'abcdef0123']);
    t.equal(unknown.code, 2);
    t.match(unknown.stderr, /E_NOT_FOUND/);
  });

  await t.test('remove deletes the file and the record', async (t) => {
    const r = await mcctl(d, ['remove', png.md5]);
    t.equal(r.code, 0, r.stderr);
    t.notOk(fs.existsSync(png.localPath), 'file gone');
    const again = await mcctl(d, ['find', png.md5]);
    t.equal(again.code, 2, 'record gone');
    const gone = await mcctl(d, ['remove', png.md5]);
    t.equal(gone.code, 2, 'removing twice: not found');
  });

  await t.test('jobs and status', async (t) => {
    const [j, s] = await Promise.all([mcctl(d, ['jobs', '--state', 'failed', '--json']), mcctl(d, ['status'])]);
    t.equal(j.code, 0, j.stderr);
    const jobs = JSON.parse(j.stdout) as { jobs: Array<{ url: string; error?: { code: string } }> };
    t.ok(jobs.jobs.some((x) => x.url.endsWith('/missing.png') && x.error?.code === 'E_HTTP'));
    t.equal(s.code, 0);
    t.match(s.stdout, new RegExp(`^socket\\s+${d.socket.replace(/[.]/g, '\\.')}$`, 'm'));
    t.match(s.stdout, new RegExp(`^cache\\s+${d.cacheDir.replace(/[.]/g, '\\.')}$`, 'm'));
  });

  await t.test('usage errors exit 2 with one line', async (t) => {
    const cases = [['frobnicate'], ['stats', '--frob'], ['jobs', '--state', 'sleeping']];
    // Independent: run side by side (the machine is shared; each spawn is a full node start).
    const runs = await Promise.all(cases.map((args) => mcctl(d, args)));
    for (const [i, args] of cases.entries()) {
      const r = runs[i]!;
      t.equal(r.code, 2, args.join(' '));
      t.match(r.stderr, /^mcctl: [^\n]+\n$/, 'one line');
      t.notMatch(r.stderr, /Options:/, 'no help dump');
      t.equal(r.stdout, '');
    }
    const bad = await mcctl(d, ['verify', 'not-hex']);
    t.equal(bad.code, 2, 'the daemon refusing a parameter is a usage error');
  });

});
