/**
 * Media type from content, never from names or headers.
 * Pure: looks at the first SNIFF_BYTES of a body and nothing else.
 *
 * Invariant: `sniff()` answers only for the types the cache stores; anything
 * else (HTML, zip, docx, text, empty) is `undefined`, which callers turn into
 * E_UNSUPPORTED_TYPE. When in doubt it says `undefined`: storing an HTML
 * error page as a JPEG is worse than refusing a strange but valid file.
 */
import { imageSize } from 'image-size';
import type { MediaType } from '../types.js';

export interface Sniffed {
  mediaType: MediaType;
  mimeType: string;
  /** With the dot: ".jpg". */
  extension: string;
}

/**
 * How many leading bytes `sniff()` wants. 4100 covers every check here
 * (EBML headers, Ogg BOS pages, an SVG prologue, ID3 before FLAC for small
 * tags). Dimensions may need more; see `IMAGE_HEAD_CAP`.
 */
export const SNIFF_BYTES = 4100;

/**
 * Images whose size fields lie past the sniff head (JPEG with large EXIF/ICC
 * segments) are buffered up to this many bytes for `imageDimensions`; the
 * same limit image-size's own `imageSizeFromFile` reads.
 */
export const IMAGE_HEAD_CAP = 512 * 1024;

const t = (mediaType: MediaType, mimeType: string, extension: string): Sniffed =>
  Object.freeze({ mediaType, mimeType, extension });

/** Every answer `sniff()` can give, by extension without the dot. */
export const SNIFF_TYPES = Object.freeze({
  jpg: t('image', 'image/jpeg', '.jpg'),
  png: t('image', 'image/png', '.png'),
  gif: t('image', 'image/gif', '.gif'),
  webp: t('image', 'image/webp', '.webp'),
  avif: t('image', 'image/avif', '.avif'),
  heic: t('image', 'image/heic', '.heic'),
  bmp: t('image', 'image/bmp', '.bmp'),
  tiff: t('image', 'image/tiff', '.tiff'),
  svg: t('image', 'image/svg+xml', '.svg'),
  ico: t('image', 'image/vnd.microsoft.icon', '.ico'),
  mp4: t('video', 'video/mp4', '.mp4'),
  webm: t('video', 'video/webm', '.webm'),
  mov: t('video', 'video/quicktime', '.mov'),
  mkv: t('video', 'video/x-matroska', '.mkv'),
  avi: t('video', 'video/x-msvideo', '.avi'),
  mpeg: t('video', 'video/mpeg', '.mpeg'),
  ogv: t('video', 'video/ogg', '.ogv'),
  mp3: t('audio', 'audio/mpeg', '.mp3'),
  ogg: t('audio', 'audio/ogg', '.ogg'),
  oga: t('audio', 'audio/ogg', '.oga'),
  opus: t('audio', 'audio/opus', '.opus'),
  wav: t('audio', 'audio/wav', '.wav'),
  flac: t('audio', 'audio/flac', '.flac'),
  m4a: t('audio', 'audio/mp4', '.m4a'),
  pdf: t('document', 'application/pdf', '.pdf'),
} satisfies Record<string, Sniffed>);

export type SniffKey = keyof typeof SNIFF_TYPES;

export function sniff(head: Uint8Array): Sniffed | undefined {
  const key = sniffKey(head);
  return key === undefined ? undefined : SNIFF_TYPES[key];
}

