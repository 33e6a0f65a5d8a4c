/**
 * ISO BMFF (MP4, MOV, M4A): a box walker that reads box headers only and
 * skips payloads by their sizes, so a `moov` after a large `mdat` (the
 * default ffmpeg layout) costs a few reads at the tail, never a pass over
 * the media data. Only the boxes that hold the answers are read:
 * mvhd/mehd (duration), tkhd (rotation), mdhd (track time), hdlr (track
 * kind), stsd (codec, coded size, audio format), stsz/stz2 (frame count).
 */
import { codecName, MetadataError, type MediaMetadata } from './types.js';
import { ascii, type RangeReader } from './reader.js';

interface Box {
  type: string;
  /** Payload start and end (end clamped to the parent: a truncated file keeps what it has). */
  body: number;
  end: number;
}

const MAX_BOXES = 20_000;
const CONTAINERS = new Set(['moov', 'trak', 'mdia', 'minf', 'stbl', 'mvex', 'edts']);

class Walker {
  visited = 0;
  constructor(readonly r: RangeReader) {}

  /** The child boxes of [from, to), in file order. */
  async *children(from: number, to: number): AsyncGenerator<Box> {
    let pos = from;
    while (pos + 8 <= to) {
      if (++this.visited > MAX_BOXES) throw new MetadataError('too many boxes');
      const h = await this.r.read(pos, 16);
      if (h.length < 8) return;
      let size = h.readUInt32BE(0);
      const type = ascii(h, 4, 8);
      let header = 8;
      if (size === 1) {
        if (h.length < 16) return;
        size = Number(h.readBigUInt64BE(8));
        header = 16;
      } else if (size === 0) size = to - pos;
      if (size < header) throw new MetadataError(`box ${JSON.stringify(type)} at ${pos} has size ${size}`);
      const end = Math.min(to, pos + size);
      yield { type, body: pos + header, end };
      pos += size;
    }
  }

  async body(b: Box, max: number): Promise<Buffer> {
    return Buffer.from(await this.r.read(b.body, Math.min(max, b.end - b.body)));
  }
}

interface Track {
  handler?: string;
  timescale?: number;
  duration?: number;
  rotated?: boolean;
  tkhdWidth?: number;
  tkhdHeight?: number;
  format?: string;
  width?: number;
  height?: number;
  channels?: number;
  sampleRate?: number;
  objectType?: number;
  samples?: number;
}

/** Parse `len` bytes from `b` or throw: the file lies about a box's size. */
function need(b: Buffer, len: number, what: string): void {
  if (b.length < len) throw new MetadataError(`${what} box too short`);
}

function fullBoxTimes(b: Buffer, what: string): { timescale: number; duration: number; rest: number } {
  need(b, 4, what);
  const v1 = b[0] === 1;
  need(b, v1 ? 32 : 20, what);
  const timescale = b.readUInt32BE(v1 ? 20 : 12);
  const duration = v1 ? Number(b.readBigUInt64BE(24)) : b.readUInt32BE(16);
  return { timescale, duration, rest: v1 ? 32 : 20 };
}

/**
 * The DecoderConfigDescriptor's objectTypeIndication inside an esds payload
 * (after version/flags), and for AAC the AudioSpecificConfig's channel
 * configuration (the sample entry's channel count is often a default 2).
 */
function esds(b: Buffer): { objectType?: number; channels?: number } {
  const out: { objectType?: number; channels?: number } = {};
  let p = 4;
  for (let guard = 0; guard < 16 && p < b.length; guard++) {
    const tag = b[p++];
    let len = 0;
    for (let i = 0; i < 4 && p < b.length; i++) {
      const c = b[p++];
      len = (len << 7) | (c & 0x7f);
      if (!(c & 0x80)) break;
    }
    if (tag === 0x03) p += 3; // ES_ID, flags (optional fields are not written by common muxers)
    else if (tag === 0x04) {
      out.objectType = b[p];
      p += 13; // the DecoderSpecificInfo follows
    } else if (tag === 0x05 && p + 2 <= b.length) {
      // audioObjectType (5 bits), samplingFrequencyIndex (4), channelConfiguration (4)
      const v = b.readUInt16BE(p);
      const ch = (v >> 3) & 0xf;
      if (v >> 11 !== 31 && ((v >> 7) & 0xf) !== 15 && ch >= 1 && ch <= 7) out.channels = ch === 7 ? 8 : ch;
      return out;
    } else p += len;
  }
  return out;
}

const OBJECT_TYPES: Record<number, string> = { 0x40: 'aac', 0x66: 'aac', 0x67: 'aac', 0x68: 'aac', 0x69: 'mp3', 0x6b: 'mp3', 0x20: 'mpeg4', 0x6c: 'mjpeg', 0xa9: 'dts', 0xa5: 'ac3', 0xdd: 'vorbis' };

