import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { extractMetadata, isCleanMetadata } from '../../../src/core/metadata/index.js';
import { cleanMetadata, codecName } from '../../../src/core/metadata/types.js';
import { SNIFF_TYPES } from '../../../src/core/content/sniff.js';
import { FIXTURE_DIR } from '../../helpers/origin.js';
import { CASES, pathOf, sniffedOf } from './fixtures.js';

t.test('every field of every fixture', async (t) => {
  for (const c of CASES) {
    const r = await extractMetadata(pathOf(c), sniffedOf(c), { timeoutMs: 10_000 });
    t.same(r, { metadata: c.want }, c.file);
    t.strictSame(r.metadata, c.want, `${c.file}: no other fields`);
  }
});

t.test('with the download\'s head bytes handed over: the same answers', async (t) => {
  for (const c of CASES) {
    const bytes = fs.readFileSync(pathOf(c));
    for (const n of [4100, 64 * 1024]) {
      const r = await extractMetadata(pathOf(c), sniffedOf(c), { head: { bytes: bytes.subarray(0, n), size: bytes.length } });
      t.strictSame(r, { metadata: c.want }, `${c.file}, ${n}-byte head`);
    }
  }
  // A head whose file was replaced since: refused, not misread.
  const c = CASES.find((x) => x.file === 'h264-moov-end.mp4')!;
  const bytes = fs.readFileSync(pathOf(c));
  const r = await extractMetadata(pathOf(c), sniffedOf(c), { head: { bytes: bytes.subarray(0, 100), size: bytes.length + 1 } });
  t.match(r, { error: /not the one described/ });
});

t.test('the older sample fixtures give their known sizes and lengths', async (t) => {
  const want: Record<string, object> = {
    'sample.mp4': { width: 64, height: 48, durationSec: 0.5, videoCodec: 'h264', frameRate: 10 },
    'sample.mkv': { width: 64, height: 48, durationSec: 0.5, videoCodec: 'h264', frameRate: 10 },
    'sample.webm': { width: 64, height: 48, durationSec: 0.5, videoCodec: 'vp8', frameRate: 10 },
    'sample.ogv': { width: 64, height: 48, durationSec: 0.5, videoCodec: 'theora', frameRate: 10 },
    'sample.mpeg': { width: 64, height: 48, videoCodec: 'mpeg1video', frameRate: 25 },
    'sample.jpg': { width: 64, height: 48 },
    'sample.gif': { width: 32, height: 24, frameCount: 1 },
    'sample.pdf': { pageCount: 1, encrypted: false },
    'sample.wav': { durationSec: 0.1, audioCodec: 'pcm_s16le', sampleRate: 8000, channels: 1 },
  };
  for (const [file, fields] of Object.entries(want)) {
    const r = await extractMetadata(path.join(FIXTURE_DIR, file), SNIFF_TYPES[file.split('.')[1] as keyof typeof SNIFF_TYPES]);
    t.match(r.metadata, fields, file);
  }
  for (const file of ['sample.svg', 'sample.bmp', 'sample.ico', 'sample.avif']) {
    const r = await extractMetadata(path.join(FIXTURE_DIR, file), SNIFF_TYPES[file.split('.')[1] as keyof typeof SNIFF_TYPES]);
    t.same(r, { metadata: {} }, `${file}: nothing to read, no error`);
  }
});

t.test('a moov at the end is found by skipping mdat: a few reads, not the file', async (t) => {
  // 64 MiB of mdat payload (sparse: costs no disk) between ftyp and moov.
  const src = fs.readFileSync(pathOf(CASES[0]));
  const dir = t.testdir({});
  const p = path.join(dir, 'big.mp4');
  const ftypLen = src.readUInt32BE(0);
  const moovLen = src.readUInt32BE(ftypLen);
  const moov = src.subarray(ftypLen, ftypLen + moovLen);
  const fd = fs.openSync(p, 'w');
  fs.writeSync(fd, src.subarray(0, ftypLen), 0, ftypLen, 0);
  const hdr = Buffer.alloc(16);
  hdr.writeUInt32BE(1, 0);
  hdr.write('mdat', 4);
  hdr.writeBigUInt64BE(BigInt(16 + 64 * 1024 * 1024), 8);
  fs.writeSync(fd, hdr, 0, 16, ftypLen);
  fs.writeSync(fd, moov, 0, moov.length, ftypLen + 16 + 64 * 1024 * 1024);
  fs.closeSync(fd);
  const r = await extractMetadata(p, SNIFF_TYPES.mp4);
  // Chunk offsets now point nowhere, but the header fields are all there.
  t.match(r.metadata, { width: 96, height: 64, durationSec: 2, videoCodec: 'h264', audioCodec: 'aac', frameRate: 25 });
});

t.test('abort and missing files answer with a reason, never a throw', async (t) => {
  const ac = new AbortController();
  ac.abort(new Error('stop'));
  const r1 = await extractMetadata(pathOf(CASES[0]), sniffedOf(CASES[0]), { signal: ac.signal });
  t.equal(r1.metadata, undefined);
  t.match(r1, { error: /stop/, transient: true });
  const r2 = await extractMetadata('/nonexistent/x.mp3', SNIFF_TYPES.mp3);
  t.match(r2, { error: /ENOENT/, transient: true });
  const r3 = await extractMetadata('/nonexistent/x.pdf', SNIFF_TYPES.pdf);
  t.match(r3, { error: /ENOENT/, transient: true });
});

t.test('cleanMetadata keeps only sane values', async (t) => {
  t.same(cleanMetadata({ width: -1, height: 1.5, durationSec: NaN, frameRate: 29.97002997, videoCodec: 'h264', audioCodec: '<script>', orientation: 9, encrypted: 'yes', junk: 1 }), {
    frameRate: 29.97,
    videoCodec: 'h264',
  });
  t.same(cleanMetadata(null), {});
  t.ok(isCleanMetadata({ durationSec: 1.5, channels: 2 }));
  t.notOk(isCleanMetadata({ durationSec: 1.23456 }), 'unrounded');
  t.notOk(isCleanMetadata({ other: 1 }), 'unknown key');
  t.equal(codecName('avc1'), 'h264');
  t.equal(codecName('V_VP9'), 'vp9');
  t.equal(codecName('XYZ1'), 'xyz1', 'unknown ids pass through lowercased');
});
