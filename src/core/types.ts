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
  width?: number;
  height?: number;
  /** Every URL that produced this content, first one first. */
  urls: string[];
  fetchedAt: string;
  verifiedAt: string;
  /** Origin validators of the last fetch, kept for later revalidation. */
  etag?: string;
  lastModified?: string;
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
