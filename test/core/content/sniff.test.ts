import t from 'tap';
import fs from 'node:fs';
import { imageSize } from 'image-size';
import { sniff, sniffKey, imageDimensions, jpegHeadNeeded, SNIFF_BYTES, SNIFF_TYPES } from '../../../src/core/content/sniff.js';
import { TYPE_DIRS } from '../../../src/core/types.js';
import { fixture, FIXTURE_DIR } from '../../helpers/origin.js';

const head = (b: Uint8Array): Uint8Array => b.subarray(0, SNIFF_BYTES);

// Expected type of every fixture (test/fixtures/README.md): the extension names it.
const EXPECTED: Record<string, { key: string; mediaType: string; dims?: [number, number] }> = {
  'sample.jpg': { key: 'jpg', mediaType: 'image', dims: [64, 48] },
  'sample.png': { key: 'png', mediaType: 'image', dims: [40, 30] },
  'sample.gif': { key: 'gif', mediaType: 'image', dims: [32, 24] },
  'sample.webp': { key: 'webp', mediaType: 'image', dims: [50, 20] },
  'sample.bmp': { key: 'bmp', mediaType: 'image', dims: [16, 16] },
  'sample.tiff': { key: 'tiff', mediaType: 'image', dims: [20, 10] },
  'sample.ico': { key: 'ico', mediaType: 'image', dims: [16, 16] },
  'sample.avif': { key: 'avif', mediaType: 'image', dims: [24, 12] },
  'sample.svg': { key: 'svg', mediaType: 'image', dims: [120, 80] },
  'sample.mp4': { key: 'mp4', mediaType: 'video' },
  'sample.mov': { key: 'mov', mediaType: 'video' },
  'sample.webm': { key: 'webm', mediaType: 'video' },
  'sample.mkv': { key: 'mkv', mediaType: 'video' },
  'sample.avi': { key: 'avi', mediaType: 'video' },
  'sample.mpeg': { key: 'mpeg', mediaType: 'video' },
  'sample.ogv': { key: 'ogv', mediaType: 'video' },
  'sample.mp3': { key: 'mp3', mediaType: 'audio' },
  'sample.ogg': { key: 'ogg', mediaType: 'audio' },
  'sample.opus': { key: 'opus', mediaType: 'audio' },
  'sample.wav': { key: 'wav', mediaType: 'audio' },
  'sample.flac': { key: 'flac', mediaType: 'audio' },
  'sample.m4a': { key: 'm4a', mediaType: 'audio' },
  'sample.pdf': { key: 'pdf', mediaType: 'document' },
};

t.test('every fixture is recognised from its head alone', async (t) => {
  const files = fs.readdirSync(FIXTURE_DIR).filter((f) => f.startsWith('sample.'));
  t.same(files.sort(), Object.keys(EXPECTED).sort(), 'the table covers every fixture');
  for (const f of files) {
    const exp = EXPECTED[f];
    const s = sniff(head(fixture(f)));
    t.ok(s, `${f} sniffed`);
    if (!s) continue;
    t.equal(sniffKey(head(fixture(f))), exp.key, `${f} key`);
    t.equal(s.mediaType, exp.mediaType, `${f} mediaType`);
    t.equal(s.extension, `.${exp.key}`, `${f} extension`);
    t.match(s.mimeType, /^[a-z]+\/[a-z0-9.+-]+$/, `${f} mimeType`);
    t.ok(TYPE_DIRS[s.mediaType], `${f} has a folder`);
    if (exp.dims) {
      t.same(imageDimensions(head(fixture(f))), { width: exp.dims[0], height: exp.dims[1] }, `${f} dims`);
    }
  }
});

t.test('mime types and extensions per type', async (t) => {
  t.same(SNIFF_TYPES.jpg, { mediaType: 'image', mimeType: 'image/jpeg', extension: '.jpg' });
  t.equal(SNIFF_TYPES.svg.mimeType, 'image/svg+xml');
  t.equal(SNIFF_TYPES.mov.mimeType, 'video/quicktime');
  t.equal(SNIFF_TYPES.mkv.mimeType, 'video/x-matroska');
  t.equal(SNIFF_TYPES.mp3.mimeType, 'audio/mpeg');
  t.equal(SNIFF_TYPES.m4a.mimeType, 'audio/mp4');
  t.equal(SNIFF_TYPES.pdf.mimeType, 'application/pdf');
  for (const [k, v] of Object.entries(SNIFF_TYPES)) t.equal(v.extension, `.${k}`, `${k} extension matches key`);
});

