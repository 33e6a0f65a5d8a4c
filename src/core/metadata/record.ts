/**
 * Metadata into records: what the cache and the sweep both do with an
 * extraction's result.
 */
import type { Logger } from '../util/logger.js';
import type { StoredRecord } from '../types.js';
import { extractMetadata, METADATA_VERSION, type ExtractOptions } from './index.js';
import { METADATA_FIELDS, type MediaMetadata } from './types.js';

/** What to merge into a record; undefined = nothing learned and worth retrying later. */
export interface MetadataOutcome {
  fields: MediaMetadata;
  version: number;
}

/**
 * Read a file's metadata for a record, logging why when there is none.
 * A damaged file is marked as read (version set, no fields) so sweeps do not
 * retry it; a time limit or an I/O error leaves it for the next sweep.
 */
export async function readRecordMetadata(
  filePath: string,
  rec: Pick<StoredRecord, 'md5' | 'mediaType' | 'mimeType' | 'extension'>,
  logger: Logger,
  opts: ExtractOptions & { url?: string },
): Promise<MetadataOutcome | undefined> {
  const t0 = performance.now();
  const r = await extractMetadata(filePath, rec, {
    ...opts,
    onNote: (note) => logger.debug('metadata', { md5: rec.md5, note }),
  });
  const ms = Math.round(performance.now() - t0);
  if (r.metadata) {
    logger.debug('metadata read', { md5: rec.md5, ms, ...r.metadata });
    return { fields: r.metadata, version: METADATA_VERSION };
  }
  const where = { md5: rec.md5, path: filePath, ...(opts.url ? { url: opts.url } : {}), ms, reason: r.error };
  if (r.transient) {
    logger.info('metadata not read this time; a sweep retries', where);
    return undefined;
  }
  logger.warn('metadata unreadable (damaged or unusual file); stored without it', where);
  return { fields: {}, version: METADATA_VERSION };
}

/** `rec` with the outcome merged in: every metadata field replaced (width/height only when known). */
export function withMetadata<T extends StoredRecord>(rec: T, out: MetadataOutcome | undefined): T {
  if (!out) return rec;
  const next = { ...rec } as T & Record<string, unknown>;
  for (const k of METADATA_FIELDS) {
    if (k === 'width' || k === 'height') continue;
    delete next[k];
  }
  Object.assign(next, out.fields);
  next.metadataVersion = out.version;
  return next;
}
