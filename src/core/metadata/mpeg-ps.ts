/**
 * MPEG program streams (.mpg/.mpeg, MPEG-1/2 video): the sequence header
 * gives size and frame rate, a sequence extension marks MPEG-2, the first
 * audio packet's frame header gives the audio format; the duration is the
 * span between the smallest presentation time stamp of the audio and video
 * packets in the head and the largest in the tail (plus one video frame).
 */
import { MetadataError, type MediaMetadata } from './types.js';
import type { RangeReader } from './reader.js';

const SCAN_BYTES = 256 * 1024;
const START = Buffer.from([0, 0, 1]);
const FRAME_RATES = [0, 24000 / 1001, 24, 25, 30000 / 1001, 30, 50, 60000 / 1001, 60];
const AUDIO_RATES = [
  [44100, 48000, 32000],
  [22050, 24000, 16000],
  [11025, 12000, 8000],
];

/** PTS of the PES packet whose start code is at `p`, if it has one. */
function pesPts(b: Buffer, p: number): number | undefined {
  let q = p + 6;
  if (q + 5 > b.length) return undefined;
  if ((b[q] & 0xc0) === 0x80) {
    // MPEG-2 PES header
    if (q + 8 > b.length || (b[q + 1] & 0x80) === 0) return undefined;
    q += 3;
  } else {
    // MPEG-1: stuffing, optional STD buffer size, then the time stamps
    for (let i = 0; i < 16 && b[q] === 0xff; i++) q++;
    if ((b[q] & 0xc0) === 0x40) q += 2;
    if (q >= b.length || (b[q] & 0xe0) !== 0x20) return undefined;
  }
  if (q + 5 > b.length) return undefined;
  return ((b[q] >> 1) & 7) * 2 ** 30 + b[q + 1] * 2 ** 22 + (b[q + 2] >> 1) * 2 ** 15 + b[q + 3] * 2 ** 7 + (b[q + 4] >> 1);
}

/** Start of the payload of the PES packet at `p`. */
function pesPayload(b: Buffer, p: number): number {
  let q = p + 6;
  if ((b[q] & 0xc0) === 0x80) return q + 3 + b[q + 2];
  for (let i = 0; i < 16 && b[q] === 0xff; i++) q++;
  if ((b[q] & 0xc0) === 0x40) q += 2;
  if ((b[q] & 0xf0) === 0x20) return q + 5;
  if ((b[q] & 0xf0) === 0x30) return q + 10;
  return q + 1;
}

interface Scan {
  firstPts?: number;
  lastPts?: number;
}

/** Time stamps of audio and video packets (not every video packet carries one, so audio widens the span). */
function scanPts(b: Buffer, out: Scan): void {
  for (let p = b.indexOf(START), n = 0; p >= 0 && p + 4 < b.length && n < 100_000; n++) {
    const sid = b[p + 3];
    if ((sid >= 0xe0 && sid <= 0xef) || (sid >= 0xc0 && sid <= 0xdf)) {
      const pts = pesPts(b, p);
      if (pts !== undefined) {
        // Decode order is not display order: keep the extremes.
        out.firstPts = Math.min(out.firstPts ?? pts, pts);
        out.lastPts = Math.max(out.lastPts ?? pts, pts);
      }
    }
    p = b.indexOf(START, p + 3);
  }
}

export async function readMpegPs(r: RangeReader): Promise<MediaMetadata> {
  const head = Buffer.from(await r.read(0, SCAN_BYTES));
  const m: MediaMetadata = {};
  let mpeg2 = false;
  let sawSequence = false;
  for (let p = head.indexOf(START), n = 0; p >= 0 && p + 12 < head.length && n < 100_000; n++) {
    const code = head[p + 3];
    if (code === 0xb3 && !sawSequence) {
      sawSequence = true;
      m.width = (head[p + 4] << 4) | (head[p + 5] >> 4);
      m.height = ((head[p + 5] & 0x0f) << 8) | head[p + 6];
      m.frameRate = FRAME_RATES[head[p + 7] & 0x0f] || undefined;
    } else if (code === 0xb5 && head[p + 4] >> 4 === 1) mpeg2 = true;
    else if (code >= 0xc0 && code <= 0xdf && !m.audioCodec) {
      const q = pesPayload(head, p);
      // Find the first MPEG audio frame header in the payload.
      for (let i = q; i + 4 <= Math.min(head.length, q + 2048); i++) {
        if (head[i] !== 0xff || (head[i + 1] & 0xe0) !== 0xe0) continue;
        const version = (head[i + 1] >> 3) & 3; // 3 = MPEG-1, 2 = MPEG-2, 0 = 2.5
        const layer = (head[i + 1] >> 1) & 3; // 3 = I, 2 = II, 1 = III
        const rateIdx = (head[i + 2] >> 2) & 3;
        if (version === 1 || layer === 0 || rateIdx === 3) continue;
        m.audioCodec = layer === 1 ? 'mp3' : layer === 2 ? 'mp2' : 'mp1';
        m.sampleRate = AUDIO_RATES[version === 3 ? 0 : version === 2 ? 1 : 2][rateIdx];
        m.channels = head[i + 3] >> 6 === 3 ? 1 : 2;
        break;
      }
    } else if (code === 0xbd && !m.audioCodec) {
      const q = pesPayload(head, p);
      if (q < head.length && head[q] >= 0x80 && head[q] <= 0x87) m.audioCodec = 'ac3';
    }
    p = head.indexOf(START, p + 3);
  }
  if (!sawSequence) throw new MetadataError('no MPEG video sequence header in the head');
  m.videoCodec = mpeg2 ? 'mpeg2video' : 'mpeg1video';
  const first: Scan = {};
  scanPts(head, first);
  const last: Scan = {};
  scanPts(Buffer.from(await r.read(Math.max(0, r.size - SCAN_BYTES), SCAN_BYTES)), last);
  if (first.firstPts !== undefined && last.lastPts !== undefined && last.lastPts > first.firstPts) {
    m.durationSec = (last.lastPts - first.firstPts) / 90000 + (m.frameRate ? 1 / m.frameRate : 0);
  }
  if (m.durationSec) m.bitrate = Math.round((r.size * 8) / m.durationSec);
  return m;
}
