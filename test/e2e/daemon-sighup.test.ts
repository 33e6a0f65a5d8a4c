/**
 * SIGHUP on the real daemon: the log file is reopened at its configured path
 * (logrotate renames it away first), and reloadable settings from the config
 * file take effect without a restart.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { makeRoot, startDaemon } from '../helpers/daemon.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';

t.test('SIGHUP reopens the log file and applies config changes', async (t) => {
  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const body = Buffer.concat([fixture('sample.jpg'), Buffer.alloc(256 * 1024, 1)]);
  const urls = [1, 2, 3].map((i) => {
    origin.route(`/s${i}.jpg`, { body: Buffer.concat([body, Buffer.from([i])]), bytesPerSec: 48 * 1024 });
    return origin.url(`/s${i}.jpg`);
  });

  const cfgFile = path.join(root, 'config.json');
  const logFile = path.join(root, 'log', 'd.log');
  const writeCfg = (o: Record<string, unknown>): void => fs.writeFileSync(cfgFile, JSON.stringify(o));
  // Minute 15 never matches "*/30" (minutes 0 and 30), so the re-armed time
  // differs from the first whatever the clock says (03:00 would not at 02:40).
  writeCfg({ concurrency: 1, sweepSchedule: '15 3 * * *', logFile });
  const d = await startDaemon(t, { root, args: ['--config', cfgFile] });

  let st = await d.rpc('status', {});
  t.equal(st.config.concurrency, 1);
  t.equal(st.paths.configFile, cfgFile);
  t.equal(st.paths.logFile, logFile);
  await waitFor(() => fs.existsSync(logFile) && fs.readFileSync(logFile, 'utf8').includes('"ready"'), { what: 'JSON log lines in the file' });
  const first = JSON.parse(fs.readFileSync(logFile, 'utf8').split('\n')[0]!) as { level: string; message: string; timestamp: string };
  t.match(first, { level: 'info', message: /mediacached .* starting/ }, 'the file holds JSON lines');

  // Behaviour at concurrency 1: three slow downloads run one at a time.
  await d.rpc('add', { urls });
  let maxActive = 0;
  await waitFor(
    async () => {
      const s = await d.rpc('status', {});
      maxActive = Math.max(maxActive, s.active.length);
      return s.active.length === 1 && s.active[0]!.bytes > 0;
    },
    { what: 'one download running' },
  );
  for (let i = 0; i < 5; i++) maxActive = Math.max(maxActive, (await d.rpc('status', {})).active.length);
  t.equal(maxActive, 1, 'concurrency 1 honoured');

  // logrotate: rename the file away, change the config, SIGHUP.
  fs.renameSync(logFile, `${logFile}.1`);
  writeCfg({ concurrency: 3, sweepSchedule: '*/30 * * * *', timeout: 5000, logFile });
  const before = st.nextSweepAt;
  d.kill('SIGHUP');
  await waitFor(async () => (await d.rpc('status', {})).config.concurrency === 3, { what: 'concurrency 3 after SIGHUP' });
  st = await d.rpc('status', {});
  t.equal(st.config.sweepSchedule, '*/30 * * * *', 'sweep schedule applied');
  t.not(st.nextSweepAt, before, 'next sweep re-armed');
  t.ok([0, 30].includes(new Date(st.nextSweepAt!).getMinutes()), 'on the new schedule');
  t.ok(Date.parse(st.nextSweepAt!) - Date.now() <= 30 * 60_000 + 1000, 'next sweep within 30 min');
  t.equal(st.config.timeoutMs, 30_000, 'timeout needs a restart: not applied');
  await waitFor(() => /need a restart: timeoutMs/.test(d.stderr()), { what: 'restart-needed warning' });
  await waitFor(async () => (await d.rpc('status', {})).active.length >= 2, { timeoutMs: 15_000, what: 'more downloads in parallel after the reload' });
  t.pass('more than one download runs after raising concurrency');

  await waitFor(() => fs.existsSync(logFile), { what: 'a new log file at the configured path' });
  await waitFor(() => fs.readFileSync(logFile, 'utf8').includes('reload: applied'), { what: 'reload lines in the new file' });
  const rotated = fs.readFileSync(`${logFile}.1`, 'utf8');
  t.notMatch(rotated, /reload: applied/, 'new lines do not go to the renamed file');
  t.match(rotated, /"ready"/, 'old lines stayed in the renamed file');

  // A broken config file on SIGHUP: logged, nothing changes, daemon keeps serving.
  fs.writeFileSync(cfgFile, '{"concurrency": ');
  d.kill('SIGHUP');
  await waitFor(() => /reload: configuration not changed: config file .*not valid JSON/.test(d.stderr()), { what: 'bad-config reload error' });
  t.equal((await d.rpc('status', {})).config.concurrency, 3, 'old settings kept');

  const exit = await d.stop();
  t.equal(exit.code, 0);
});