/** Same as `sniff` but returns the short key ("jpg", "ogv", ...). */
export function sniffKey(b: Uint8Array): SniffKey | undefined {
  if (b.length < 4) return undefined;
  const b0 = b[0];
  // Cheap dispatch on the first byte keeps the common cases to a few compares.
  if (b0 === 0xff) {
    if (b[1] === 0xd8 && b[2] === 0xff) return 'jpg';
    return isMpegAudioFrame(b, 0) ? 'mp3' : undefined;
  }
  if (startsWith(b, PNG)) return 'png';
  if (ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a') return 'gif';
  if (ascii(b, 0, 4) === 'RIFF' || ascii(b, 0, 4) === 'RF64') {
    const form = ascii(b, 8, 12);
    if (form === 'WEBP' && b0 === 0x52 && ascii(b, 0, 4) === 'RIFF') return 'webp';
    if (form === 'WAVE') return 'wav';
    if (form === 'AVI ' || form === 'AVIX') return 'avi';
    return undefined;
  }
  if (ascii(b, 4, 8) === 'ftyp') return isoBmff(b);
  if (startsWith(b, EBML)) return ebml(b);
  if (ascii(b, 0, 4) === 'OggS') return ogg(b);
  if (ascii(b, 0, 4) === 'fLaC') return 'flac';
  if (ascii(b, 0, 3) === 'ID3') return id3(b);
  if (b0 === 0 && b[1] === 0 && b[2] === 1 && (b[3] === 0xba || b[3] === 0xb3)) return 'mpeg';
  if ((ascii(b, 0, 4) === 'II*\0' || ascii(b, 0, 4) === 'MM\0*')) return 'tiff';
  if (isBmp(b)) return 'bmp';
  if (isIco(b)) return 'ico';
  if (isOldQuickTime(b)) return 'mov';
  if (isPdf(b)) return 'pdf';
  if (isSvg(b)) return 'svg';
  return undefined;
}

/**
 * Width/height of an image from its leading bytes, via image-size. Returns
 * undefined when the bytes are not enough or not understood; the caller may
 * retry with a longer head (up to IMAGE_HEAD_CAP) and then gives up.
 */
/**
 * How many leading bytes of a JPEG reach through its frame header (SOFn),
 * found by walking the segment lengths, so that image-size is asked once
 * with enough bytes instead of failing (a thrown error each time) at every
 * smaller head; EXIF, ICC profiles and comments often come first and run to
 * tens of KiB. While the walk runs out of bytes this is a lower bound (the
 * next marker's end); undefined when the bytes do not walk as JPEG segments
 * (image-size then decides, as for any other type).
 */
export function jpegHeadNeeded(b: Uint8Array): number | undefined {
  if (b.length < 2 || b[0] !== 0xff || b[1] !== 0xd8) return undefined;
  let i = 2;
  for (;;) {
    if (i + 4 > b.length) return i + 4;
    if (b[i] !== 0xff) return undefined;
    const m = b[i + 1];
    if (m === 0xff) {
      i++; // fill byte
      continue;
    }
    // SOFn (not DHT C4, JPG C8, DAC CC): marker, length, precision, height, width
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) return i + 9;
    if (m === 0x01 || (m >= 0xd0 && m <= 0xd7)) {
      i += 2; // standalone markers carry no length
      continue;
    }
    if (m === 0xd8 || m === 0xd9 || m === 0xda) return undefined; // SOI, EOI, scan data before any frame header
    i += 2 + ((b[i + 2] << 8) | b[i + 3]);
  }
}

export function imageDimensions(head: Uint8Array): { width: number; height: number } | undefined {
  // image-size's readers build DataViews without a length and read past a
  // subarray's end into whatever shares its ArrayBuffer (pooled Buffers), so
  // it must get a private copy whose buffer ends where the data ends.
  const copy = new Uint8Array(head.length);
  copy.set(head);
  try {
    const r = imageSize(copy);
    const { width, height } = r;
    if (Number.isFinite(width) && Number.isFinite(height) && width > 0 && height > 0) return { width, height };
  } catch {
    // RangeError: needs more bytes; TypeError: not understood. Both: no size.
  }
  return undefined;
}

// ---------------------------------------------------------------------------

const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const EBML = [0x1a, 0x45, 0xdf, 0xa3];

function startsWith(b: Uint8Array, sig: readonly number[], at = 0): boolean {
  if (b.length < at + sig.length) return false;
  for (let i = 0; i < sig.length; i++) if (b[at + i] !== sig[i]) return false;
  return true;
}

function ascii(b: Uint8Array, start: number, end: number): string {
  if (b.length < end) return '';
  let s = '';
  for (let i = start; i < end; i++) s += String.fromCharCode(b[i]);
  return s;
}

function u32be(b: Uint8Array, o: number): number {
  return ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
}
function u16le(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}
function u32le(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 0x1000000;
}

const AVIF_BRANDS = new Set(['avif', 'avis']);
const HEIC_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'mif1', 'msf1']);
const M4A_BRANDS = new Set(['M4A ', 'M4B ', 'M4P ', 'F4A ', 'F4B ']);

/** ISO base media (MP4, MOV, M4A, AVIF/HEIC) by the ftyp major + compatible brands. */
function isoBmff(b: Uint8Array): SniffKey | undefined {
  const boxSize = u32be(b, 0);
  if (boxSize < 16 || boxSize % 4 !== 0) return undefined;
  const major = ascii(b, 8, 12);
  if (!/^[\x20-\x7e]{4}$/.test(major)) return undefined;
  const brands = [major];
  for (let o = 16; o + 4 <= Math.min(boxSize, b.length); o += 4) brands.push(ascii(b, o, o + 4));
  // An image brand anywhere wins: AVIF files often carry mif1 as major brand.
  if (brands.some((x) => AVIF_BRANDS.has(x))) return 'avif';
  if (HEIC_BRANDS.has(major)) return 'heic';
  if (major === 'qt  ') return 'mov';
  if (M4A_BRANDS.has(major)) return 'm4a';
  return 'mp4';
}

