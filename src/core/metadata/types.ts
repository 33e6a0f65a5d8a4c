/**
 * What the metadata extractors answer, and the one check every answer passes
 * before it reaches a record: whatever a hostile file makes a parser say, a
 * record only ever carries sane, finite, bounded values of the right type.
 */
import type { StoredRecord } from '../types.js';

/** Media metadata read from a file's bytes: the record fields of that name (types.ts documents each). */
export type MediaMetadata = Partial<Pick<StoredRecord, (typeof METADATA_FIELDS)[number]>>;

/** Record field names a MediaMetadata may set (width/height replace the download's). */
export const METADATA_FIELDS = [
  'width',
  'height',
  'durationSec',
  'videoCodec',
  'audioCodec',
  'frameRate',
  'sampleRate',
  'channels',
  'bitrate',
  'pageCount',
  'encrypted',
  'orientation',
  'frameCount',
] as const satisfies readonly (keyof StoredRecord)[];

type Rule = (v: unknown) => unknown;
const int = (min: number, max: number): Rule => (v) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : undefined);
const real = (min: number, max: number, digits: number): Rule => (v) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) return undefined;
  const f = 10 ** digits;
  const r = Math.round(v * f) / f;
  return r >= min ? r : undefined;
};
const CODEC = /^[A-Za-z0-9][A-Za-z0-9 ._/+-]{0,31}$/;
const codec: Rule = (v) => (typeof v === 'string' && CODEC.test(v.trim()) ? v.trim() : undefined);
const bool: Rule = (v) => (typeof v === 'boolean' ? v : undefined);

/** Bounds: generous for real media, tight enough that garbage shows. */
const RULES: Record<(typeof METADATA_FIELDS)[number], Rule> = {
  width: int(1, 1_000_000),
  height: int(1, 1_000_000),
  durationSec: real(0.001, 1e7, 3),
  videoCodec: codec,
  audioCodec: codec,
  frameRate: real(0.001, 100_000, 3),
  sampleRate: int(1, 10_000_000),
  channels: int(1, 255),
  bitrate: int(1, 1e11),
  pageCount: int(1, 10_000_000),
  encrypted: bool,
  orientation: int(1, 8),
  frameCount: int(1, 100_000_000),
};

/** Only the valid fields of `m`, rounded (3 decimals for seconds and frame rates); never throws. */
export function cleanMetadata(m: unknown): MediaMetadata {
  const out: Record<string, unknown> = {};
  if (typeof m !== 'object' || m === null) return out;
  for (const k of METADATA_FIELDS) {
    const v = RULES[k]((m as Record<string, unknown>)[k]);
    if (v !== undefined) out[k] = v;
  }
  return out as MediaMetadata;
}

/** True when every field of `m` is already a clean value (the index's check of a stored row). */
export function isCleanMetadata(m: unknown): m is MediaMetadata {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return false;
  const o = m as Record<string, unknown>;
  const clean = cleanMetadata(o) as Record<string, unknown>;
  for (const k of Object.keys(o)) if (clean[k] !== o[k]) return false;
  return true;
}

/** A parser's complaint about its input (the file is damaged or not what it says). */
export class MetadataError extends Error {}

/** The codec names of common four-character codes and container ids, ffprobe's vocabulary. */
const CODEC_NAMES: Record<string, string> = {
  avc1: 'h264', avc3: 'h264', h264: 'h264', x264: 'h264', 'v_mpeg4/iso/avc': 'h264',
  hvc1: 'hevc', hev1: 'hevc', hevc: 'hevc', h265: 'hevc', 'v_mpegh/iso/hevc': 'hevc',
  av01: 'av1', v_av1: 'av1', vp08: 'vp8', v_vp8: 'vp8', vp09: 'vp9', v_vp9: 'vp9',
  mp4v: 'mpeg4', fmp4: 'mpeg4', xvid: 'mpeg4', divx: 'mpeg4', dx50: 'mpeg4', 'v_mpeg4/iso/asp': 'mpeg4',
  mjpg: 'mjpeg', jpeg: 'mjpeg', 'v_mjpeg': 'mjpeg', v_theora: 'theora', theora: 'theora',
  apch: 'prores', apcn: 'prores', apcs: 'prores', apco: 'prores', ap4h: 'prores',
  mp4a: 'aac', a_aac: 'aac', 'a_aac/mpeg4/lc': 'aac', 'a_aac/mpeg2/lc': 'aac',
  'a_mpeg/l3': 'mp3', '.mp3': 'mp3', 'a_mpeg/l2': 'mp2', opus: 'opus', a_opus: 'opus',
  a_vorbis: 'vorbis', vorbis: 'vorbis', flac: 'flac', a_flac: 'flac', alac: 'alac', a_alac: 'alac',
  sowt: 'pcm_s16le', twos: 'pcm_s16be', in24: 'pcm_s24be', in32: 'pcm_s32be', fl32: 'pcm_f32be', ulaw: 'pcm_mulaw', alaw: 'pcm_alaw', ima4: 'adpcm_ima_qt',
  'ac-3': 'ac3', a_ac3: 'ac3', 'ec-3': 'eac3', a_eac3: 'eac3', a_dts: 'dts', samr: 'amr_nb',
};

/** ffprobe's name for a four-character code or Matroska CodecID, else the id itself (trimmed, lowercased). */
export function codecName(id: string): string {
  const k = id.replace(/\0/g, '').trim().toLowerCase();
  return CODEC_NAMES[k] ?? k;
}