async function readStsd(w: Walker, box: Box, t: Track): Promise<void> {
  const b = await w.body(box, 4096);
  need(b, 16, 'stsd');
  const e = b.subarray(8);
  const entrySize = Math.min(e.readUInt32BE(0), e.length);
  t.format = ascii(e, 4, 8);
  if (t.handler === 'vide' && entrySize >= 36) {
    t.width = e.readUInt16BE(32);
    t.height = e.readUInt16BE(34);
  } else if (t.handler === 'soun' && entrySize >= 36) {
    const version = e.readUInt16BE(16);
    let children = 36;
    if (version === 2 && entrySize >= 52) {
      t.sampleRate = Math.round(e.readDoubleBE(40));
      t.channels = e.readUInt32BE(48);
      children = 72;
    } else {
      t.channels = e.readUInt16BE(24);
      t.sampleRate = e.readUInt32BE(32) >>> 16;
      if (version === 1) children = 52;
    }
    // Child boxes of the sample entry: esds names the real codec of 'mp4a'.
    for (let p = children; p + 8 <= entrySize; ) {
      const size = e.readUInt32BE(p);
      if (size < 8) break;
      if (ascii(e, p + 4, p + 8) === 'esds') {
        const d = esds(e.subarray(p + 8, Math.min(entrySize, p + size)));
        t.objectType = d.objectType;
        if (d.channels) t.channels = d.channels;
      }
      p += size;
    }
  }
}

async function readTrack(w: Walker, trak: Box): Promise<Track> {
  const t: Track = {};
  const walk = async (from: number, to: number, depth: number): Promise<void> => {
    for await (const box of w.children(from, to)) {
      if (depth < 6 && CONTAINERS.has(box.type)) await walk(box.body, box.end, depth + 1);
      else if (box.type === 'tkhd') {
        const b = await w.body(box, 96);
        const v1 = b[0] === 1;
        const m = v1 ? 52 : 40;
        need(b, m + 44, 'tkhd');
        const a = b.readInt32BE(m);
        const bb = b.readInt32BE(m + 4);
        t.rotated = a === 0 && Math.abs(bb) === 0x10000;
        t.tkhdWidth = b.readUInt32BE(m + 36) / 65536;
        t.tkhdHeight = b.readUInt32BE(m + 40) / 65536;
      } else if (box.type === 'mdhd') {
        const { timescale, duration } = fullBoxTimes(await w.body(box, 32), 'mdhd');
        t.timescale = timescale;
        t.duration = duration;
      } else if (box.type === 'hdlr') {
        // QuickTime also has a data handler (minf/hdlr, 'dhlr'); the media handler (mdia/hdlr) comes first.
        const b = await w.body(box, 12);
        need(b, 12, 'hdlr');
        t.handler ??= ascii(b, 8, 12);
      } else if (box.type === 'stsd') await readStsd(w, box, t);
      else if (box.type === 'stsz' || box.type === 'stz2') {
        const b = await w.body(box, 12);
        need(b, 12, box.type);
        t.samples = b.readUInt32BE(8);
      }
    }
  };
  await walk(trak.body, trak.end, 0);
  return t;
}

export async function readMp4(r: RangeReader): Promise<MediaMetadata> {
  const w = new Walker(r);
  let moov: Box | undefined;
  for await (const box of w.children(0, r.size)) {
    if (box.type === 'moov') {
      moov = box;
      break;
    }
  }
  if (!moov) throw new MetadataError('no moov box');
  let movieScale = 0;
  let movieDuration = 0;
  let fragmentDuration = 0;
  const tracks: Track[] = [];
  for await (const box of w.children(moov.body, moov.end)) {
    if (box.type === 'mvhd') {
      const t = fullBoxTimes(await w.body(box, 32), 'mvhd');
      movieScale = t.timescale;
      movieDuration = t.duration;
    } else if (box.type === 'trak') tracks.push(await readTrack(w, box));
    else if (box.type === 'mvex') {
      for await (const c of w.children(box.body, box.end)) {
        if (c.type !== 'mehd') continue;
        const b = await w.body(c, 12);
        need(b, 8, 'mehd');
        fragmentDuration = b[0] === 1 && b.length >= 12 ? Number(b.readBigUInt64BE(4)) : b.readUInt32BE(4);
      }
    }
  }
  const m: MediaMetadata = {};
  const secs = movieScale > 0 ? (movieDuration || fragmentDuration) / movieScale : 0;
  const trackSecs = (t: Track): number => (t.timescale && t.duration ? t.duration / t.timescale : 0);
  m.durationSec = secs > 0 ? secs : Math.max(0, ...tracks.map(trackSecs));
  const video = tracks.find((t) => t.handler === 'vide' && t.format);
  const audio = tracks.find((t) => t.handler === 'soun' && t.format);
  if (video) {
    m.videoCodec = video.objectType !== undefined && OBJECT_TYPES[video.objectType] ? OBJECT_TYPES[video.objectType] : codecName(video.format!);
    const w0 = video.width || Math.round(video.tkhdWidth ?? 0);
    const h0 = video.height || Math.round(video.tkhdHeight ?? 0);
    [m.width, m.height] = video.rotated ? [h0, w0] : [w0, h0];
    const vs = trackSecs(video);
    if (video.samples && vs > 0) m.frameRate = video.samples / vs;
  }
  if (audio) {
    m.audioCodec = audio.format === 'mp4a' && audio.objectType !== undefined ? (OBJECT_TYPES[audio.objectType] ?? 'mp4a') : codecName(audio.format!);
    m.sampleRate = audio.sampleRate;
    m.channels = audio.channels;
  }
  if (m.durationSec > 0) m.bitrate = Math.round((r.size * 8) / m.durationSec);
  return m;
}
