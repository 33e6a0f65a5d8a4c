/**
 * Matroska / WebM: an EBML walker over the Segment's top-level elements.
 * Info (timecode scale, duration) and Tracks (codec ids, sizes, audio
 * format, default frame duration) are read; Clusters are skipped by their
 * sizes. A Segment or Cluster of unknown size (a live stream) cannot be
 * skipped: the walk stops there with what it has.
 */
import { codecName, MetadataError, type MediaMetadata } from './types.js';
import type { RangeReader } from './reader.js';

const ID = {
  EBML: 0x1a45dfa3,
  Segment: 0x18538067,
  Info: 0x1549a966,
  TimecodeScale: 0x2ad7b1,
  Duration: 0x4489,
  Tracks: 0x1654ae6b,
  TrackEntry: 0xae,
  TrackType: 0x83,
  CodecID: 0x86,
  DefaultDuration: 0x23e383,
  Video: 0xe0,
  PixelWidth: 0xb0,
  PixelHeight: 0xba,
  DisplayWidth: 0x54b0,
  DisplayHeight: 0x54ba,
  DisplayUnit: 0x54b2,
  Audio: 0xe1,
  SamplingFrequency: 0xb5,
  Channels: 0x9f,
  Cluster: 0x1f43b675,
};

const MAX_ELEMENTS = 20_000;
/** Info and Tracks are a few KiB; anything larger is not worth reading whole. */
const MAX_MASTER = 1024 * 1024;

interface El {
  id: number;
  /** Payload start; size -1 = unknown. */
  body: number;
  size: number;
}

/** A vint at b[p]: its length and value (value with the marker bit removed when `strip`). */
function vint(b: Buffer, p: number, strip: boolean): { len: number; value: number; unknown: boolean } | undefined {
  if (p >= b.length) return undefined;
  const first = b[p];
  if (first === 0) return undefined;
  const len = Math.clz32(first) - 23;
  if (p + len > b.length || len > 8) return undefined;
  let value = strip ? first & (0xff >> len) : first;
  let allOnes = value === 0xff >> len;
  for (let i = 1; i < len; i++) {
    value = value * 256 + b[p + i];
    if (b[p + i] !== 0xff) allOnes = false;
  }
  return { len, value, unknown: strip && allOnes };
}

function header(b: Buffer, p: number): { el: Omit<El, 'body'>; len: number } | undefined {
  const id = vint(b, p, false);
  if (!id) return undefined;
  const size = vint(b, p + id.len, true);
  if (!size) return undefined;
  return { el: { id: id.value, size: size.unknown ? -1 : size.value }, len: id.len + size.len };
}

/** Children of a master element held in memory. */
function* inMemory(b: Buffer, counter: { n: number }): Generator<{ id: number; data: Buffer }> {
  let p = 0;
  while (p < b.length) {
    if (++counter.n > MAX_ELEMENTS) throw new MetadataError('too many elements');
    const h = header(b, p);
    if (!h || h.el.size < 0) return;
    const start = p + h.len;
    yield { id: h.el.id, data: b.subarray(start, Math.min(b.length, start + h.el.size)) };
    p = start + h.el.size;
  }
}

const uint = (d: Buffer): number => {
  let v = 0;
  for (let i = 0; i < d.length && i < 7; i++) v = v * 256 + d[i];
  return v;
};
const float = (d: Buffer): number => (d.length === 4 ? d.readFloatBE(0) : d.length === 8 ? d.readDoubleBE(0) : NaN);
const str = (d: Buffer): string => d.toString('latin1').replace(/\0+$/, '');

interface Track {
  type?: number;
  codec?: string;
  defaultDuration?: number;
  width?: number;
  height?: number;
  sampleRate?: number;
  channels?: number;
}