t.test('our image detection agrees with image-size on every image fixture', async (t) => {
  for (const [f, exp] of Object.entries(EXPECTED)) {
    if (exp.mediaType !== 'image') continue;
    const r = imageSize(new Uint8Array(fixture(f)));
    const isType = r.type === 'heif' ? 'avif' : r.type === 'jpg' ? 'jpg' : r.type;
    t.equal(isType, exp.key, `${f}: image-size says ${r.type}`);
  }
});

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
/** One byte per char code (for binary strings with \x80-\xff). */
const bin = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

t.test('negatives: HTML, zip, docx, text, empty, short', async (t) => {
  const neg: Record<string, Uint8Array> = {
    empty: new Uint8Array(0),
    short: new Uint8Array([0xff, 0xd8]),
    html: enc('<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>'),
    htmlLower: enc('<html><body><svg width="10" height="10"></svg></body></html>'),
    htmlDoctypeThenSvg: enc('<!doctype html><svg width="1" height="1"></svg>'),
    xhtml: enc('<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body><svg/></body></html>'),
    xmlOther: enc('<?xml version="1.0"?><rss version="2.0"></rss>'),
    svgInText: enc('this is text mentioning <svg width="1"> somewhere'),
    zip: new Uint8Array([0x50, 0x4b, 0x03, 0x04, 0x14, 0, 0, 0, 8, 0, ...enc('[Content_Types].xml')]),
    text: enc('hello world, plain text\n'),
    json: enc('{"error":"not found"}'),
    gzip: new Uint8Array([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3]),
    riffUnknown: enc('RIFF\x10\0\0\0ABCDxxxxxxxx'),
    oggUnknown: concat(oggPage('\x80daala', 2)),
    ebmlUnknown: new Uint8Array([0x1a, 0x45, 0xdf, 0xa3, 0x88, 0x42, 0x82, 0x85, ...enc('other')]),
    adtsAac: new Uint8Array([0xff, 0xf1, 0x50, 0x80, 0x01, 0x7f, 0xfc, 0x21]),
    mpegSyncJunk: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
    pdfLate: enc(`${'x'.repeat(100)}%PDF-1.4`),
    utf16: new Uint8Array([0xff, 0xfe, 0x3c, 0x00, 0x68, 0x00]),
  };
  for (const [name, bytes] of Object.entries(neg)) t.equal(sniff(bytes), undefined, name);
});

t.test('SVG text sniff', async (t) => {
  const ok = [
    '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="20"/>',
    '\ufeff  \n<?xml version="1.0" encoding="UTF-8"?>\n<!-- made by hand -->\n<svg width="10" height="20"></svg>',
    '<?xml version="1.0" standalone="no"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n<svg width="10" height="20"/>',
    '<!DOCTYPE svg [ <!ENTITY a "b"> ]><?xml-stylesheet href="x.css"?><svg\nwidth="10" height="20">',
    '<svg>',
  ];
  for (const s of ok) t.equal(sniffKey(enc(s)), 'svg', JSON.stringify(s.slice(0, 40)));
  t.same(imageDimensions(enc(ok[0])), { width: 10, height: 20 }, 'dims from an SVG head');
  t.equal(sniffKey(enc('<svgfoo>')), undefined, 'svg must be the element name');
  t.equal(sniffKey(enc('<!-- unterminated comment <svg>')), undefined);
});

