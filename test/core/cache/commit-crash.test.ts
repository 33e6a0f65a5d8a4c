/**
 * Group commit under a real crash, and the order of its system calls.
 *
 * 1. kill -9: a child process downloads many files through MediaCache and is
 *    SIGKILLed mid-stream (three rounds, at different points). Afterwards no
 *    file under a final name has other content than its name says, every
 *    download the child saw resolve is in the reopened index with its file,
 *    and every indexed file is intact.
 * 2. Power cut: cannot be caused for real in a test. What makes it safe is
 *    the order of operations — a file's data is fdatasynced before its
 *    rename to the final name, and the index journal that names it is
 *    committed after that — so a power cut can lose a rename or a record,
 *    never expose unsynced data under a final name. That order is checked
 *    on the real system calls with strace (skipped where strace or ptrace is
 *    unavailable), together with "one hop": a small body's file is created,
 *    written and renamed by the commit worker thread, with no file system
 *    call for it on the main thread.
 */
import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { spawn, spawnSync } from 'node:child_process';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { startOrigin, fixture, type Origin } from '../../helpers/origin.js';
import { ensureBuilt, REPO_ROOT } from '../../helpers/build.js';
import { waitFor } from '../../helpers/wait.js';

const md5 = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');
const TYPE_DIRS = ['images', 'videos', 'audio', 'documents'];

/** A JPEG made unique by a COM segment of `len` random bytes right after SOI. */
function uniqueJpeg(base: Buffer, len: number): Buffer {
  const seg = Buffer.alloc(4 + len);
  seg.writeUInt16BE(0xfffe, 0);
  seg.writeUInt16BE(len + 2, 2);
  crypto.randomFillSync(seg, 4);
  return Buffer.concat([base.subarray(0, 2), seg, base.subarray(2)]);
}

/** An MP4 (ftyp + mdat) of `size` bytes: above the in-memory limit, so it is streamed to .tmp/. */
function uniqueMp4(size: number): Buffer {
  const b = crypto.randomBytes(size);
  b.writeUInt32BE(32, 0);
  b.write('ftypisom', 4, 'latin1');
  b.writeUInt32BE(0x200, 12);
  b.write('isomiso2avc1mp41', 16, 'latin1');
  b.writeUInt32BE(size - 32, 32);
  b.write('mdat', 36, 'latin1');
  return b;
}

const CHILD = `
import fs from 'node:fs';
const { MediaCache } = await import(process.env.MC_DIST + '/core/index.js');
const [cacheDir, urlsFile, mode] = process.argv.slice(2);
const urls = fs.readFileSync(urlsFile, 'utf8').split('\\n').filter(Boolean);
const cache = await MediaCache.open({ cacheDir, concurrency: 8 });
process.stdout.write('pid ' + process.pid + '\\n');
let next = 0;
await Promise.all(Array.from({ length: 8 }, async () => {
  while (next < urls.length) {
    const u = urls[next++];
    const r = await cache.download(u);
    process.stdout.write('done ' + r.md5 + '\\n');
  }
}));
if (mode === 'exit') { await cache.close(); process.stdout.write('closed\\n'); }
else setInterval(() => {}, 1000);
`;

async function setup(t: Test, small: number, large: number): Promise<{ origin: Origin; urlsFile: string; script: string; root: string }> {
  await ensureBuilt();
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const base = fixture('sample.jpg');
  const urls: string[] = [];
  for (let i = 0; i < small; i++) {
    origin.route(`/s${i}.jpg`, { body: uniqueJpeg(base, 2000 + ((i * 7919) % 60000)) });
    urls.push(origin.url(`/s${i}.jpg`));
  }
  for (let i = 0; i < large; i++) {
    origin.route(`/l${i}.mp4`, { body: uniqueMp4(300_000 + i * 50_000) });
    urls.push(origin.url(`/l${i}.mp4`));
  }
  const root = t.testdir({});
  const urlsFile = path.join(root, 'urls.txt');
  fs.writeFileSync(urlsFile, urls.join('\n') + '\n');
  const script = path.join(root, 'child.mjs');
  fs.writeFileSync(script, CHILD);
  return { origin, urlsFile, script, root };
}

/** Every content file under a type folder: [path, name md5]. */
function contentFiles(cacheDir: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const d of TYPE_DIRS) {
    const dir = path.join(cacheDir, d);
    if (!fs.existsSync(dir)) continue;
    for (const n of fs.readdirSync(dir)) out.push([path.join(dir, n), n.slice(0, 32)]);
  }
  return out;
}

