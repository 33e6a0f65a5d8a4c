/** Shapes shared by the library, the daemon and the client (SPEC, The record). */

export type MediaType = 'image' | 'video' | 'audio' | 'document';
export const MEDIA_TYPES: readonly MediaType[] = ['image', 'video', 'audio', 'document'];

/** Folder of each media type under the cache root. */
export const TYPE_DIRS: Readonly<Record<MediaType, string>> = {
  image: 'images',
  video: 'videos',
  audio: 'audio',
  document: 'documents',
};

/** What the index keeps per distinct content (keyed by md5). */
export interface StoredRecord {
  md5: string;
  sha256: string;
  fileSize: number;
  mimeType: string;
  mediaType: MediaType;
  /** With the dot, as in the seed: ".jpg". */
  extension: string;
  /** Pixels as displayed: an EXIF orientation of 5-8 or a video turned 90/270 degrees swaps the stored dimensions. */
  width?: number;
  height?: number;
  /** Every URL that produced this content, first one first. */
  urls: string[];
  fetchedAt: string;
  verifiedAt: string;
  /** Origin validators of the last fetch, kept for later revalidation. */
  etag?: string;
  lastModified?: string;
  // ---- media metadata read from the bytes (src/core/metadata); absent = unknown ----
  /** Video/audio length in seconds (millisecond precision). */
  durationSec?: number;
  /** ffprobe-style codec names: "h264", "hevc", "vp9", "av1", "theora", "mpeg4"… */
  videoCodec?: string;
  /** "aac", "mp3", "opus", "vorbis", "flac", "pcm_s16le"… */
  audioCodec?: string;
  /** Video frames per second as the container states it (or frames / duration). */
  frameRate?: number;
  /** Audio samples per second. */
  sampleRate?: number;
  /** Audio channels. */
  channels?: number;
  /** Average bits per second (as the stream states it, else file size x 8 / duration). */
  bitrate?: number;
  /** PDF page count. */
  pageCount?: number;
  /** PDF with an /Encrypt dictionary (a password or permission restrictions). */
  encrypted?: boolean;
  /** EXIF orientation 1-8 (1 = as stored; 5-8 = turned a quarter, width/height already swapped). */
  orientation?: number;
  /** Animation frames of a GIF, WebP or APNG (1 = a still image). */
  frameCount?: number;
  /** Version of the metadata reader that looked at this file; absent = not yet (a sweep reads it). */
  metadataVersion?: number;
}

/** The record returned by the library, the RPC and `--json` (SPEC). */
export interface MediaRecord extends StoredRecord {
  localPath: string;
  /** The URL of this request (the first known URL when there is none). */
  url: string;
}

export interface TypeStats {
  count: number;
  size: number;
}

export interface CacheStats {
  totalFiles: number;
  totalSize: number;
  byType: Record<MediaType, TypeStats>;
}

export function emptyStats(): CacheStats {
  return {
    totalFiles: 0,
    totalSize: 0,
    byType: {
      image: { count: 0, size: 0 },
      video: { count: 0, size: 0 },
      audio: { count: 0, size: 0 },
      document: { count: 0, size: 0 },
    },
  };
}