t.test('ISO BMFF brands', async (t) => {
  const ftyp = (major: string, ...compat: string[]): Uint8Array => {
    const body = enc(major + '\0\0\0\0' + compat.join(''));
    const out = new Uint8Array(8 + body.length);
    new DataView(out.buffer).setUint32(0, out.length);
    out.set(enc('ftyp'), 4);
    out.set(body, 8);
    return out;
  };
  t.equal(sniffKey(ftyp('isom', 'isom', 'iso2', 'avc1', 'mp41')), 'mp4');
  t.equal(sniffKey(ftyp('mp42', 'mp42', 'isom')), 'mp4');
  t.equal(sniffKey(ftyp('M4V ', 'M4V ', 'mp42')), 'mp4');
  t.equal(sniffKey(ftyp('qt  ', 'qt  ')), 'mov');
  t.equal(sniffKey(ftyp('M4A ', 'M4A ', 'mp42', 'isom')), 'm4a');
  t.equal(sniffKey(ftyp('M4B ', 'M4B ')), 'm4a');
  t.equal(sniffKey(ftyp('avif', 'mif1', 'miaf')), 'avif');
  t.equal(sniffKey(ftyp('mif1', 'avif', 'miaf')), 'avif', 'avif as a compatible brand');
  t.equal(sniffKey(ftyp('avis', 'avis', 'msf1')), 'avif');
  t.equal(sniffKey(ftyp('heic', 'mif1', 'heic')), 'heic');
  t.equal(sniff(ftyp('heic', 'mif1'))?.mediaType, 'image', 'heic is an image, not a video');
  const bad = ftyp('isom');
  new DataView(bad.buffer).setUint32(0, 3);
  t.equal(sniffKey(bad), undefined, 'implausible ftyp box size');
});

t.test('Matroska/WebM by DocType, not by magic alone', async (t) => {
  const mk = (doc: string): Uint8Array => {
    const d = enc(doc);
    // EBML header: EBMLVersion(0x4286)=1, then DocType(0x4282)
    const children = [0x42, 0x86, 0x81, 0x01, 0x42, 0x82, 0x80 | d.length, ...d];
    return new Uint8Array([0x1a, 0x45, 0xdf, 0xa3, 0x80 | children.length, ...children]);
  };
  t.equal(sniffKey(mk('webm')), 'webm');
  t.equal(sniffKey(mk('matroska')), 'mkv');
  t.equal(sniffKey(mk('webm').subarray(0, 12)), undefined, 'truncated before DocType');
});

function oggPage(payload: string, headerType: number): Uint8Array {
  const p = bin(payload);
  const out = new Uint8Array(27 + 1 + p.length);
  out.set(enc('OggS'), 0);
  out[5] = headerType;
  out[26] = 1;
  out[27] = p.length;
  out.set(p, 28);
  return out;
}
function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

t.test('Ogg by codec of the BOS pages', async (t) => {
  t.equal(sniffKey(oggPage('\x01vorbis\0\0\0\0', 2)), 'ogg');
  t.equal(sniffKey(oggPage('OpusHead\x01\x02', 2)), 'opus');
  t.equal(sniffKey(oggPage('\x7fFLAC\x01\0', 2)), 'oga');
  t.equal(sniffKey(oggPage('\x80theora\x03\x02', 2)), 'ogv');
  t.equal(sniff(oggPage('\x80theora\x03\x02', 2))?.mediaType, 'video');
  t.equal(sniffKey(concat(oggPage('fishead\0....', 2), oggPage('\x80theora\x03', 2), oggPage('\x01vorbis\0', 2))), 'ogv', 'skeleton first');
  t.equal(sniffKey(concat(oggPage('\x01vorbis\0', 2), oggPage('\x80theora\x03', 2))), 'ogv', 'theora after vorbis is still video');
});

t.test('MP3 with and without ID3; ID3 before FLAC', async (t) => {
  t.equal(sniffKey(enc('ID3\x04\0\0\0\0\0\x05hello')), 'mp3');
  const flacAfterId3 = concat(enc('ID3\x04\0\0\0\0\0\x02xx'), enc('fLaC\0\0\0\x22'));
  t.equal(sniffKey(flacAfterId3), 'flac');
  // MPEG-1 Layer III 128 kbit/s 44.1 kHz: frame length 417 bytes.
  const frame = new Uint8Array(417);
  frame.set([0xff, 0xfb, 0x90, 0x64]);
  t.equal(sniffKey(concat(frame, frame)), 'mp3');
  t.equal(sniffKey(frame.subarray(0, 100)), 'mp3', 'next frame beyond the head: header alone decides');
  const broken = concat(frame, new Uint8Array(10));
  t.equal(sniffKey(broken), undefined, 'no second frame where there should be one');
});

