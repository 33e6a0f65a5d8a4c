/**
 * extractMetadata: media metadata from a stored file's bytes, in-process, no
 * external programs. Each container has its own small reader (box, EBML,
 * RIFF, Ogg page, PDF xref walkers, image segment walkers) working through
 * a RangeReader's bounded reads; audio files go to music-metadata in a
 * killable worker thread (audio.ts).
 *
 * Contract: never throws, never hangs past `timeoutMs` (plus one read),
 * never reads a whole large file: the answer is clean metadata or the
 * reason there is none.
 */
import type { Sniffed } from '../content/sniff.js';
import { readAudio } from './audio.js';
import { readAvi } from './avi.js';
import { readMatroska } from './ebml.js';
import { GIF_SCAN_BYTES, readImage } from './image.js';
import { readMp4 } from './mp4.js';
import { readMpegPs } from './mpeg-ps.js';
import { readOggVideo } from './ogg.js';
import { readPdf } from './pdf.js';
import { RangeReader } from './reader.js';
import { cleanMetadata, MetadataError, type MediaMetadata } from './types.js';

export { cleanMetadata, isCleanMetadata, METADATA_FIELDS, MetadataError, type MediaMetadata } from './types.js';

/**
 * Bump when the extractors learn to read more, so a sweep reads records
 * that an older version already looked at (the record's `metadataVersion`).
 */
export const METADATA_VERSION = 1;

export interface ExtractOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Told why a PDF's xref could not be used (the bounded scan answered instead). */
  onNote?: (note: string) => void;
  /**
   * The file's leading bytes and its size, when the caller has them (a download
   * does): reads inside the head cost no I/O, so most images need none at all.
   */
  head?: { bytes: Buffer; size: number };
}

export interface ExtractResult {
  metadata?: MediaMetadata;
  error?: string;
  /** True when the failure may pass on a retry (time limit, abort, an I/O error): the record is not marked as read. */
  transient?: boolean;
}

type Kind = 'mp4' | 'mkv' | 'avi' | 'ogv' | 'mpeg' | 'audio' | 'pdf' | 'image';

function kindOf(s: Pick<Sniffed, 'mediaType' | 'mimeType' | 'extension'>): Kind | undefined {
  switch (s.extension) {
    case '.mp4':
    case '.mov':
    case '.m4a':
      return 'mp4';
    case '.webm':
    case '.mkv':
      return 'mkv';
    case '.avi':
      return 'avi';
    case '.ogv':
      return 'ogv';
    case '.mpeg':
      return 'mpeg';
    case '.mp3':
    case '.ogg':
    case '.oga':
    case '.opus':
    case '.wav':
    case '.flac':
      return 'audio';
    case '.pdf':
      return 'pdf';
  }
  return s.mediaType === 'image' ? 'image' : undefined;
}

export async function extractMetadata(
  filePath: string,
  sniffed: Pick<Sniffed, 'mediaType' | 'mimeType' | 'extension'>,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const kind = kindOf(sniffed);
  if (!kind) return { metadata: {} };
  try {
    if (kind === 'audio') {
      // A head holding the whole file (a small download kept in memory): no file may exist yet.
      const whole = opts.head && opts.head.bytes.length >= opts.head.size ? opts.head.bytes.subarray(0, opts.head.size) : undefined;
      return { metadata: cleanMetadata(await readAudio(filePath, sniffed.mimeType, timeoutMs, opts.signal, whole)) };
    }
    const limits = {
      deadline: Date.now() + timeoutMs,
      signal: opts.signal,
      maxBytes: sniffed.extension === '.gif' ? GIF_SCAN_BYTES : 16 * 1024 * 1024,
      maxReads: sniffed.extension === '.gif' ? GIF_SCAN_BYTES / 1024 : 4096,
    };
    const r = opts.head
      ? RangeReader.withHead(filePath, opts.head.size, opts.head.bytes, limits)
      : await RangeReader.open(filePath, limits);
    try {
      return { metadata: cleanMetadata(await read(r, kind, sniffed.extension, opts)) };
    } finally {
      await r.close();
    }
  } catch (e) {
    const err = e as Error;
    const message = `${sniffed.extension.slice(1)}: ${err?.message ?? String(e)}`;
    const transient = !(e instanceof MetadataError) || /time limit|aborted/.test(err.message);
    // A parser tripping over bytes it did not expect (RangeError, TypeError) is a damaged file, not a transient failure.
    return { error: message, transient: transient && !(e instanceof RangeError || e instanceof TypeError) };
  }
}

function read(r: RangeReader, kind: Exclude<Kind, 'audio'>, ext: string, opts: ExtractOptions): Promise<MediaMetadata> {
  switch (kind) {
    case 'mp4':
      return readMp4(r);
    case 'mkv':
      return readMatroska(r);
    case 'avi':
      return readAvi(r);
    case 'ogv':
      return readOggVideo(r);
    case 'mpeg':
      return readMpegPs(r);
    case 'pdf':
      return readPdf(r, opts.onNote && ((why) => opts.onNote!(`pdf xref unusable (${why}); scanned instead`)));
    case 'image':
      return readImage(r, ext);
  }
}
