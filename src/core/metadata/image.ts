/**
 * Images: EXIF orientation (JPEG APP1, PNG eXIf, WebP EXIF, TIFF IFD0), the
 * size as displayed (orientations 5-8 turn the picture a quarter), and the
 * animation frame count of GIF, WebP and APNG.
 *
 * Costs: JPEG, PNG and WebP walk segment/chunk headers and skip payloads
 * (a few reads at the head, any chunk count bounded). A GIF has no frame
 * index: counting its frames walks its blocks to the end, capped at
 * GIF_SCAN_BYTES (a larger GIF gets no frame count).
 */
import { MetadataError, type MediaMetadata } from './types.js';
import { ascii, type RangeReader } from './reader.js';

export const GIF_SCAN_BYTES = 64 * 1024 * 1024;
const MAX_CHUNKS = 100_000;

/** Orientation tag (0x0112) of a TIFF structure's first IFD. */
export function tiffOrientation(t: Buffer): number | undefined {
  if (t.length < 8) return undefined;
  const le = ascii(t, 0, 2) === 'II';
  if (!le && ascii(t, 0, 2) !== 'MM') return undefined;
  const u16 = (p: number): number => (le ? t.readUInt16LE(p) : t.readUInt16BE(p));
  const u32 = (p: number): number => (le ? t.readUInt32LE(p) : t.readUInt32BE(p));
  const ifd = u32(4);
  if (ifd + 2 > t.length) return undefined;
  const n = u16(ifd);
  for (let i = 0; i < n && i < 512; i++) {
    const e = ifd + 2 + i * 12;
    if (e + 12 > t.length) return undefined;
    if (u16(e) === 0x0112) return u16(e + 8);
  }
  return undefined;
}

function displayed(m: MediaMetadata, w: number | undefined, h: number | undefined): MediaMetadata {
  if (w && h) [m.width, m.height] = m.orientation !== undefined && m.orientation >= 5 ? [h, w] : [w, h];
  return m;
}

async function readJpeg(r: RangeReader): Promise<MediaMetadata> {
  const m: MediaMetadata = {};
  let w: number | undefined;
  let h: number | undefined;
  let p = 2;
  for (let n = 0; n < 1024 && p + 4 <= r.size; n++) {
    const s = await r.read(p, 4);
    if (s.length < 4 || s[0] !== 0xff) break;
    const marker = s[1];
    if (marker === 0xff) {
      p++; // fill byte
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      p += 2;
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) break;
    const len = s.readUInt16BE(2);
    if (len < 2) throw new MetadataError(`JPEG segment with length ${len}`);
    if (marker === 0xe1 && m.orientation === undefined) {
      const b = await r.read(p + 4, len - 2);
      if (ascii(b, 0, 6) === 'Exif\0\0') m.orientation = tiffOrientation(Buffer.from(b.subarray(6)));
    } else if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      const b = await r.readExact(p + 4, 5);
      h = b.readUInt16BE(1);
      w = b.readUInt16BE(3);
      break; // EXIF comes before the frame header
    }
    p += 2 + len;
  }
  return displayed(m, w, h);
}

async function readPng(r: RangeReader): Promise<MediaMetadata> {
  const m: MediaMetadata = { frameCount: 1 };
  let w: number | undefined;
  let h: number | undefined;
  let p = 8;
  for (let n = 0; n < MAX_CHUNKS && p + 8 <= r.size; n++) {
    const c = await r.read(p, 8);
    if (c.length < 8) break;
    const len = c.readUInt32BE(0);
    const type = ascii(c, 4, 8);
    if (type === 'IHDR') {
      const b = await r.readExact(p + 8, 8);
      w = b.readUInt32BE(0);
      h = b.readUInt32BE(4);
    } else if (type === 'acTL') m.frameCount = (await r.readExact(p + 8, 4)).readUInt32BE(0);
    else if (type === 'eXIf') m.orientation = tiffOrientation(Buffer.from(await r.read(p + 8, Math.min(len, 64 * 1024))));
    else if (type === 'IDAT' || type === 'IEND') break; // acTL and eXIf come before the image data
    p += 12 + len;
  }
  return displayed(m, w, h);
}

