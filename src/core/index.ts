/** The package's public surface (`import { MediaCache } from 'mediacache'`). Re-exports only. */
export { MediaCache } from './cache/media-cache.js';
export type { MediaCacheOptions, MediaCacheSettings, DownloadOptions, VerifyOutcome, DownloadManyOptions, DownloadManyResult, DownloadFailure } from './cache/media-cache.js';
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
export { formatSize, formatRate, formatEta, formatRelative, formatDuration } from './util/format.js';
export { silentLogger } from './util/logger.js';
export { stderrLogger } from './util/stderr-logger.js';
export type { StderrLogLevel } from './util/stderr-logger.js';
export type { Logger } from './util/logger.js';
export { defaultCacheDir } from './util/paths.js';
export { hashFile } from './hash/file-hash.js';
export type { FileHashes } from './hash/file-hash.js';
export * from './protocol/rpc.js';
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
} from './cache/default-instance.js';
export { Sweeper, STEP_ORDER } from './verify/sweep.js';
export type { SweeperOptions, SweepRunOptions, SweepTarget } from './verify/sweep.js';
export { parseCron, nextRun, nextRunOf } from './util/cron.js';
export type { CronSpec } from './util/cron.js';
export { extractMetadata, METADATA_VERSION, METADATA_FIELDS, type MediaMetadata, type ExtractOptions, type ExtractResult } from './metadata/index.js';
export { UrlPolicy, URL_POLICY_PRESETS, PUBLIC_PRESET_DENY, type UrlPolicyOptions, type UrlPolicyPreset } from './fetch/url-policy.js';
export { redactUrl, redactText } from './util/redact.js';
