/**
 * The last sweep's report, kept across restarts in `<indexDir>/last-sweep.json`
 * so that `status` still shows when the cache was last checked and what was
 * found after the daemon restarts. Written durably after each sweep; a
 * missing or unreadable file just means "no sweep known yet".
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../core/util/logger.js';
import type { SweepReport } from '../../core/protocol/rpc.js';
import { writeFileDurable } from '../../core/util/durable-file.js';

export const LAST_SWEEP_FILE = 'last-sweep.json';

function isReport(x: unknown): x is SweepReport {
  const r = x as Partial<SweepReport> | null;
  return typeof r === 'object' && r !== null && typeof r.id === 'string' && typeof r.startedAt === 'string' && typeof r.finishedAt === 'string' && Array.isArray(r.steps);
}

export async function readLastReport(indexDir: string, logger: Logger): Promise<SweepReport | undefined> {
  const file = path.join(indexDir, LAST_SWEEP_FILE);
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') logger.warn('last sweep report unreadable; status shows none until the next sweep', { file, error: String(e) });
    return undefined;
  }
  try {
    const r: unknown = JSON.parse(text);
    if (isReport(r)) return r;
  } catch {
    // falls through: not a report
  }
  logger.warn('last sweep report damaged; status shows none until the next sweep', { file });
  return undefined;
}

export async function writeLastReport(indexDir: string, report: SweepReport, logger: Logger): Promise<void> {
  try {
    await writeFileDurable(path.join(indexDir, LAST_SWEEP_FILE), JSON.stringify(report));
  } catch (e) {
    logger.warn('could not keep the last sweep report for the next start', { error: String(e) });
  }
}