async function readWebp(r: RangeReader): Promise<MediaMetadata> {
  const m: MediaMetadata = { frameCount: 1 };
  let w: number | undefined;
  let h: number | undefined;
  let frames = 0;
  const end = Math.min(r.size, 8 + (await r.readExact(0, 12)).readUInt32LE(4));
  let p = 12;
  for (let n = 0; n < MAX_CHUNKS && p + 8 <= end; n++) {
    const c = await r.read(p, 8);
    if (c.length < 8) break;
    const type = ascii(c, 0, 4);
    const len = c.readUInt32LE(4);
    if (type === 'VP8X') {
      const b = await r.readExact(p + 8, 10);
      w = 1 + b.readUIntLE(4, 3);
      h = 1 + b.readUIntLE(7, 3);
    } else if (type === 'VP8 ' && w === undefined) {
      const b = await r.readExact(p + 8, 10);
      w = b.readUInt16LE(6) & 0x3fff;
      h = b.readUInt16LE(8) & 0x3fff;
    } else if (type === 'VP8L' && w === undefined) {
      const b = await r.readExact(p + 8, 5);
      const bits = b.readUInt32LE(1);
      w = 1 + (bits & 0x3fff);
      h = 1 + ((bits >> 14) & 0x3fff);
    } else if (type === 'ANMF') frames++;
    else if (type === 'EXIF') m.orientation = tiffOrientation(Buffer.from(await r.read(p + 8, Math.min(len, 64 * 1024))));
    p += 8 + len + (len & 1);
  }
  if (frames > 0) m.frameCount = frames;
  return displayed(m, w, h);
}

/** Walks every block: image descriptors are frames; extensions and image data are skipped by their sub-block lengths. */
async function readGif(r: RangeReader): Promise<MediaMetadata> {
  const hdr = await r.readExact(0, 13);
  const w = hdr.readUInt16LE(6);
  const h = hdr.readUInt16LE(8);
  let p = 13 + (hdr[10] & 0x80 ? 3 * 2 ** ((hdr[10] & 7) + 1) : 0);
  let frames = 0;
  const skipSubBlocks = async (): Promise<void> => {
    for (;;) {
      const b = await r.read(p, 1);
      if (b.length === 0) throw new MetadataError('GIF ends inside a block');
      p += 1 + b[0];
      if (b[0] === 0) return;
    }
  };
  for (let n = 0; ; n++) {
    if (n % 4096 === 0) r.check();
    const b = await r.read(p, 10);
    if (b.length === 0) throw new MetadataError('GIF has no trailer');
    if (b[0] === 0x3b) break;
    if (b[0] === 0x21) {
      p += 2;
      await skipSubBlocks();
    } else if (b[0] === 0x2c) {
      if (b.length < 10) throw new MetadataError('GIF ends inside an image descriptor');
      frames++;
      p += 10 + (b[9] & 0x80 ? 3 * 2 ** ((b[9] & 7) + 1) : 0) + 1; // descriptor, local table, LZW code size
      await skipSubBlocks();
    } else throw new MetadataError(`GIF block 0x${b[0].toString(16)} at ${p}`);
  }
  return { width: w, height: h, ...(frames > 0 ? { frameCount: frames } : {}) };
}

async function readTiff(r: RangeReader): Promise<MediaMetadata> {
  const o = tiffOrientation(Buffer.from(await r.read(0, 64 * 1024)));
  return o === undefined ? {} : { orientation: o };
}

export async function readImage(r: RangeReader, ext: string): Promise<MediaMetadata> {
  switch (ext) {
    case '.jpg':
      return readJpeg(r);
    case '.png':
      return readPng(r);
    case '.webp':
      return readWebp(r);
    case '.gif':
      return readGif(r);
    case '.tiff':
      return readTiff(r);
    default:
      return {};
  }
}
