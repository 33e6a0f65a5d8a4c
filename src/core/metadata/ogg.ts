/**
 * Ogg video (Theora, with Vorbis or Opus audio): the first packet of each
 * logical stream (its beginning-of-stream page, all in the first pages)
 * names the codec and its format; the duration is the last granule position
 * of each stream, read from the file's tail.
 */
import { MetadataError, type MediaMetadata } from './types.js';
import { ascii, type RangeReader } from './reader.js';

const HEAD_BYTES = 64 * 1024;
const TAIL_BYTES = 64 * 1024;

interface Page {
  serial: number;
  granule: bigint;
  bos: boolean;
  /** First bytes of the page's payload. */
  payload: Buffer;
  length: number;
}

function pageAt(b: Buffer, p: number): Page | undefined {
  if (p + 27 > b.length || ascii(b, p, p + 4) !== 'OggS') return undefined;
  const segs = b[p + 26];
  if (p + 27 + segs > b.length) return undefined;
  let body = 0;
  for (let i = 0; i < segs; i++) body += b[p + 27 + i];
  const start = p + 27 + segs;
  return {
    serial: b.readUInt32LE(p + 14),
    granule: b.readBigInt64LE(p + 6),
    bos: (b[p + 5] & 2) !== 0,
    payload: b.subarray(start, Math.min(b.length, start + body)),
    length: 27 + segs + body,
  };
}

interface Stream {
  kind: 'theora' | 'vorbis' | 'opus' | 'other';
  rate?: number;
  frn?: number;
  frd?: number;
  shift?: number;
  preskip?: number;
  width?: number;
  height?: number;
  channels?: number;
  last?: bigint;
}

function identify(p: Buffer): Stream {
  if (p.length >= 42 && p[0] === 0x80 && ascii(p, 1, 7) === 'theora') {
    return {
      kind: 'theora',
      width: p.readUIntBE(14, 3),
      height: p.readUIntBE(17, 3),
      frn: p.readUInt32BE(22),
      frd: p.readUInt32BE(26),
      shift: ((p.readUInt16BE(40) >> 5) & 0x1f),
    };
  }
  if (p.length >= 16 && p[0] === 1 && ascii(p, 1, 7) === 'vorbis') return { kind: 'vorbis', channels: p[11], rate: p.readUInt32LE(12) };
  if (p.length >= 16 && ascii(p, 0, 8) === 'OpusHead') return { kind: 'opus', channels: p[9], rate: 48000, preskip: p.readUInt16LE(10) };
  return { kind: 'other' };
}

/** Seconds at granule position `g` of stream `s`, if its codec is known. */
function seconds(s: Stream, g: bigint): number | undefined {
  if (g < 0n) return undefined;
  if (s.kind === 'theora' && s.frn && s.frd && s.shift !== undefined) {
    const frames = (g >> BigInt(s.shift)) + (g & ((1n << BigInt(s.shift)) - 1n));
    return (Number(frames) * s.frd) / s.frn;
  }
  if (s.kind === 'vorbis' && s.rate) return Number(g) / s.rate;
  if (s.kind === 'opus') return Math.max(0, Number(g) - (s.preskip ?? 0)) / 48000;
  return undefined;
}

export async function readOggVideo(r: RangeReader): Promise<MediaMetadata> {
  const head = Buffer.from(await r.read(0, HEAD_BYTES));
  const streams = new Map<number, Stream>();
  for (let p = 0, n = 0; n < 64; n++) {
    const page = pageAt(head, p);
    if (!page || !page.bos) break;
    streams.set(page.serial, identify(page.payload));
    p += page.length;
  }
  if (streams.size === 0) throw new MetadataError('no Ogg beginning-of-stream page');
  const tailStart = Math.max(0, r.size - TAIL_BYTES);
  const tail = Buffer.from(await r.read(tailStart, TAIL_BYTES));
  for (let p = tail.indexOf('OggS'), n = 0; p >= 0 && n < 4096; n++) {
    const page = pageAt(tail, p);
    const s = page && streams.get(page.serial);
    if (s && page.granule >= 0n) s.last = page.granule;
    p = tail.indexOf('OggS', page && page.length > 0 ? p + page.length : p + 4);
  }
  const m: MediaMetadata = {};
  const all = [...streams.values()];
  const video = all.find((s) => s.kind === 'theora');
  const audio = all.find((s) => s.kind === 'vorbis' || s.kind === 'opus');
  if (video) {
    m.videoCodec = 'theora';
    m.width = video.width;
    m.height = video.height;
    if (video.frn && video.frd) m.frameRate = video.frn / video.frd;
  }
  if (audio) {
    m.audioCodec = audio.kind;
    m.sampleRate = audio.rate;
    m.channels = audio.channels;
  }
  const secs = all.map((s) => (s.last === undefined ? undefined : seconds(s, s.last))).filter((x): x is number => x !== undefined);
  if (secs.length) m.durationSec = Math.max(...secs);
  if (m.durationSec) m.bitrate = Math.round((r.size * 8) / m.durationSec);
  return m;
}