t.test('kill -9 mid-download: no final name with wrong content, every acknowledged download durable', async (t) => {
  const { urlsFile, script, root } = await setup(t, 150, 6);
  for (const killAfter of [3, 40, 110]) {
    const cacheDir = path.join(root, `cache-${killAfter}`);
    const child = spawn(process.execPath, [script, cacheDir, urlsFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MC_DIST: path.join(REPO_ROOT, 'dist'), NODE_OPTIONS: '' },
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const acked: string[] = [];
    readline.createInterface({ input: child.stdout }).on('line', (l) => {
      if (l.startsWith('done ')) acked.push(l.slice(5));
    });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    await waitFor(() => acked.length >= killAfter || child.exitCode !== null, { timeoutMs: 120_000 });
    t.equal(child.exitCode, null, `child still running at kill (${stderr.slice(-300)})`);
    child.kill('SIGKILL');
    await exited;
    const seen = [...acked];

    const files = contentFiles(cacheDir);
    for (const [p, name] of files) t.equal(md5(fs.readFileSync(p)), name, `${path.basename(p)}: content matches its name`);
    t.ok(files.length >= seen.length, `${files.length} files for ${seen.length} acknowledged downloads (kill after ${killAfter})`);

    const cache = await MediaCache.open({ cacheDir });
    try {
      for (const m of seen) {
        const rec = await cache.find(m);
        t.ok(rec, `acknowledged ${m} is in the reopened index`);
        if (rec) t.equal(md5(fs.readFileSync(rec.localPath)), m);
      }
      for await (const rec of cache.index.records()) {
        const p = path.join(cacheDir, TYPE_DIRS.find((d) => d.startsWith(rec.mediaType.slice(0, 4)))!, rec.md5 + rec.extension);
        t.equal(md5(fs.readFileSync(p)), rec.md5, `indexed ${rec.md5} intact`);
      }
      t.same(fs.readdirSync(path.join(cacheDir, '.tmp')), [], 'the dead process’s partial files were removed at open');
    } finally {
      await cache.close();
    }
  }
});

function straceWorks(): boolean {
  try {
    return spawnSync('strace', ['-f', '-o', '/dev/null', 'true'], { stdio: 'ignore' }).status === 0;
  } catch {
    return false;
  }
}

t.test('system calls: fdatasync before rename; small bodies never touch the main thread', { skip: straceWorks() ? false : 'strace (with ptrace) not available' }, async (t) => {
  const { urlsFile, script, root } = await setup(t, 40, 2);
  const cacheDir = path.join(root, 'cache');
  const trace = path.join(root, 'trace.txt');
  // Asynchronously: the origin serving the child runs in this process.
  const child = spawn('strace', ['-f', '-y', '-qq', '-o', trace, '-e', 'trace=openat,open,fdatasync,fsync,rename,renameat,renameat2', process.execPath, script, cacheDir, urlsFile, 'exit'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MC_DIST: path.join(REPO_ROOT, 'dist'), NODE_OPTIONS: '' },
  });
  const r = { stdout: '', stderr: '', status: null as number | null };
  child.stdout.on('data', (d) => (r.stdout += d));
  child.stderr.on('data', (d) => (r.stderr += d));
  r.status = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.equal(r.status, 0, r.stderr.slice(-500));
  const mainTid = Number(/pid (\d+)/.exec(r.stdout)?.[1]);
  const lines = fs.readFileSync(trace, 'utf8').split('\n');
  const tmpDir = path.join(cacheDir, '.tmp');
  /** .part path → index of the line where its fdatasync (or fsync) completed. */
  const synced = new Map<string, number>();
  /** tid → path of its unfinished fdatasync. */
  const unfinished = new Map<number, string>();
  const renames: Array<{ at: number; tid: number; from: string; to: string }> = [];
  /** .part path → thread that created it. */
  const opens = new Map<string, number>();
  lines.forEach((line, i) => {
    const tid = Number(line.split(' ', 1)[0]);
    let m = /f(?:data)?sync\(\d+<([^>]+)>(.*)$/.exec(line);
    if (m) {
      if (m[2].includes('unfinished')) unfinished.set(tid, m[1]);
      else if (/= 0$/.test(m[2])) synced.set(m[1], i);
      return;
    }
    if (/<\.\.\. f(?:data)?sync resumed>.*= 0$/.test(line) && unfinished.has(tid)) {
      synced.set(unfinished.get(tid)!, i);
      unfinished.delete(tid);
      return;
    }
    m = /rename(?:at2?)?\((?:[^,]+, )?"([^"]+)", (?:[^,]+, )?"([^"]+)"/.exec(line);
    if (m && m[1].startsWith(tmpDir)) renames.push({ at: i, tid, from: m[1], to: m[2] });
    m = /open(?:at)?\((?:[^,]+, )?"([^"]+\.part)"/.exec(line);
    if (m && m[1].startsWith(tmpDir) && !opens.has(m[1])) opens.set(m[1], tid); // the creating open
  });
  const toFinal = renames.filter((x) => TYPE_DIRS.some((d) => x.to.startsWith(path.join(cacheDir, d) + path.sep)));
  t.equal(toFinal.length, 42, 'every download was renamed into place once');
  for (const x of toFinal) {
    const s = synced.get(x.from);
    t.ok(s !== undefined && s < x.at, `${path.basename(x.from)} synced before its rename to ${path.basename(x.to)}`);
    t.not(x.tid, mainTid, 'not renamed on the main thread');
  }
  // One hop: a small body's file is created, written and renamed inside one
  // synchronous job on the commit worker's thread (its fdatasync runs on
  // libuv's pool); the main thread only posts the batch.
  const small = toFinal.filter((x) => x.to.endsWith('.jpg'));
  t.equal(small.length, 40);
  const workerTids = new Set(small.map((x) => x.tid));
  t.equal(workerTids.size, 1, 'every small file renamed by the one commit worker thread');
  for (const x of small) t.equal(opens.get(x.from), x.tid, `${path.basename(x.from)} created by the thread that renamed it`);
  t.not([...workerTids][0], mainTid);
  const large = toFinal.filter((x) => x.to.endsWith('.mp4'));
  t.equal(large.length, 2);
  for (const x of large) t.not(x.tid, [...workerTids][0], 'a large body is synced and renamed on libuv’s pool, not by the worker');
});
