/**
 * SIGHUP: apply what can change in a running daemon, report what cannot.
 * The resulting config is the old one with only the applied keys replaced,
 * so `status` never shows a value the daemon is not actually using.
 */
import type { Logger } from '../core/util/logger.js';
import { changedKeys, RELOADABLE_KEYS, type DaemonConfig } from './config.js';

export interface ReloadTargets {
  setLimits(o: { concurrency?: number; perHost?: number }): void;
  setSchedule(expr: string): void;
  setSweepOptions(o: { rateMBps?: number; maxDurationMs?: number }): void;
  setLogLevel(level: string): void;
  /** Reopen the log file (always, for logrotate), at `file` when it changed. */
  reopenLog(file: string | undefined): Promise<void>;
}

export interface ReloadOutcome {
  config: DaemonConfig;
  applied: Array<keyof DaemonConfig>;
  needRestart: Array<keyof DaemonConfig>;
  failed: Array<{ key: keyof DaemonConfig; error: string }>;
}

export async function applyReload(old: DaemonConfig, next: DaemonConfig, t: ReloadTargets, logger: Logger): Promise<ReloadOutcome> {
  const changed: Array<keyof DaemonConfig> = changedKeys(old, next).filter((k) => k !== 'configFile');
  const reloadable = new Set<string>(RELOADABLE_KEYS);
  const applied: Array<keyof DaemonConfig> = [];
  const failed: ReloadOutcome['failed'] = [];
  const needRestart = changed.filter((k) => !reloadable.has(k));
  const cfg: DaemonConfig = { ...old };
  const set = <K extends keyof DaemonConfig>(k: K): void => {
    (cfg as Record<K, DaemonConfig[K]>)[k] = next[k];
    applied.push(k);
  };
  const attempt = (keys: Array<keyof DaemonConfig>, fn: () => void): void => {
    try {
      fn();
      for (const k of keys) set(k);
    } catch (e) {
      for (const k of keys) failed.push({ key: k, error: e instanceof Error ? e.message : String(e) });
    }
  };

  const has = (k: keyof DaemonConfig): boolean => changed.includes(k);
  if (has('concurrency') || has('perHost')) {
    const keys = (['concurrency', 'perHost'] as const).filter(has);
    attempt([...keys], () => t.setLimits({ concurrency: next.concurrency, perHost: next.perHost }));
  }
  if (has('sweepSchedule')) attempt(['sweepSchedule'], () => t.setSchedule(next.sweepSchedule));
  if (has('sweepRate') || has('sweepMaxDuration')) {
    const keys = (['sweepRate', 'sweepMaxDuration'] as const).filter(has);
    attempt([...keys], () => t.setSweepOptions({ rateMBps: next.sweepRate, maxDurationMs: next.sweepMaxDuration }));
  }
  if (has('logLevel')) attempt(['logLevel'], () => t.setLogLevel(next.logLevel));
  try {
    await t.reopenLog(next.logFile);
    if (has('logFile')) {
      cfg.logFile = next.logFile;
      applied.push('logFile');
    }
  } catch (e) {
    failed.push({ key: 'logFile', error: e instanceof Error ? e.message : String(e) });
  }

  if (applied.length) logger.info('reload: applied', Object.fromEntries(applied.map((k) => [k, next[k]])));
  else logger.info('reload: log file reopened; no reloadable setting changed');
  if (needRestart.length) logger.warn(`reload: changed settings that need a restart: ${needRestart.join(', ')}`, Object.fromEntries(needRestart.map((k) => [k, next[k]])));
  for (const f of failed) logger.error(`reload: could not apply ${f.key}: ${f.error}`);
  return { config: Object.freeze(cfg), applied, needRestart, failed };
}