t.test('RIFF, PDF, MPEG, BMP, ICO, TIFF edge cases', async (t) => {
  t.equal(sniffKey(enc('RIFF\0\0\0\0WAVEfmt ')), 'wav');
  t.equal(sniffKey(bin('RF64\xff\xff\xff\xffWAVEds64')), 'wav');
  t.equal(sniffKey(enc('RIFF\0\0\0\0AVI LIST')), 'avi');
  t.equal(sniffKey(enc('%PDF-1.7\n')), 'pdf');
  t.equal(sniffKey(concat(new Uint8Array([0xef, 0xbb, 0xbf]), enc('\r\n  %PDF-1.4'))), 'pdf', 'BOM and whitespace');
  t.equal(sniffKey(new Uint8Array([0, 0, 1, 0xba, 0x44, 0, 4, 0])), 'mpeg');
  t.equal(sniffKey(new Uint8Array([0, 0, 1, 0xb3, 0x14, 0, 0xf0, 0x13])), 'mpeg', 'MPEG video elementary stream');
  t.equal(sniffKey(enc('BM hello this is text')), undefined, '"BM" text is not a bitmap');
  t.equal(sniffKey(new Uint8Array([0, 0, 1, 0, 0, 0, 0, 0])), undefined, 'ICO with zero images');
  t.equal(sniffKey(enc('MM\0*\0\0\0\x08')), 'tiff');
});

t.test('sniff looks only at its input and is pure', async (t) => {
  const png = fixture('sample.png');
  const h = new Uint8Array(png.subarray(0, 64));
  const copy = new Uint8Array(h);
  t.equal(sniffKey(h), 'png');
  t.same(h, copy, 'input not modified');
  t.equal(sniff(h), sniff(h), 'same frozen answer object');
  t.ok(SNIFF_BYTES >= 4096, 'enough bytes for every check');
});

t.test('imageDimensions never reads past its view', async (t) => {
  // A 16-byte view of a full PNG: image-size would read the IHDR past the
  // view's end if given the shared buffer (DEPS §6).
  const png = fixture('sample.png');
  t.equal(imageDimensions(png.subarray(0, 16)), undefined);
  t.same(imageDimensions(png.subarray(0, 24)), { width: 40, height: 30 });
  t.equal(imageDimensions(enc('not an image')), undefined);
});

/** A JPEG with `len` bytes of segment `marker` (COM, APP1…) inserted right after SOI. */
function jpegWithSegment(base: Buffer, marker: number, len: number): Buffer {
  const seg = Buffer.alloc(4 + len, 0xab);
  seg[0] = 0xff;
  seg[1] = marker;
  seg.writeUInt16BE(len + 2, 2);
  return Buffer.concat([base.subarray(0, 2), seg, base.subarray(2)]);
}

t.test('jpegHeadNeeded: exactly the bytes image-size needs, found by walking the segments', async (t) => {
  const base = fixture('sample.jpg');
  const dims = imageDimensions(base);
  t.ok(dims, 'the fixture has dimensions');
  for (const [name, jpg] of [
    ['the fixture', base],
    ['a 30,000-byte comment first', jpegWithSegment(base, 0xfe, 30_000)],
    ['a 65,000-byte APP1 and a 20,000-byte APP2 first', jpegWithSegment(jpegWithSegment(base, 0xe2, 20_000), 0xe1, 65_000)],
  ] as const) {
    const need = jpegHeadNeeded(jpg);
    t.ok(need !== undefined && need <= jpg.length, `${name}: found`);
    t.same(imageDimensions(jpg.subarray(0, need)), dims, `${name}: ${need} bytes are enough`);
    t.equal(imageDimensions(jpg.subarray(0, need! - 1)), undefined, `${name}: one byte fewer is not`);
    // With a head cut short, a lower bound that is more than the head holds.
    const short = jpg.subarray(0, 1000);
    const bound = jpegHeadNeeded(short);
    if (need! > 1000) t.ok(bound !== undefined && bound > 1000 && bound <= need!, `${name}: lower bound ${bound} from 1,000 bytes`);
  }
  t.equal(jpegHeadNeeded(fixture('sample.png')), undefined, 'not a JPEG');
  t.equal(jpegHeadNeeded(Buffer.from([0xff, 0xd8, 0x00, 0x01, 0x02, 0x03])), undefined, 'no marker after SOI');
  t.equal(jpegHeadNeeded(Buffer.from([0xff, 0xd8, 0xff, 0xda, 0x00, 0x08])), undefined, 'scan data before a frame header');
  t.equal(jpegHeadNeeded(Buffer.from([0xff, 0xd8])), 6, 'SOI alone: at least the next marker');
});
