#!/usr/bin/env node
/**
 * Cluster bench: the small image set through one embedded daemon, one daemon
 * on PostgreSQL and two daemons sharing one PostgreSQL database and one
 * content root, in the same run, against one origin.
 *
 *   npm run build && node bench/cluster.js [--count 2000] [--runs 3] [--workers 16]
 *                                          [--split] [--fast] [--statements] [--profile DIR] [--json]
 *
 * Sides (rounds in rotating order, each side on a settled disk and a fresh
 * cache root; each PostgreSQL side on a freshly created database, dropped
 * after it):
 * - embedded: mediacached without --database, `mcctl add -f URLS --wait`;
 * - pg x1: one mediacached with --database, the same command;
 * - pg x2: two mediacached on one database and one --cache-dir (each with its
 *   own socket and state dir); by default the whole list is added through the
 *   first daemon (`mcctl add -f URLS --wait`, which returns once every job
 *   ended, wherever it ran: the second daemon claims its share from the
 *   shared queue); --split feeds half the list to each daemon instead (two
 *   mcctl at once, timed until both exit).
 * Every daemon runs with --concurrency and --per-host = --workers (16): the
 * per-host limit holds for the whole cluster, so two daemons also fetch at
 * most 16 at a time from the one origin host.
 *
 * Wall time: mcctl's start to its exit (daemon start-up untimed). Daemon CPU:
 * the change of each daemon's utime + stime over that window (from /proc)
 * plus mcctl's; PG CPU: the server's (postmaster, its live backends and the
 * ones it reaped) over the same window; peak RSS: the largest daemon VmHWM.
 * After each side: mcctl exited 0 (no job failed), one content file per
 * distinct content with the origin's bytes, and every URL done once (the
 * database's jobs and URL map for PostgreSQL sides, `mcctl stats`/`jobs` for
 * the embedded one); anything else throws.
 *
 * --statements loads pg_stat_statements into the server and prints, after
 * each PostgreSQL side, the statements (top level, BEGIN/COMMIT included)
 * per job and the busiest ones by calls; its own overhead is small but it
 * is off by default so timed runs compare like with like.
 *
 * The server is private (test/helpers/pg-cluster.js: initdb into a temp dir,
 * Unix socket only), with fsync on as in production unless --fast. Targets
 * (issue): one daemon on PostgreSQL within 1.3x of the embedded one; two
 * daemons no slower than one. Exits 0 with a note when the PostgreSQL server
 * programs are not installed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, numberArg, settleDisk } from './_args.js';
import { cachedFiles, mcctl, startDaemon } from './_peers.js';
import { generateSmall, startOrigin } from './_smallset.js';
import { findPgBinDir, startCluster } from '../test/helpers/pg-cluster.js';

const args = parseArgs();
const COUNT = numberArg(args, 'count', 2000);
const RUNS = Math.max(1, numberArg(args, 'runs', 3));
const WORKERS = numberArg(args, 'workers', 16);
const SPLIT = Boolean(args.split);
const STATEMENTS = Boolean(args.statements);
const MiB = 1024 * 1024;

if (!findPgBinDir()) {
  console.log('cluster: PostgreSQL server programs not found (apt-get install postgresql, or set PG_BINDIR); skipped');
  process.exit(0);
}
const { default: pg } = await import('pg');

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmtMs = (ms) => (ms === undefined ? '-' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`);
const fmtMiB = (b) => (b === undefined ? '-' : `${Math.round(b / MiB)} MiB`);

/** Fields 14-17 (utime, stime, cutime, cstime) of /proc/PID/stat in ms, and its ppid; undefined when gone. */
function readStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), own: (Number(f[11]) + Number(f[12])) * 10, reaped: (Number(f[13]) + Number(f[14])) * 10 };
  } catch {
    return undefined;
  }
}

/**
 * CPU ms the PostgreSQL server has used so far: the postmaster's own and its
 * reaped children's (exited backends), plus every live child's own. Its
 * difference over a window is the server's CPU in that window.
 */
function pgServerCpu(dataDir) {
  let pm;
  try {
    pm = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n', 1)[0]);
  } catch {
    return undefined;
  }
  const top = readStat(pm);
  if (!top) return undefined;
  let ms = top.own + top.reaped;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(name);
    if (st?.ppid === pm) ms += st.own;
  }
  return ms;
}

