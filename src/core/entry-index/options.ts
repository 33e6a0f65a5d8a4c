/**
 * IndexDb's options: their defaults and their validation, in one place.
 */
import { MediaCacheError } from '../errors.js';
import { silentLogger, type Logger } from '../util/logger.js';

export interface IndexDbOptions {
  /** Delay between the first unflushed change and its journal append (default 50 ms). */
  flushDelayMs?: number;
  logger?: Logger;
  /** Shard files read in parallel at open (default 4). */
  readConcurrency?: number;
  /** Shard files written in parallel by a compaction (default 4, the size of libuv's pool). */
  writeConcurrency?: number;
  /**
   * Journal size (bytes) that starts a compaction. Default: an eighth of the
   * shards' size, between 8 MiB and 32 MiB (see compactThreshold).
   */
  compactBytes?: number;
  /**
   * close() leaves a journal smaller than this for the next open to replay
   * instead of compacting it (default 0: close always compacts). Replaying
   * a few MiB costs the next open little; compacting at close rewrites
   * every shard the journal touched (all 256 after a few thousand
   * downloads), which a short script would pay at every exit. MediaCache uses CLOSE_COMPACT_BYTES.
   */
  closeCompactBytes?: number;
  /** Clock for meta.json and moved-aside names (tests). */
  now?: () => Date;
}

/** MediaCache's closeCompactBytes: half the smallest compaction threshold. */
export const CLOSE_COMPACT_BYTES = 4 * 1024 * 1024;

/**
 * A flush is one append + fdatasync whatever the index size, not a
 * rewrite of every dirty shard (a cost that grows with the index), so it
 * can run often: a download is durable in the index within a flush delay
 * of landing, for a small share of a core during a download burst.
 */
const DEFAULT_FLUSH_DELAY_MS = 50;

/** The options with their defaults applied; E_BAD_REQUEST for a value out of range. */
export interface ResolvedIndexDbOptions {
  flushDelayMs: number;
  logger: Logger;
  readConcurrency: number;
  writeConcurrency: number;
  compactBytes: number | undefined;
  closeCompactBytes: number;
  now: () => Date;
}

export function resolveIndexDbOptions(opts: IndexDbOptions): ResolvedIndexDbOptions {
  const r: ResolvedIndexDbOptions = {
    flushDelayMs: opts.flushDelayMs ?? DEFAULT_FLUSH_DELAY_MS,
    logger: opts.logger ?? silentLogger,
    readConcurrency: Math.max(1, opts.readConcurrency ?? 4),
    writeConcurrency: Math.max(1, opts.writeConcurrency ?? 4),
    compactBytes: opts.compactBytes,
    closeCompactBytes: opts.closeCompactBytes ?? 0,
    now: opts.now ?? (() => new Date()),
  };
  if (!(r.flushDelayMs >= 0)) throw new MediaCacheError('E_BAD_REQUEST', 'flushDelayMs must be >= 0');
  if (r.compactBytes !== undefined && !(r.compactBytes >= 0)) throw new MediaCacheError('E_BAD_REQUEST', 'compactBytes must be >= 0');
  if (!(r.closeCompactBytes >= 0)) throw new MediaCacheError('E_BAD_REQUEST', 'closeCompactBytes must be >= 0');
  return r;
}