function readTracks(b: Buffer, counter: { n: number }): Track[] {
  const out: Track[] = [];
  for (const e of inMemory(b, counter)) {
    if (e.id !== ID.TrackEntry) continue;
    const t: Track = {};
    let dispW: number | undefined;
    let dispH: number | undefined;
    let unit = 0;
    for (const f of inMemory(e.data, counter)) {
      if (f.id === ID.TrackType) t.type = uint(f.data);
      else if (f.id === ID.CodecID) t.codec = str(f.data);
      else if (f.id === ID.DefaultDuration) t.defaultDuration = uint(f.data);
      else if (f.id === ID.Video) {
        for (const v of inMemory(f.data, counter)) {
          if (v.id === ID.PixelWidth) t.width = uint(v.data);
          else if (v.id === ID.PixelHeight) t.height = uint(v.data);
          else if (v.id === ID.DisplayWidth) dispW = uint(v.data);
          else if (v.id === ID.DisplayHeight) dispH = uint(v.data);
          else if (v.id === ID.DisplayUnit) unit = uint(v.data);
        }
      } else if (f.id === ID.Audio) {
        for (const a of inMemory(f.data, counter)) {
          if (a.id === ID.SamplingFrequency) t.sampleRate = Math.round(float(a.data));
          else if (a.id === ID.Channels) t.channels = uint(a.data);
        }
      }
    }
    // Display size in pixels (unit 0) is the picture as shown.
    if (unit === 0 && dispW && dispH) [t.width, t.height] = [dispW, dispH];
    out.push(t);
  }
  return out;
}

export async function readMatroska(r: RangeReader): Promise<MediaMetadata> {
  const counter = { n: 0 };
  const top = await r.read(0, 64);
  const h0 = header(top, 0);
  if (!h0 || h0.el.id !== ID.EBML || h0.el.size < 0) throw new MetadataError('no EBML header');
  let pos = h0.len + h0.el.size;
  const sh = header(await r.read(pos, 16), 0);
  if (!sh || sh.el.id !== ID.Segment) throw new MetadataError('no Segment');
  pos += sh.len;
  const segEnd = sh.el.size < 0 ? r.size : Math.min(r.size, pos + sh.el.size);
  let scale = 1_000_000;
  let duration: number | undefined;
  let tracks: Track[] | undefined;
  while (pos < segEnd && (duration === undefined || !tracks)) {
    if (++counter.n > MAX_ELEMENTS) throw new MetadataError('too many elements');
    const h = header(await r.read(pos, 16), 0);
    if (!h) break;
    const body = pos + h.len;
    if (h.el.size < 0) break; // unknown size (live): cannot skip past it
    if (h.el.id === ID.Info || h.el.id === ID.Tracks) {
      if (h.el.size > MAX_MASTER) throw new MetadataError('oversized Info/Tracks element');
      const data = Buffer.from(await r.read(body, h.el.size));
      if (h.el.id === ID.Info) {
        for (const e of inMemory(data, counter)) {
          if (e.id === ID.TimecodeScale) scale = uint(e.data) || scale;
          else if (e.id === ID.Duration) duration = float(e.data);
        }
      } else tracks = readTracks(data, counter);
    }
    pos = body + h.el.size;
  }
  if (!tracks && duration === undefined) throw new MetadataError('no Info or Tracks before the data');
  const m: MediaMetadata = {};
  if (duration !== undefined && duration > 0) m.durationSec = (duration * scale) / 1e9;
  const video = tracks?.find((t) => t.type === 1);
  const audio = tracks?.find((t) => t.type === 2);
  if (video) {
    if (video.codec) m.videoCodec = codecName(video.codec);
    m.width = video.width;
    m.height = video.height;
    if (video.defaultDuration) m.frameRate = 1e9 / video.defaultDuration;
  }
  if (audio) {
    if (audio.codec) m.audioCodec = codecName(audio.codec);
    m.sampleRate = audio.sampleRate;
    m.channels = audio.channels;
  }
  if (m.durationSec) m.bitrate = Math.round((r.size * 8) / m.durationSec);
  return m;
}
