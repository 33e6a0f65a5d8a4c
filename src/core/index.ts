/** The package's public surface (`import { MediaCache } from 'mediacache'`). Re-exports only. */
export { MediaCache } from './cache.js';
export type { MediaCacheOptions, MediaCacheSettings, DownloadOptions, VerifyOutcome, DownloadManyOptions, DownloadManyResult, DownloadFailure } from './cache.js';
export {
  MediaCacheError,
  ERROR_CODES,
  isMediaCacheError,
  isErrorCode,
  toMediaCacheError,
} from './errors.js';
export type { ErrorCode, ErrorInfo, MediaCacheErrorOptions } from './errors.js';
export { MEDIA_TYPES, TYPE_DIRS, emptyStats } from './types.js';
export type { MediaType, StoredRecord, MediaRecord, CacheStats, TypeStats } from './types.js';
export { formatSize, formatRate, formatEta, formatRelative, formatDuration } from './format.js';
export { silentLogger } from './logger.js';
export { stderrLogger } from './stderr-logger.js';
export type { StderrLogLevel } from './stderr-logger.js';
export type { Logger } from './logger.js';
export { defaultCacheDir } from './paths.js';
export { hashFile } from './hash-file.js';
export type { FileHashes } from './hash-file.js';
export * from './protocol.js';
export {
  downloadAndCacheMedia,
  downloadMultipleMedia,
  downloadMultipleMediaSettled,
  setDefaultLogger,
  getCacheStats,
  verifyCachedMedia,
  findCachedByMd5,
  closeDefaultCache,
  optionsFromEnv,
} from './default-instance.js';
export { Sweeper, STEP_ORDER } from './sweep.js';
export type { SweeperOptions, SweepRunOptions, SweepTarget } from './sweep.js';
export { parseCron, nextRun, nextRunOf } from './cron.js';
export type { CronSpec } from './cron.js';
