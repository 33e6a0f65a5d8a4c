/** Shapes shared by the library, the daemon and the client. */

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
  /** Last time this content was added, found, verified or hit by an `add` (ISO; coalesced, see quota.ts). */
  lastUsedAt?: string;
  /** Never evicted by the quota. */
  pinned?: boolean;
  /** Set while the content is evicted: its file is gone, URLs and metadata stay; a later add downloads it again. */
  evictedAt?: string;
  /**
   * The file's state is being changed (evicting, or restoring an evicted
   * record): at open, the record becomes present when its file is there
   * with its size, else evicted. Never set for long.
   */
  evicting?: boolean;
  /** When evicted content was last downloaded again. */
  restoredAt?: string;
  /** Last time the origin confirmed the content (304, or 200 with the same bytes). */
  revalidatedAt?: string;
  /** URLs whose origin started serving other content (newest last, at most a few). */
  upstreamChanges?: UpstreamChange[];
}

/** One "changed upstream" event: `url` served `from`, now serves `to`. */
export interface UpstreamChange {
  url: string;
  from: string;
  to: string;
  at: string;
}

/** The record returned by the library, the RPC and `--json`. */
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
  /** Files on disk (evicted records not counted). */
  totalFiles: number;
  totalSize: number;
  byType: Record<MediaType, TypeStats>;
  /** Pinned files (count, bytes), part of the totals. */
  pinned?: TypeStats;
  /** Evicted records: their files are gone, the records stay. */
  evicted?: TypeStats;
  /** The size quota, when one is set (see quota.ts). */
  quota?: QuotaStatus;
}

/** What the quota is and whether it is met. */
export interface QuotaStatus {
  /** --max-size in bytes (0 = none). */
  maxSize: number;
  /** --min-free in bytes (0 = none). */
  minFree: number;
  /** Eviction stops once used is at or below this. */
  lowWater: number;
  used: number;
  /** Free bytes on the cache's filesystem at the last check. */
  free?: number;
  /** True when pinned content alone keeps the cache over a limit. */
  blockedByPinned: boolean;
  /** True when the last eviction could not free enough (pinned, in use, or the disk is full of other things). */
  unmet?: boolean;
  /** Evictions since the process started (count, bytes). */
  evictedSinceStart: TypeStats;
  lastEvictionAt?: string;
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
    pinned: { count: 0, size: 0 },
    evicted: { count: 0, size: 0 },
  };
}
