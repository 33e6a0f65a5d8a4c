/**
 * Metadata through the real engine: a loopback origin serves the fixtures,
 * MediaCache downloads them, the records (and the index on disk) carry the
 * fields; a garbled container is still stored, without metadata, with the
 * reason logged; a sweep fills metadata into records that lack it.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { Sweeper, STEP_ORDER } from '../../../src/core/verify/sweep.js';
import { METADATA_VERSION } from '../../../src/core/metadata/index.js';
import { METADATA_FIELDS } from '../../../src/core/metadata/types.js';
import type { Logger } from '../../../src/core/util/logger.js';
import type { StoredRecord } from '../../../src/core/types.js';
import { startOrigin, type Origin } from '../../helpers/origin.js';
import { CASES, pathOf } from './fixtures.js';

interface Logged {
  level: string;
  msg: string;
  meta?: Record<string, unknown>;
}

function recorder(): { logger: Logger; lines: Logged[] } {
  const lines: Logged[] = [];
  const at =
    (level: string) =>
    (msg: string, meta?: Record<string, unknown>): void => {
      lines.push({ level, msg, meta });
    };
  return { logger: { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') }, lines };
}

/**
 * A fresh cache folder, removed only after the caches opened on it are
 * closed (teardowns run in the order they were registered, and setup()'s
 * close comes before this one's removal).
 */
const pendingDirs = new WeakMap<Test, string[]>();
function cacheDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-meta-'));
  pendingDirs.set(t, [...(pendingDirs.get(t) ?? []), dir]);
  return dir;
}

async function setup(t: Test, dir: string, logger: Logger): Promise<{ origin: Origin; open: () => Promise<MediaCache> }> {
  const origin = await startOrigin();
  const opened: MediaCache[] = [];
  t.teardown(async () => {
    for (const c of opened) await c.close();
    await origin.close();
    for (const d of pendingDirs.get(t) ?? []) fs.rmSync(d, { recursive: true, force: true });
  });
  return {
    origin,
    open: async () => {
      // A generous limit: metadata reads share it, and a loaded machine must not turn a parse into a time-out.
      const c = await MediaCache.open({ cacheDir: dir, retries: 0, timeoutMs: 60_000, logger });
      opened.push(c);
      return c;
    },
  };
}

const byFile = (f: string) => CASES.find((c) => c.file === f)!;

t.test('downloaded records carry the metadata, in memory and after a reopen', async (t) => {
  const dir = cacheDir(t);
  const { logger } = recorder();
  const { origin, open } = await setup(t, dir, logger);
  const files = ['h264-moov-end.mp4', 'vp9-opus.webm', 'tone.mp3', 'pages3-objstm.pdf', 'rot6.jpg', 'anim.gif'];
  for (const f of files) origin.route(`/${f}`, { body: fs.readFileSync(pathOf(byFile(f))) });
  let cache = await open();
  const md5s: Record<string, string> = {};
  for (const f of files) {
    const rec = await cache.download(origin.url(`/${f}`));
    t.match(rec, byFile(f).want, `${f}: record fields`);
    t.equal(rec.metadataVersion, METADATA_VERSION, `${f}: marked as read`);
    md5s[f] = rec.md5;
  }
  const jpeg = (await cache.find(md5s['rot6.jpg']))!;
  t.same([jpeg.width, jpeg.height, jpeg.orientation], [32, 64, 6], 'EXIF orientation 6: displayed size, not the stored 64x32');
  await cache.close();
  cache = await open();
  for (const f of files) t.match((await cache.find(md5s[f])), byFile(f).want, `${f}: fields kept by the index`);
  t.match((await cache.findByUrl(origin.url('/tone.mp3'))), { durationSec: 3.03, audioCodec: 'mp3' }, 'findByUrl too');
});

t.test('a garbled container is stored without metadata, the reason logged', async (t) => {
  const dir = cacheDir(t);
  const { logger, lines } = recorder();
  const { origin, open } = await setup(t, dir, logger);
  // A real MP4 head (so it sniffs as MP4) whose moov box claims a size past the end of the file.
  const good = fs.readFileSync(pathOf(byFile('h264-faststart.mp4')));
  const bad = Buffer.from(good);
  const moovAt = bad.readUInt32BE(0);
  t.equal(bad.toString('latin1', moovAt + 4, moovAt + 8), 'moov');
  bad.write('xxxx', moovAt + 12); // the first child (mvhd) renamed: the walk finds no track data…
  bad.writeUInt32BE(3, moovAt + 8); // …and its size is impossible
  origin.route('/bad.mp4', { body: bad });
  const cache = await open();
  const rec = await cache.download(origin.url('/bad.mp4'));
  t.equal(fs.statSync(rec.localPath).size, bad.length, 'the file is stored');
  for (const k of METADATA_FIELDS) t.equal(rec[k], undefined, `no ${k}`);
  t.equal(rec.metadataVersion, METADATA_VERSION, 'marked as read: sweeps do not retry a damaged file');
  const warn = lines.find((l) => l.level === 'warn' && /metadata unreadable/.test(l.msg));
  t.ok(warn, 'a warning says why');
  t.match(warn?.meta, { md5: rec.md5, reason: /mp4: box/ });
});

t.test('a sweep fills metadata into records that lack it', async (t) => {
  const dir = cacheDir(t);
  const { logger } = recorder();
  const { origin, open } = await setup(t, dir, logger);
  const files = ['tone.flac', 'sample.avi', 'pages3.pdf'];
  for (const f of files) origin.route(`/${f}`, { body: fs.readFileSync(pathOf(byFile(f))) });
  const cache = await open();
  const md5s: string[] = [];
  for (const f of files) {
    const rec = await cache.download(origin.url(`/${f}`));
    // As an index written before metadata existed would hold it.
    const bare: StoredRecord = { ...cache.index.embedded!.get(rec.md5)! };
    for (const k of [...METADATA_FIELDS, 'metadataVersion'] as const) delete bare[k];
    cache.index.embedded!.put(bare);
    md5s.push(rec.md5);
  }
  t.equal((await cache.find(md5s[0]))!.durationSec, undefined, 'stripped');
  const report = await new Sweeper(cache).run();
  t.same(report.steps.map((s) => s.name), STEP_ORDER, 'the metadata step runs, named');
  t.equal(report.metadataFilled, 3, 'counted in the report');
  t.match(report.steps.find((s) => s.name === 'metadata'), { count: 3 });
  for (const [i, f] of files.entries()) t.match((await cache.find(md5s[i])), { ...byFile(f).want, metadataVersion: METADATA_VERSION }, `${f} filled`);
  const again = await new Sweeper(cache).run();
  t.equal(again.metadataFilled, 0, 'nothing left to fill');
});
