/**
 * AVI (RIFF 'AVI '): the `hdrl` list holds everything: the main header
 * (frame period, size) and per stream a header (kind, rate, length) and a
 * format (BITMAPINFOHEADER or WAVEFORMATEX). Only `hdrl` is read; the
 * `movi` data after it never is.
 */
import { codecName, MetadataError, type MediaMetadata } from './types.js';
import { ascii, type RangeReader } from './reader.js';

const MAX_HDRL = 1024 * 1024;

const WAVE_FORMATS: Record<number, string> = { 0x1: 'pcm', 0x3: 'pcm_f32le', 0x6: 'pcm_alaw', 0x7: 'pcm_mulaw', 0x50: 'mp2', 0x55: 'mp3', 0xff: 'aac', 0x2000: 'ac3', 0x2001: 'dts', 0x161: 'wmav2', 0xf1ac: 'flac' };

interface Chunk {
  id: string;
  /** LIST type for lists. */
  list?: string;
  data: Buffer;
}

function* chunks(b: Buffer, budget: { n: number }): Generator<Chunk> {
  let p = 0;
  while (p + 8 <= b.length) {
    if (++budget.n > 10_000) throw new MetadataError('too many chunks');
    const id = ascii(b, p, p + 4);
    const size = b.readUInt32LE(p + 4);
    const data = b.subarray(p + 8, Math.min(b.length, p + 8 + size));
    if (id === 'LIST' && data.length >= 4) yield { id, list: ascii(data, 0, 4), data: data.subarray(4) };
    else yield { id, data };
    p += 8 + size + (size & 1);
  }
}

export async function readAvi(r: RangeReader): Promise<MediaMetadata> {
  const head = await r.readExact(0, 24);
  if (ascii(head, 0, 4) !== 'RIFF' || ascii(head, 12, 16) !== 'LIST' || ascii(head, 20, 24) !== 'hdrl') {
    throw new MetadataError('no hdrl list at the start');
  }
  const size = head.readUInt32LE(16);
  if (size > MAX_HDRL) throw new MetadataError('oversized hdrl');
  const hdrl = Buffer.from(await r.read(24, size - 4));
  const budget = { n: 0 };
  const m: MediaMetadata = {};
  let usPerFrame = 0;
  let totalFrames = 0;
  for (const c of chunks(hdrl, budget)) {
    if (c.id === 'avih' && c.data.length >= 40) {
      usPerFrame = c.data.readUInt32LE(0);
      totalFrames = c.data.readUInt32LE(16);
      m.width = c.data.readUInt32LE(32);
      m.height = c.data.readUInt32LE(36);
    } else if (c.list === 'strl') {
      let kind = '';
      let scale = 0;
      let rate = 0;
      let length = 0;
      for (const s of chunks(c.data, budget)) {
        if (s.id === 'strh' && s.data.length >= 36) {
          kind = ascii(s.data, 0, 4);
          scale = s.data.readUInt32LE(20);
          rate = s.data.readUInt32LE(24);
          length = s.data.readUInt32LE(32);
        } else if (s.id === 'strf' && kind === 'vids' && s.data.length >= 20 && !m.videoCodec) {
          m.videoCodec = codecName(ascii(s.data, 16, 20));
          if (scale > 0 && rate > 0) {
            m.frameRate = rate / scale;
            if (length > 0) m.durationSec = (length * scale) / rate;
          }
        } else if (s.id === 'strf' && kind === 'auds' && s.data.length >= 16 && !m.audioCodec) {
          const tag = s.data.readUInt16LE(0);
          const bits = s.data.length >= 16 ? s.data.readUInt16LE(14) : 0;
          const name = WAVE_FORMATS[tag] ?? `0x${tag.toString(16)}`;
          m.audioCodec = name === 'pcm' ? (bits === 8 ? 'pcm_u8' : `pcm_s${bits}le`) : name;
          m.channels = s.data.readUInt16LE(2);
          m.sampleRate = s.data.readUInt32LE(4);
        }
      }
    }
  }
  if (m.durationSec === undefined && usPerFrame > 0 && totalFrames > 0) m.durationSec = (totalFrames * usPerFrame) / 1e6;
  if (m.frameRate === undefined && usPerFrame > 0) m.frameRate = 1e6 / usPerFrame;
  if (m.durationSec) m.bitrate = Math.round((r.size * 8) / m.durationSec);
  return m;
}