async function sql(connectionString, text, values = []) {
  const c = new pg.Client({ connectionString });
  await c.connect();
  try {
    return (await c.query(text, values)).rows;
  } finally {
    await c.end();
  }
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-cbench-'));
  let origin;
  let server;
  const cleanup = async () => {
    origin?.child.kill('SIGTERM');
    await server?.close().catch(() => {});
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    void cleanup().finally(() => process.exit(130));
  });
  try {
    const data = generateSmall(path.join(tmp, 'src'), COUNT);
    origin = await startOrigin(path.join(tmp, 'src'));
    const urls = data.names.map((n) => `http://127.0.0.1:${origin.port}/${n}`);
    const urlsFile = path.join(tmp, 'all.urls');
    fs.writeFileSync(urlsFile, urls.join('\n') + '\n');
    const halves = [urls.slice(0, urls.length >> 1), urls.slice(urls.length >> 1)].map((part, k) => {
      const f = path.join(tmp, `half${k}.urls`);
      fs.writeFileSync(f, part.join('\n') + '\n');
      return f;
    });
    // A server sized like a small production one rather than the tests' (shared_buffers 32MB).
    server = await startCluster({
      durable: !args.fast,
      settings: ['shared_buffers=256MB', ...(STATEMENTS ? ['shared_preload_libraries=pg_stat_statements', 'pg_stat_statements.track=top'] : [])],
    });
    const admin = server.connectionString('postgres');
    if (STATEMENTS) await sql(admin, 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    let seq = 0;

    /**
     * One side: start `daemons` mediacached (untimed) on a fresh root, the
     * PostgreSQL ones on a fresh database; time the feed; check; stop.
     */
    async function runSide(key, daemons, usePg) {
      const root = path.join(tmp, `${key}-${++seq}`);
      const cacheDir = path.join(root, 'content');
      let db;
      if (usePg) {
        const name = `cbench_${seq}`;
        await sql(admin, `CREATE DATABASE ${name}`);
        db = { name, url: server.connectionString(name) };
      }
      const ds = [];
      try {
        for (let k = 0; k < daemons; k++) {
          // --profile DIR: each daemon writes a V8 CPU profile there when it stops (summarize with bench/_cpuprof.js).
          const profileDir = args.profile ? path.join(String(args.profile), `${key}-${seq}-d${k}`) : undefined;
          ds.push(await startDaemon(path.join(root, `d${k}`), WORKERS, { cacheDir, profileDir, extraArgs: db ? ['--database', db.url] : [] }));
        }
        await settleDisk();
        if (STATEMENTS && db) await sql(admin, 'SELECT pg_stat_statements_reset()');
        const load = os.loadavg()[0];
        const before = ds.map((d) => d.stat().cpuMs);
        const pg0 = usePg ? pgServerCpu(server.dataDir) : undefined;
        const t0 = performance.now();
        const feeds = SPLIT && daemons > 1 ? halves.map((f, k) => mcctl(ds[k], ['add', '-f', f, '--wait'])) : [mcctl(ds[0], ['add', '-f', urlsFile, '--wait'])];
        const fed = await Promise.all(feeds);
        const ms = performance.now() - t0;
        const pg1 = usePg ? pgServerCpu(server.dataDir) : undefined;
        const after = ds.map((d) => d.stat());
        const daemonCpuMs = after.reduce((n, a, k) => n + a.cpuMs - before[k], 0);
        const mcctlCpuMs = fed.reduce((n, r) => n + (r.cpuMs ?? NaN), 0);
        const out = {
          ms,
          load,
          daemonCpuMs,
          mcctlCpuMs: Number.isNaN(mcctlCpuMs) ? undefined : mcctlCpuMs,
          pgCpuMs: pg0 !== undefined && pg1 !== undefined ? pg1 - pg0 : undefined,
          peakRss: Math.max(...after.map((a) => a.hwm ?? 0)) || undefined,
        };
        if (STATEMENTS && db) out.statements = await statements(db.name);
        out.shares = await check(key, ds, cacheDir, db);
        return out;
      } catch (e) {
        const tails = ds.map((d, k) => d.logTail() && `\n  daemon ${k} log: ${d.logTail()}`).join('');
        throw new Error(`${key}: ${e.message}${tails}`, { cause: e });
      } finally {
        for (const d of ds) await d.stop();
        if (db) await sql(admin, `DROP DATABASE ${db.name}`);
      }
    }

    /** Top-level statements run in database `name` since the last reset: total and the busiest, per job. */
    async function statements(name) {
      const rows = await sql(
        admin,
        `SELECT s.calls::int8 AS calls, s.total_exec_time AS ms, s.query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
          WHERE d.datname = $1 ORDER BY s.calls DESC`,
        [name],
      );
      const total = rows.reduce((n, r) => n + Number(r.calls), 0);
      const top = rows.slice(0, 12).map((r) => ({ perJob: +(Number(r.calls) / COUNT).toFixed(2), ms: Math.round(r.ms), query: r.query.replace(/\s+/g, ' ').slice(0, 110) }));
      return { perJob: +(total / COUNT).toFixed(2), top };
    }

    /** Every URL done once, one file per content with the origin's bytes, no failure; returns each daemon's share of the jobs. */
    async function check(key, ds, cacheDir, db) {
      const fail = (what) => {
        throw new Error(`${key}: ${what}`);
      };
      const files = cachedFiles(cacheDir);
      if (files.files !== COUNT || files.bytes !== data.bytes) fail(`${files.files} content files, ${files.bytes} bytes; expected ${COUNT}, ${data.bytes}`);
      if (!db) {
        const st = JSON.parse((await mcctl(ds[0], ['stats', '--json'], { capture: true })).out);
        if (st.totalFiles !== COUNT) fail(`stats says ${st.totalFiles} files`);
        if (st.queue.done !== COUNT || st.queue.failed || st.queue.queued || st.queue.running) fail(`queue ${JSON.stringify(st.queue)}`);
        const jobs = JSON.parse((await mcctl(ds[0], ['jobs', '--state', 'done', '--limit', String(COUNT), '--json'], { capture: true })).out);
        const done = new Set(jobs.jobs.map((j) => j.url));
        if (jobs.total !== COUNT || urls.some((u) => !done.has(u))) fail(`${jobs.total} done jobs, ${done.size} distinct URLs; expected every URL once`);
        return undefined;
      }
      const states = await sql(db.url, 'SELECT state, count(*)::int AS n, count(DISTINCT url)::int AS urls FROM mediacache.jobs GROUP BY state');
      const done = states.find((r) => r.state === 'done');
      if (states.length !== 1 || done?.n !== COUNT || done.urls !== COUNT) fail(`jobs ${JSON.stringify(states)}; expected ${COUNT} done, one per URL`);
      const [m] = await sql(db.url, 'SELECT (SELECT count(*)::int FROM mediacache.media) AS media, (SELECT count(*)::int FROM mediacache.media_url WHERE url = ANY($1)) AS urls', [urls]);
      if (m.media !== COUNT || m.urls !== COUNT) fail(`database has ${m.media} media rows and ${m.urls} of the URLs; expected ${COUNT} each`);
      const shares = await sql(db.url, 'SELECT done_by, count(*)::int AS n FROM mediacache.jobs GROUP BY done_by ORDER BY n DESC');
      return shares.map((r) => r.n);
    }

    const sides = [
      { key: 'embedded', label: 'embedded daemon', daemons: 1, pg: false },
      { key: 'pg1', label: 'one daemon on PostgreSQL', daemons: 1, pg: true },
      { key: 'pg2', label: `two daemons on PostgreSQL (${SPLIT ? 'half the list added to each' : 'list added through one'})`, daemons: 2, pg: true },
    ];
    const got = Object.fromEntries(sides.map((s) => [s.key, []]));
    for (let r = 0; r < RUNS; r++) {
      for (let k = 0; k < sides.length; k++) {
        const s = sides[(k + r) % sides.length];
        const o = await runSide(s.key, s.daemons, s.pg);
        console.error(`round ${r + 1} ${s.label}: ${fmtMs(o.ms)}${o.shares ? `, jobs per daemon ${o.shares.join(' / ')}` : ''}`);
        if (o.statements) {
          console.error(`  statements per job: ${o.statements.perJob} (top level); busiest (per job, exec ms, statement):`);
          for (const t of o.statements.top) console.error(`    ${String(t.perJob).padStart(6)} ${String(t.ms).padStart(6)}  ${t.query}`);
        }
        got[s.key].push(o);
      }
    }

    const row = (key) => {
      const xs = got[key];
      const med = (f) => (xs.every((x) => x[f] !== undefined) ? median(xs.map((x) => x[f])) : undefined);
      return { ms: med('ms'), daemonCpuMs: med('daemonCpuMs'), mcctlCpuMs: med('mcctlCpuMs'), pgCpuMs: med('pgCpuMs'), peakRss: xs.every((x) => x.peakRss) ? Math.max(...xs.map((x) => x.peakRss)) : undefined, shares: xs.map((x) => x.shares).filter(Boolean) };
    };
    const base = row('embedded');
    const loads = Object.values(got).flat().map((x) => x.load);
    const res = {
      files: COUNT,
      bytes: data.bytes,
      workers: WORKERS,
      runs: RUNS,
      fsync: !args.fast,
      feed: SPLIT ? 'split' : 'one',
      loadavg: { min: Math.min(...loads), max: Math.max(...loads) },
      cpus: os.cpus().length,
      sides: {},
    };
    console.log(`\ncluster: ${COUNT} files, ${(data.bytes / MiB).toFixed(1)} MiB, ${WORKERS} at a time; medians of ${RUNS}; PostgreSQL fsync ${args.fast ? 'off' : 'on'}; load average ${res.loadavg.min.toFixed(1)}-${res.loadavg.max.toFixed(1)} on ${res.cpus} CPUs`);
    console.log(`  ${'side'.padEnd(58)} ${'time'.padStart(8)} ${'x embed'.padStart(7)} ${'files/s'.padStart(8)} ${'daemon CPU'.padStart(10)} ${'mcctl CPU'.padStart(9)} ${'PG CPU'.padStart(8)} ${'peak RSS'.padStart(9)}`);
    for (const s of sides) {
      const x = row(s.key);
      const ratio = x.ms / base.ms;
      res.sides[s.key] = {
        label: s.label,
        ms: Math.round(x.ms),
        xEmbedded: +ratio.toFixed(2),
        filesPerSec: Math.round(COUNT / (x.ms / 1000)),
        daemonCpuMs: x.daemonCpuMs && Math.round(x.daemonCpuMs),
        mcctlCpuMs: x.mcctlCpuMs && Math.round(x.mcctlCpuMs),
        pgCpuMs: x.pgCpuMs && Math.round(x.pgCpuMs),
        peakRssMiB: x.peakRss && +(x.peakRss / MiB).toFixed(1),
        ...(s.daemons > 1 ? { jobsPerDaemon: x.shares } : {}),
      };
      console.log(
        `  ${s.label.padEnd(58)} ${fmtMs(x.ms).padStart(8)} ${ratio.toFixed(2).padStart(7)} ${(COUNT / (x.ms / 1000)).toFixed(0).padStart(8)}` +
          ` ${fmtMs(x.daemonCpuMs).padStart(10)} ${fmtMs(x.mcctlCpuMs).padStart(9)} ${fmtMs(x.pgCpuMs).padStart(8)} ${fmtMiB(x.peakRss).padStart(9)}`,
      );
    }
    const two = row('pg2');
    if (two.shares.length) console.log(`  two daemons, jobs each per round: ${two.shares.map((s) => s.join(' / ')).join('; ')}`);
    const one = row('pg1');
    const verdict = (ok) => (ok ? 'met' : 'NOT met');
    res.targets = [
      `one daemon on PostgreSQL ${(one.ms / base.ms).toFixed(2)}x the embedded one (target <= 1.3x): ${verdict(one.ms <= 1.3 * base.ms)}`,
      `two daemons ${(two.ms / one.ms).toFixed(2)}x one daemon on PostgreSQL (target <= 1.0x): ${verdict(two.ms <= one.ms)}`,
    ];
    for (const line of res.targets) console.log(`  ${line}`);
    console.log(`  load average now ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    if (args.json) console.log(JSON.stringify(res));
  } finally {
    await cleanup();
  }
}

await main();