/** QuickTime files from before `ftyp` existed start with another top-level atom. */
function isOldQuickTime(b: Uint8Array): boolean {
  if (b.length < 8) return false;
  const atom = ascii(b, 4, 8);
  if (atom !== 'moov' && atom !== 'mdat' && atom !== 'wide' && atom !== 'pnot') return false;
  const size = u32be(b, 0);
  return size === 0 || size === 1 || size >= 8;
}

/** Matroska vs WebM from the EBML header's DocType element (0x4282). */
function ebml(b: Uint8Array): SniffKey | undefined {
  const hdr = readVint(b, 4);
  if (!hdr) return undefined;
  let o = 4 + hdr.length;
  const end = Math.min(b.length, hdr.value === undefined ? b.length : o + hdr.value);
  while (o < end) {
    const id = readVint(b, o, true);
    if (!id) return undefined;
    const size = readVint(b, o + id.length);
    if (!size || size.value === undefined) return undefined;
    const data = o + id.length + size.length;
    if (id.value === 0x4282) {
      if (data + size.value > b.length) return undefined;
      const docType = ascii(b, data, data + size.value).replace(/\0+$/, '');
      if (docType === 'webm') return 'webm';
      if (docType === 'matroska') return 'mkv';
      return undefined;
    }
    o = data + size.value;
  }
  return undefined;
}

/** EBML variable-length integer; `value` undefined means "unknown size". */
function readVint(b: Uint8Array, o: number, keepMarker = false): { length: number; value: number | undefined } | undefined {
  if (o >= b.length) return undefined;
  const first = b[o];
  let length = 1;
  while (length <= 8 && !(first & (0x80 >> (length - 1)))) length++;
  if (length > 8 || o + length > b.length) return undefined;
  let value = keepMarker ? first : first & (0xff >> length);
  let allOnes = value === (0xff >> length);
  for (let i = 1; i < length; i++) {
    value = value * 256 + b[o + i];
    if (b[o + i] !== 0xff) allOnes = false;
  }
  return { length, value: !keepMarker && allOnes ? undefined : value };
}

/**
 * Ogg: read the beginning-of-stream pages in the head and classify by codec.
 * Any Theora stream makes it a video (a Skeleton or Vorbis stream may come
 * first); otherwise the first audio codec decides.
 */
function ogg(b: Uint8Array): SniffKey | undefined {
  let o = 0;
  const codecs: string[] = [];
  while (o + 27 <= b.length && ascii(b, o, o + 4) === 'OggS') {
    const headerType = b[o + 5];
    const nSegs = b[o + 26];
    if (o + 27 + nSegs > b.length) break;
    let bodyLen = 0;
    for (let i = 0; i < nSegs; i++) bodyLen += b[o + 27 + i];
    const body = o + 27 + nSegs;
    if (!(headerType & 0x02)) break; // past the BOS pages: all streams are known
    const codec = oggCodec(b, body);
    if (codec) codecs.push(codec);
    o = body + bodyLen;
  }
  if (codecs.includes('theora')) return 'ogv';
  const audio = codecs.find((c) => c !== 'skeleton');
  if (audio === 'vorbis') return 'ogg';
  if (audio === 'opus') return 'opus';
  if (audio === 'flac' || audio === 'speex') return 'oga';
  return undefined;
}

function oggCodec(b: Uint8Array, o: number): string | undefined {
  if (ascii(b, o, o + 7) === '\x80theora') return 'theora';
  if (ascii(b, o, o + 7) === '\x01vorbis') return 'vorbis';
  if (ascii(b, o, o + 8) === 'OpusHead') return 'opus';
  if (ascii(b, o, o + 5) === '\x7fFLAC') return 'flac';
  if (ascii(b, o, o + 8) === 'Speex   ') return 'speex';
  if (ascii(b, o, o + 8) === 'fishead\0') return 'skeleton';
  return undefined;
}

/** An ID3v2 tag precedes MP3 usually, FLAC sometimes; look past it if we can. */
function id3(b: Uint8Array): SniffKey | undefined {
  if (b.length < 10 || b[3] === 0xff || b[4] === 0xff) return undefined;
  if ((b[6] | b[7] | b[8] | b[9]) & 0x80) return undefined; // size is syncsafe
  const size = ((b[6] << 21) | (b[7] << 14) | (b[8] << 7) | b[9]) + 10 + (b[5] & 0x10 ? 10 : 0);
  if (size + 4 <= b.length && ascii(b, size, size + 4) === 'fLaC') return 'flac';
  return 'mp3';
}

