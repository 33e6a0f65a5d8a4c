/** mcctl find's human output shows the metadata a record has, and nothing for what it lacks. */
import t from 'tap';
import { renderRecord } from '../../../src/client/render.js';
import type { MediaRecord } from '../../../src/core/types.js';

const base: MediaRecord = {
  md5: 'a'.repeat(32),
  sha256: 'b'.repeat(64),
  localPath: '/c/videos/x.mp4',
  fileSize: 1000,
  mimeType: 'video/mp4',
  mediaType: 'video',
  extension: '.mp4',
  url: 'http://127.0.0.1/x.mp4',
  urls: ['http://127.0.0.1/x.mp4'],
  fetchedAt: '2026-01-01T00:00:00.000Z',
  verifiedAt: '2026-01-01T00:00:00.000Z',
};

t.test('video, PDF and image metadata lines', async (t) => {
  const v = renderRecord({ ...base, width: 96, height: 64, durationSec: 2.5, videoCodec: 'h264', audioCodec: 'aac', frameRate: 25, sampleRate: 44100, channels: 2, bitrate: 53928 });
  t.match(v, /duration\s+2\.5 s\n/);
  t.match(v, /codecs\s+h264 \+ aac\n/);
  t.match(v, /frame rate\s+25 fps\n/);
  t.match(v, /audio\s+44100 Hz, 2 ch\n/);
  t.match(v, /bitrate\s+54 kb\/s\n/);
  t.match(renderRecord({ ...base, pageCount: 3, encrypted: true }), /pages\s+3 \(encrypted\)\n/);
  const img = renderRecord({ ...base, width: 32, height: 64, orientation: 6, frameCount: 4 });
  t.match(img, /orientation\s+EXIF 6\n/);
  t.match(img, /frames\s+4\n/);
  t.notMatch(renderRecord(base), /duration|codecs|pages|orientation|frames|bitrate/, 'nothing when unknown');
});
