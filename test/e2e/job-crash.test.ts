/**
 * A job's `done` never reaches the disk before its index record: SIGKILL a
 * process running the daemon's download path (index flushing lazily, job
 * store eagerly) again and again; after every kill each job the job store
 * holds as done has its record. A last life finishes the queue: every URL
 * ends done with its record and its file.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { IndexDb } from '../../src/core/entry-index/index-db.js';
import { JobStore } from '../../src/daemon/jobs/job-store.js';
import { storePath } from '../../src/core/content/store.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';

const PNG = fixture('sample.png');
const COUNT = 40;
const KILLS = 3;

/** Jobs durable as done whose URL the durable index does not map to their md5. */
async function doneWithoutRecord(cacheDir: string): Promise<string[]> {
  const index = await IndexDb.open(path.join(cacheDir, 'index'));
  const jobs = await JobStore.open(path.join(cacheDir, 'index', 'jobs'));
  const bad: string[] = [];
  for (const j of jobs.values()) if (j.state === 'done' && index.md5ForUrl(j.url) !== j.md5) bad.push(`${j.id} ${j.url}`);
  await index.close();
  // Not closed: the next life must still see the crash (closing would mark the store clean).
  return bad;
}

t.test('SIGKILL never leaves a done job without its index record', async (t) => {
  t.setTimeout(175_000);
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  for (let i = 0; i < COUNT; i++) origin.route(`/f${i}.png`, { body: Buffer.concat([PNG, Buffer.from(`crash-${i}`)]) });
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-jobcrash-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const cacheDir = path.join(root, 'cache');
  const child = fileURLToPath(new URL('../scripts/job-crash-child.ts', import.meta.url));
  const tsLoader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  const env = { ...process.env };
  delete env.NODE_OPTIONS;

  let doneSeen = 0;
  for (let life = 0; life <= KILLS; life++) {
    const proc = spawn(process.execPath, [...tsLoader, child, cacheDir, origin.base, String(COUNT)], { stdio: ['ignore', 'ignore', 'pipe'], env });
    t.teardown(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    });
    let text = '';
    let dones = 0;
    proc.stderr.setEncoding('utf8').on('data', (s: string) => {
      text += s;
      dones += (s.match(/^done /gm) ?? []).length;
    });
    const exited = new Promise<void>((r) => proc.on('exit', () => r()));
    if (life < KILLS) {
      // Kill a few downloads into the life, at a moment that varies.
      const after = 3 + ((life * 7) % 11);
      await waitFor(() => dones >= after || proc.exitCode !== null, { timeoutMs: 60_000, intervalMs: 1, what: `life ${life}: ${after} jobs done` });
      t.equal(proc.exitCode, null, `life ${life} still running (stderr: ${text.slice(-300)})`);
      proc.kill('SIGKILL');
      await exited;
      doneSeen += dones;
      t.same(await doneWithoutRecord(cacheDir), [], `after kill ${life + 1}: every done job has its record`);
    } else {
      await waitFor(() => /all done/.test(text) || proc.exitCode !== null, { timeoutMs: 120_000, what: 'the last life finishes the queue' });
      await exited;
      t.equal(proc.exitCode, 0, `clean exit (stderr: ${text.slice(-300)})`);
    }
  }
  t.ok(doneSeen >= KILLS * 3, `${doneSeen} jobs finished in the killed lives`);

  const index = await IndexDb.open(path.join(cacheDir, 'index'));
  const jobs = await JobStore.open(path.join(cacheDir, 'index', 'jobs'));
  const all = [...jobs.values()];
  t.equal(all.length, COUNT, 'one job per URL');
  t.ok(all.every((j) => j.state === 'done'), 'every job done');
  for (const j of all) {
    const rec = index.get(j.md5!);
    if (!rec || index.md5ForUrl(j.url) !== j.md5 || !fs.existsSync(storePath(cacheDir, rec))) t.fail(`${j.id} ${j.url}: record or file missing`);
  }
  await index.close();
  await jobs.close();
});