const MPEG_BITRATES_V1_L3 = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];
const MPEG_RATES_V1 = [44100, 48000, 32000];

/**
 * A bare MPEG audio frame header (no ID3). Eleven sync bits alone are too
 * weak, so reserved fields must be valid and, for MPEG-1 Layer III where the
 * frame length is easy to compute, the next frame must sync too when it lies
 * inside the head.
 */
function isMpegAudioFrame(b: Uint8Array, o: number): boolean {
  if (o + 4 > b.length) return false;
  if (b[o] !== 0xff || (b[o + 1] & 0xe0) !== 0xe0) return false;
  const version = (b[o + 1] >> 3) & 3; // 0: 2.5, 1: reserved, 2: v2, 3: v1
  const layer = (b[o + 1] >> 1) & 3; // 0: reserved (ADTS AAC uses it), 1: III
  const bitrateIdx = b[o + 2] >> 4;
  const rateIdx = (b[o + 2] >> 2) & 3;
  if (version === 1 || layer === 0 || bitrateIdx === 15 || bitrateIdx === 0 || rateIdx === 3) return false;
  if (version === 3 && layer === 1) {
    const len = Math.floor((144 * MPEG_BITRATES_V1_L3[bitrateIdx] * 1000) / MPEG_RATES_V1[rateIdx]) + ((b[o + 2] >> 1) & 1);
    const next = o + len;
    if (next + 2 <= b.length) return b[next] === 0xff && (b[next + 1] & 0xe0) === 0xe0;
  }
  return true;
}

const BMP_DIB_SIZES = new Set([12, 16, 40, 52, 56, 64, 108, 124]);

function isBmp(b: Uint8Array): boolean {
  return b.length >= 18 && b[0] === 0x42 && b[1] === 0x4d && BMP_DIB_SIZES.has(u32le(b, 14));
}

/** ICONDIR (reserved 0, type 1, count > 0) and a plausible first entry. */
function isIco(b: Uint8Array): boolean {
  if (b.length < 22) return false;
  if (u16le(b, 0) !== 0 || u16le(b, 2) !== 1) return false;
  const count = u16le(b, 4);
  if (count === 0 || count > 256) return false;
  const reserved = b[9];
  const planes = u16le(b, 10);
  const dataSize = u32le(b, 14);
  const dataOffset = u32le(b, 18);
  return reserved === 0 && planes <= 1 && dataSize > 0 && dataOffset >= 6 + 16 * count;
}

/** `%PDF-` at the start, after an optional UTF-8 BOM and a little whitespace. */
function isPdf(b: Uint8Array): boolean {
  let o = b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf ? 3 : 0;
  const limit = Math.min(b.length, o + 64);
  while (o < limit && (b[o] === 0x20 || b[o] === 0x09 || b[o] === 0x0a || b[o] === 0x0d || b[o] === 0x0c || b[o] === 0)) o++;
  return ascii(b, o, o + 5) === '%PDF-';
}

const textDecoder = new TextDecoder('utf-8', { fatal: false });

/**
 * SVG: after an optional BOM, whitespace, XML declaration, processing
 * instructions, comments and a non-HTML doctype, the first element must be
 * `<svg`. An HTML page with inline SVG starts with `<html`/`<!doctype html`
 * and so never matches.
 */
function isSvg(b: Uint8Array): boolean {
  let s = textDecoder.decode(b.length > SNIFF_BYTES ? b.subarray(0, SNIFF_BYTES) : b);
  if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
  let o = 0;
  for (;;) {
    while (o < s.length && /\s/.test(s[o])) o++;
    if (s.startsWith('<?', o)) {
      const e = s.indexOf('?>', o + 2);
      if (e < 0) return false;
      o = e + 2;
    } else if (s.startsWith('<!--', o)) {
      const e = s.indexOf('-->', o + 4);
      if (e < 0) return false;
      o = e + 3;
    } else if (/^<!doctype\s/i.test(s.slice(o, o + 10))) {
      const m = /^<!doctype\s+([^\s>[]+)/i.exec(s.slice(o, o + 200));
      if (!m || m[1].toLowerCase() !== 'svg') return false;
      const e = doctypeEnd(s, o);
      if (e < 0) return false;
      o = e;
    } else {
      return /^<svg[\s>/]/.test(s.slice(o, o + 5));
    }
  }
}

/** End of a doctype, skipping an internal subset `[...]`. */
function doctypeEnd(s: string, o: number): number {
  let inSubset = false;
  for (let i = o; i < s.length; i++) {
    const c = s[i];
    if (c === '[') inSubset = true;
    else if (c === ']') inSubset = false;
    else if (c === '>' && !inSubset) return i + 1;
  }
  return -1;
}
