/**
 * End to end: the real `node bin/mcctl.js` against the real daemon
 * (test/helpers/daemon.ts) and a loopback HTTP origin. Exit codes, --json
 * documents, files on disk, progress bars under a pseudo-terminal (script(1)),
 * and what happens once the daemon is gone.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { startDaemon, type DaemonHandle } from './helpers/daemon.js';
import { REPO_ROOT } from './helpers/build.js';
import { fixture, startOrigin, type Origin } from './helpers/origin.js';
import type { AddResult, StatsResult, VerifyResult } from '../src/core/protocol.js';
import type { MediaRecord } from '../src/core/types.js';

const MCCTL = path.join(REPO_ROOT, 'bin', 'mcctl.js');

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MEDIACACHE_')) env[k] = v;
  return env;
}

/** Run a command line (argv for node, or a shell line for script(1)), capture everything. */
function exec(cmd: string, args: string[], input?: string): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const p = spawn(cmd, args, { env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    p.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started }));
    p.stdin.end(input ?? '');
  });
}

function mcctl(d: DaemonHandle | { socket: string }, args: string[], input?: string): Promise<Ran> {
  return exec(process.execPath, [MCCTL, ...args, '--socket', d.socket], input);
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Files under the cache's type folders: what `stats` must add up to. */
function filesOnDisk(cacheDir: string): { count: number; size: number } {
  let count = 0;
  let size = 0;
  for (const dir of ['images', 'videos', 'audio', 'documents']) {
    const p = path.join(cacheDir, dir);
    if (!fs.existsSync(p)) continue;
    for (const f of fs.readdirSync(p)) {
      count++;
      size += fs.statSync(path.join(p, f)).size;
    }
  }
  return { count, size };
}

/** A real MP4 head followed by padding: sniffed as video/mp4, big enough to throttle. */
function bigMp4(bytes: number): Buffer {
  const head = fixture('sample.mp4');
  return Buffer.concat([head, crypto.randomBytes(bytes - head.length)]);
}

t.test('mcctl against the real daemon', async (t) => {
  const origin: Origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/a.png', { body: fixture('sample.png'), headers: { 'content-type': 'image/png' } });
  origin.route('/b.jpg', { body: fixture('sample.jpg'), headers: { 'content-type': 'image/jpeg' } });
  origin.route('/c.gif', { body: fixture('sample.gif') });
  origin.route('/d.pdf', { body: fixture('sample.pdf') });
  origin.route('/slow1.mp4', { body: bigMp4(320 * 1024), bytesPerSec: 128 * 1024, headers: { 'content-type': 'video/mp4' } });
  origin.route('/slow2.mp4', { body: bigMp4(320 * 1024), bytesPerSec: 128 * 1024, headers: { 'content-type': 'video/mp4' } });
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
    t.match(r.stdout, new RegExp(`failed\\s+E_HTTP 404.*${origin.url('/missing.png').replace(/[.?]/g, '\\$&')}`));
    t.match(r.stdout, /done\s+[0-9a-f]{12}\s+.*image\/gif/);
    t.match(r.stdout, /application\/pdf/);
    t.match(r.stdout, /2 done, 1 failed/);
    t.notMatch(r.stdout, /\x1b/, 'piped: no escape codes');
  });

  await t.test('stats --json totals equal the files on disk', async (t) => {
    const r = await mcctl(d, ['stats', '--json']);
    t.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as StatsResult;
    const disk = filesOnDisk(d.cacheDir);
    t.equal(s.totalFiles, disk.count);
    t.equal(s.totalSize, disk.size);
    t.equal(s.totalFiles, 4);
    t.equal(s.byType.image.count, 3);
    t.equal(s.byType.document.count, 1);
    const human = await mcctl(d, ['stats']);
    t.match(human.stdout, /^total\s+4\s+/m);
  });

  await t.test('find by URL and by prefix; unknown exits 2', async (t) => {
    const byUrl = await mcctl(d, ['find', origin.url('/a.png'), '--json']);
    t.equal(byUrl.code, 0, byUrl.stderr);
    t.equal((JSON.parse(byUrl.stdout) as MediaRecord).md5, png.md5);
    const byPrefix = await mcctl(d, ['find', png.md5.slice(0, 10)]);
    t.equal(byPrefix.code, 0, byPrefix.stderr);
    t.match(byPrefix.stdout, new RegExp(`^md5\\s+${png.md5}$`, 'm'));
    t.match(byPrefix.stdout, /^dimensions\s+\d+x\d+$/m);
    const none = await mcctl(d, ['find', origin.url('/never.png')]);
    t.equal(none.code, 2);
    t.match(none.stderr, /E_NOT_FOUND/);
  });

  await t.test('verify: 0 by prefix, 1 after a byte is flipped (and for --all), 2 for an unknown md5', async (t) => {
    const ok = await mcctl(d, ['verify', png.md5.slice(0, 12)]);
    t.equal(ok.code, 0, ok.stderr + ok.stdout);
    const seed = await mcctl(d, ['verify', png.md5]); // the seed's form: mcctl verify <md5>
    t.equal(seed.code, 0);
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
    const j = await mcctl(d, ['jobs', '--state', 'failed', '--json']);
    t.equal(j.code, 0, j.stderr);
    const jobs = JSON.parse(j.stdout) as { jobs: Array<{ url: string; error?: { code: string } }> };
    t.ok(jobs.jobs.some((x) => x.url.endsWith('/missing.png') && x.error?.code === 'E_HTTP'));
    const s = await mcctl(d, ['status']);
    t.equal(s.code, 0);
    t.match(s.stdout, new RegExp(`^socket\\s+${d.socket.replace(/[.]/g, '\\.')}$`, 'm'));
    t.match(s.stdout, new RegExp(`^cache\\s+${d.cacheDir.replace(/[.]/g, '\\.')}$`, 'm'));
  });

  await t.test('add --wait under a pseudo-terminal: the bars move; piped: no escape codes', async (t) => {
    const line = [process.execPath, MCCTL, 'add', origin.url('/slow1.mp4'), '--wait', '--socket', d.socket].map(shellQuote).join(' ');
    const tty = await exec('script', ['-qfec', line, '/dev/null']);
    t.equal(tty.code, 0, tty.stderr + tty.stdout);
    t.match(tty.stdout, /\x1b\[\d+A/, 'redrawn in place with ANSI');
    const pcts = new Set([...tty.stdout.matchAll(/(\d+)% \[/g)].map((m) => m[1]));
    t.ok(pcts.size >= 2, `two or more different percentages: ${[...pcts].join(', ')}`);
    t.match(tty.stdout, /done\s+[0-9a-f]{12}\s+320\.0 KB\s+video\/mp4/);

    const piped = await mcctl(d, ['add', origin.url('/slow2.mp4'), '--wait']);
    t.equal(piped.code, 0, piped.stderr);
    t.notMatch(piped.stdout, /\x1b/, 'no escape codes when piped');
    t.notMatch(piped.stderr, /\x1b/);
    t.match(piped.stdout, /done\s+[0-9a-f]{12}\s+320\.0 KB\s+video\/mp4/);
  });

  await t.test('usage errors exit 2 with usage', async (t) => {
    for (const args of [['frobnicate'], ['stats', '--frob'], ['jobs', '--state', 'sleeping']]) {
      const r = await mcctl(d, args);
      t.equal(r.code, 2, args.join(' '));
      t.match(r.stderr, /Options:/, 'usage printed');
      t.equal(r.stdout, '');
    }
    const bad = await mcctl(d, ['verify', 'not-hex']);
    t.equal(bad.code, 2, 'the daemon refusing a parameter is a usage error');
  });

  await t.test('with the daemon stopped every command exits 3 within 2 s and names the socket', async (t) => {
    const exit = await d.stop();
    t.equal(exit.code, 0);
    const cmds = [['stats'], ['status'], ['verify', 'abc'], ['verify', '--all'], ['find', 'abc'], ['jobs'], ['sweep'], ['remove', 'abc'], ['watch'], ['add', origin.url('/a.png'), '--wait'], [origin.url('/a.png')]];
    for (const args of cmds) {
      const r = await mcctl(d, args);
      t.equal(r.code, 3, `${args.join(' ')} → 3`);
      t.ok(r.ms < 2000, `${args.join(' ')} took ${r.ms} ms`);
      t.match(r.stderr, d.socket);
      t.match(r.stderr, /mediacached/);
      t.equal(r.stdout, '');
    }
  });
});
