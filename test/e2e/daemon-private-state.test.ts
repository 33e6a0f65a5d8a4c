/**
 * End to end, the real daemon: what it creates is private by default (umask
 * 077 unless --umask), credentials in URLs never reach its reports or logs,
 * and --url-policy / --deny-cidr refuse loopback origins with E_FORBIDDEN
 * without contacting them.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon, makeRoot } from '../helpers/daemon.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';
import { parseReport } from '../../src/daemon/inbox/report.js';

const PNG = fixture('sample.png');

/** Every path under `dir` with group or other permission bits set. */
function notPrivate(dir: string): string[] {
  const bad: string[] = [];
  const walk = (p: string): void => {
    const st = fs.lstatSync(p);
    if (st.mode & 0o077) bad.push(`${p} ${(st.mode & 0o777).toString(8)}`);
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
  };
  walk(dir);
  return bad;
}

t.test('state is private by default; credentials are redacted in reports and logs', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/img.png', { body: PNG });
  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const inbox = path.join(root, 'inbox');
  fs.mkdirSync(inbox, { recursive: true });
  const d = await startDaemon(t, { root });
  const u = new URL(origin.url('/img.png'));
  const secretUrl = `http://alice:hunter2@${u.host}/img.png?token=tok123&size=1`;
  fs.writeFileSync(path.join(inbox, 'creds.urls'), `${secretUrl}\nnot-a-url://bob:pw42@x\n${u.origin}/missing.png?sig=sig999\n`);
  const report = path.join(inbox, 'processed', 'creds.urls.report.tsv');
  await waitFor(() => fs.existsSync(report), { timeoutMs: 30_000, what: 'the report' });
  const text = fs.readFileSync(report, 'utf8');
  const rows = parseReport(text);
  t.equal(rows[0]?.outcome, 'done', 'the URL with credentials was fetched');
  t.equal(rows[0]?.url, `http://***@${u.host}/img.png?token=***&size=1`);
  t.equal(rows[2]?.outcome, 'failed');
  t.notMatch(text, /hunter2|tok123|sig999|pw42/, 'no secret in the report');
  const jobs = await d.rpc('jobs', {});
  t.ok(jobs.jobs.some((j) => j.url === secretUrl), 'the job store keeps the real URL (it is what gets fetched)');
  await d.stop();
  t.notMatch(d.stderr(), /hunter2|tok123|sig999/, 'no secret in the log');
  t.match(d.stderr(), /\*\*\*@/, 'the log does mention the (redacted) URL');
  // Reports and processed/ have fixed modes (the inbox's group may read them; others never): src/daemon/inbox/.
  t.equal(fs.statSync(report).mode & 0o777, 0o640, 'report 0640');
  t.equal(fs.statSync(path.join(inbox, 'processed')).mode & 0o027, 0, 'processed/: nothing for others, not group-writable');
  t.same(notPrivate(d.cacheDir), [], 'cache, index, jobs: nothing readable by group or others');
});

t.test('--umask 022 is honoured; --deny-cidr refuses a loopback origin with E_FORBIDDEN', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/img.png', { body: PNG });
  const other = await startOrigin('::1');
  t.teardown(() => other.close());
  other.route('/img.png', { body: PNG });
  other.route('/to-v4', { status: 302, headers: { location: origin.url('/img.png') } });
  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const inbox = path.join(root, 'inbox');
  fs.mkdirSync(inbox, { recursive: true });
  const d = await startDaemon(t, { root, args: ['--umask', '022', '--deny-cidr', '127.0.0.0/8'] });
  fs.writeFileSync(path.join(inbox, 'p.urls'), `${origin.url('/img.png')}\n${other.url('/to-v4')}\n${other.url('/img.png')}\n`);
  const report = path.join(inbox, 'processed', 'p.urls.report.tsv');
  await waitFor(() => fs.existsSync(report), { timeoutMs: 30_000, what: 'the report' });
  const rows = parseReport(fs.readFileSync(report, 'utf8'));
  t.same(rows.map((r) => [r.outcome, r.result.startsWith('E_') ? r.result : 'md5']), [
    ['failed', 'E_FORBIDDEN'],
    ['failed', 'E_FORBIDDEN'],
    ['done', 'md5'],
  ]);
  t.equal(origin.totalHits(), 0, 'the denied origin was never contacted');
  const jobs = await d.rpc('jobs', { state: 'failed' });
  t.ok(jobs.jobs.every((j) => j.attempts === 1), 'a refusal is not retried');
  t.match(jobs.jobs[0]?.error?.message ?? '', /refused by the URL policy/);
  t.equal(fs.statSync(report).mode & 0o777, 0o640, '--umask 022: the report keeps its own mode, 0640');
  t.match(d.stderr(), /url policy: {2}open denyCidrs=127\.0\.0\.0\/8/, 'the policy is logged at start');
});
