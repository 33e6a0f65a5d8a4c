/**
 * The metadata fixtures with the values each must give. Checked against
 * ffprobe 5.1 / ImageMagick identify / qpdf (test/fixtures/meta/README.md
 * lists what those tools say where a value is derived differently).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SNIFF_TYPES, type SniffKey } from '../../../src/core/content/sniff.js';
import type { MediaMetadata } from '../../../src/core/metadata/index.js';

export const META_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'meta');

export interface Case {
  file: string;
  type: SniffKey;
  want: MediaMetadata;
}

const mp4: MediaMetadata = {
  width: 96, height: 64, durationSec: 2, videoCodec: 'h264', audioCodec: 'aac', frameRate: 25, sampleRate: 44100, channels: 2, bitrate: 53928,
};

export const CASES: Case[] = [
  { file: 'h264-faststart.mp4', type: 'mp4', want: mp4 },
  { file: 'h264-moov-end.mp4', type: 'mp4', want: mp4 },
  { file: 'h264-rotate90.mp4', type: 'mp4', want: { width: 64, height: 96, durationSec: 2, videoCodec: 'h264', frameRate: 25, bitrate: 15584 } },
  {
    file: 'sample.mov',
    type: 'mov',
    want: { width: 96, height: 64, durationSec: 2, videoCodec: 'h264', audioCodec: 'pcm_s16le', frameRate: 25, sampleRate: 8000, channels: 1, bitrate: 149136 },
  },
  {
    file: 'vp9-opus.webm',
    type: 'webm',
    want: { width: 96, height: 64, durationSec: 2.008, videoCodec: 'vp9', audioCodec: 'opus', frameRate: 25, sampleRate: 48000, channels: 1, bitrate: 71187 },
  },
  {
    file: 'vp8-vorbis.webm',
    type: 'webm',
    want: { width: 96, height: 64, durationSec: 2.003, videoCodec: 'vp8', audioCodec: 'vorbis', frameRate: 25, sampleRate: 44100, channels: 1, bitrate: 80779 },
  },
  {
    file: 'sample.avi',
    type: 'avi',
    want: { width: 96, height: 64, durationSec: 2.04, videoCodec: 'mpeg4', audioCodec: 'mp3', frameRate: 25, sampleRate: 44100, channels: 1, bitrate: 105827 },
  },
  {
    file: 'theora.ogv',
    type: 'ogv',
    want: { width: 96, height: 64, durationSec: 2, videoCodec: 'theora', audioCodec: 'vorbis', frameRate: 25, sampleRate: 44100, channels: 1, bitrate: 63228 },
  },
  {
    file: 'sample.mpeg',
    type: 'mpeg',
    want: { width: 96, height: 64, durationSec: 1.816, videoCodec: 'mpeg2video', audioCodec: 'mp2', frameRate: 25, sampleRate: 44100, channels: 1, bitrate: 108244 },
  },
  { file: 'tone.mp3', type: 'mp3', want: { durationSec: 3.03, audioCodec: 'mp3', sampleRate: 44100, channels: 1, bitrate: 32000 } },
  { file: 'tone.opus', type: 'opus', want: { durationSec: 3, audioCodec: 'opus', sampleRate: 48000, channels: 2, bitrate: 11987 } },
  { file: 'tone.ogg', type: 'ogg', want: { durationSec: 3, audioCodec: 'vorbis', sampleRate: 44100, channels: 2, bitrate: 64000 } },
  { file: 'tone.flac', type: 'flac', want: { durationSec: 3, audioCodec: 'flac', sampleRate: 8000, channels: 1, bitrate: 30563 } },
  { file: 'tone.wav', type: 'wav', want: { durationSec: 1.5, audioCodec: 'pcm_s16le', sampleRate: 8000, channels: 2, bitrate: 256000 } },
  { file: 'tone.m4a', type: 'm4a', want: { durationSec: 3, audioCodec: 'aac', sampleRate: 22050, channels: 1, bitrate: 27595 } },
  { file: 'pages3.pdf', type: 'pdf', want: { pageCount: 3, encrypted: false } },
  { file: 'pages3-objstm.pdf', type: 'pdf', want: { pageCount: 3, encrypted: false } },
  { file: 'pages3-encrypted.pdf', type: 'pdf', want: { pageCount: 3, encrypted: true } },
  { file: 'rot6.jpg', type: 'jpg', want: { width: 32, height: 64, orientation: 6 } },
  { file: 'anim.gif', type: 'gif', want: { width: 32, height: 24, frameCount: 4 } },
  { file: 'anim.webp', type: 'webp', want: { width: 32, height: 24, frameCount: 4 } },
  { file: 'anim.png', type: 'png', want: { width: 32, height: 24, frameCount: 4 } },
];

export const sniffedOf = (c: Case) => SNIFF_TYPES[c.type];
export const pathOf = (c: Case): string => path.join(META_DIR, c.file);
