// Peers of bench/download.js that are other programs: how each is run and
// measured. Every peer runs as a child process; its CPU time and peak RSS
// come from GNU time (`/usr/bin/time -f '%U %S %M'`: the rusage wait4 returns,
// i.e. the child and every descendant it waited for; peak RSS is the largest
// single process). Without GNU time, CPU comes from the wrapping shell's
// /proc stat (cutime + cstime) and peak RSS is not reported.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.join(HERE, '..');
/** GNU time's path, looked up on first use (bench children import this module too). */
let gnuTime;
function gnuTimePath() {
  gnuTime ??= ['/usr/bin/time', '/bin/time'].find((p) => {
    try {
      return spawnSync(p, ['-f', '%M', 'true'], { stdio: 'ignore' }).status === 0;
    } catch {
      return false;
    }
  }) ?? '';
  return gnuTime || undefined;
}
let seq = 0;

/** Path of `name` on PATH, or undefined. */
export function which(name) {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/**
 * Run `cmd argv` to completion; rejects on a non-zero exit (with the end of
 * its stderr). Resolves { ms, cpuMs, peakRss, out } (peakRss undefined
 * without GNU time; out: stdout when `capture`).
 */
export function measured(cmd, argv, { capture = false, env, cwd, okCodes = [0] } = {}) {
  const stats = path.join(os.tmpdir(), `mcb-time-${process.pid}-${++seq}`);
  const GNU_TIME = gnuTimePath();
  let c;
  let a;
  if (GNU_TIME) {
    [c, a] = [GNU_TIME, ['-f', 'MCB %U %S %M', '-o', stats, cmd, ...argv]];
  } else {
    // The shell waits for cmd, then reports its own children's CPU (fields 14/15 after comm).
    [c, a] = ['sh', ['-c', '"$@"; s=$?; [ -r /proc/$$/stat ] && cat /proc/$$/stat > "$MCB_STATS"; exit $s', 'sh', cmd, ...argv]];
  }
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(c, a, {
      stdio: ['ignore', capture ? 'pipe' : 'ignore', 'pipe'],
      env: { ...(env ?? process.env), MCB_STATS: stats },
      cwd,
    });
    let out = '';
    let err = '';
    child.stdout?.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err = (err + d).slice(-4000)));
    child.once('error', reject);
    child.once('close', (code) => {
      const ms = performance.now() - t0;
      let text = '';
      try {
        text = fs.readFileSync(stats, 'utf8');
        fs.rmSync(stats, { force: true });
      } catch {
        /* no stats */
      }
      if (!okCodes.includes(code)) return reject(Object.assign(new Error(`${path.basename(cmd)} exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`), { code }));
      let cpuMs;
      let peakRss;
      if (GNU_TIME) {
        const m = /MCB (\S+) (\S+) (\d+)/.exec(text);
        if (m) {
          cpuMs = (Number(m[1]) + Number(m[2])) * 1000;
          peakRss = Number(m[3]) * 1024;
        }
      } else if (text) {
        const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
        const ticks = Number(rest[13]) + Number(rest[14]);
        if (Number.isFinite(ticks)) cpuMs = ticks * 10;
      }
      resolve({ ms, cpuMs, peakRss, out, code });
    });
  });
}

/** `wget -i`: one URL after another over one keep-alive connection, as a user would fetch a list. */
export async function runWget(urlsFile, outDir) {
  fs.mkdirSync(outDir, { recursive: true });
  return measured('wget', ['--no-config', '-q', '-i', urlsFile, '-P', outDir]);
}

/**
 * aria2c over the same list, `workers` downloads at a time (-j), one
 * connection per download (its default -x 1). --file-allocation=none: its
 * default (prealloc) would write zeros first on a filesystem without fallocate.
 */
export async function runAria2(urlsFile, outDir, workers) {
  fs.mkdirSync(outDir, { recursive: true });
  return measured('aria2c', [
    '--no-conf=true', '-q', '--console-log-level=error', '--summary-interval=0', '--download-result=hide',
    '--file-allocation=none', '--auto-file-renaming=false', '-j', String(workers), '-d', outDir, '-i', urlsFile,
  ]);
}

/** The Python interpreter for seed_approach.py: $BENCH_PYTHON, else /usr/bin/python3 (Debian's python3-requests/-pil), else python3. */
export function pythonPath() {
  if (process.env.BENCH_PYTHON) return process.env.BENCH_PYTHON;
  if (fs.existsSync('/usr/bin/python3')) return '/usr/bin/python3';
  return which('python3');
}

/** Why the seed's approach cannot run here (no python, no requests/Pillow), or undefined. */
export function seedUnavailable() {
  const py = pythonPath();
  if (!py) return 'python3 not found';
  const r = spawnSync(py, ['-c', 'import requests, PIL'], { encoding: 'utf8' });
  if (r.status !== 0) return `${py}: ${(r.stderr.trim().split('\n').pop() || 'import failed')} (apt-get install python3-requests python3-pil)`;
  return undefined;
}

/** bench/seed_approach.py; its own wall time (interpreter start-up excluded), CPU and RSS of the whole process. */
export async function runSeed(urlsFile, outDir, workers) {
  fs.mkdirSync(outDir, { recursive: true });
  const r = await measured(pythonPath(), [path.join(HERE, 'seed_approach.py'), urlsFile, outDir, String(workers)], { capture: true });
  const j = JSON.parse(r.out.trim().split('\n').pop());
  return { ...r, ms: j.ms };
}

// ------------------------------------------------------------------ daemon

/** The node flags bin/mediacached.js runs with (from its shebang), as the service files do. */
export function daemonNodeArgs() {
  // BENCH_DAEMON_NODE_ARGS="--max-semi-space-size=8": try other V8 flags than the shipped ones.
  if (process.env.BENCH_DAEMON_NODE_ARGS !== undefined) return process.env.BENCH_DAEMON_NODE_ARGS.split(/\s+/).filter(Boolean);
  const first = fs.readFileSync(path.join(REPO, 'bin', 'mediacached.js'), 'utf8').split('\n', 1)[0];
  const m = /^#!\S*env -S node(.*)$/.exec(first);
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
}

/** CPU ms (utime + stime) and peak RSS (VmHWM) of a live process, from /proc; undefined fields when unreadable. */
export function procStat(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpuMs = (Number(rest[11]) + Number(rest[12])) * 10;
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { cpuMs, hwm: m ? Number(m[1]) * 1024 : undefined };
  } catch {
    return { cpuMs: undefined, hwm: undefined };
  }
}

async function waitForSocket(sock, child, timeoutMs = 60_000) {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (child.exitCode !== null) throw new Error(`mediacached exited with ${child.exitCode} before it listened`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(sock, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('mediacached did not listen in time');
}

/**
 * Spawn mediacached under `root` (socket, inbox, XDG config/state/runtime
 * there, so no user config is read and each daemon has its own state dir and
 * node id) on `cacheDir` (default `root/cache`), with `--concurrency` and
 * `--per-host` = `workers` and any `extraArgs` (e.g. `--database URL`);
 * resolves once its socket answers. `stop()` sends SIGTERM (SIGKILL after
 * 30 s) and waits for the exit; `logTail()` is the end of its log, for errors.
 * `profileDir`: the daemon runs with --cpu-prof and writes its profile there when it stops.
 */
export async function startDaemon(root, workers, { cacheDir = path.join(root, 'cache'), extraArgs = [], profileDir } = {}) {
  fs.mkdirSync(root, { recursive: true });
  const sock = path.join(root, 'd.sock');
  const logFile = path.join(root, 'daemon.log');
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('MEDIACACHE_')) delete env[k];
  Object.assign(env, {
    XDG_CONFIG_HOME: path.join(root, 'xdg', 'config'),
    XDG_STATE_HOME: path.join(root, 'xdg', 'state'),
    XDG_RUNTIME_DIR: path.join(root, 'xdg', 'run'),
  });
  const prof = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const log = fs.openSync(logFile, 'w');
  const child = spawn(process.execPath, [
    ...daemonNodeArgs(), ...prof, path.join(REPO, 'bin', 'mediacached.js'),
    '--cache-dir', cacheDir, '--socket', sock, '--inbox', path.join(root, 'inbox'),
    '--concurrency', String(workers), '--per-host', String(workers), '--log-level', 'warn', '--sweep-schedule', '0 3 1 1 *',
    ...extraArgs,
  ], { stdio: ['ignore', log, log], env });
  fs.closeSync(log);
  const exited = new Promise((r) => child.once('exit', r));
  const logTail = () => {
    try {
      return fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join('\n');
    } catch {
      return '';
    }
  };
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(t);
  };
  try {
    await waitForSocket(sock, child);
  } catch (e) {
    await stop();
    const tail = logTail();
    throw new Error(`${e.message}${tail ? `\n  daemon log: ${tail}` : ''}`, { cause: e });
  }
  return { child, pid: child.pid, sock, env, cacheDir, stop, logTail, stat: () => procStat(child.pid) };
}

/** `mcctl --socket SOCK ...argv` of daemon `d`, timed (see measured()). */
export function mcctl(d, argv, opts = {}) {
  return measured(process.execPath, [path.join(REPO, 'bin', 'mcctl.js'), '--socket', d.sock, ...argv], { env: d.env, ...opts });
}

/**
 * Start mediacached on its own cache (untimed), then time `mcctl add -f
 * URLS --wait` from the client's start to its exit. The daemon's CPU is the
 * change of its utime + stime over that window, plus mcctl's own; peak RSS is
 * the daemon's VmHWM (its start-up included). `profileDir`: the daemon runs
 * with --cpu-prof and writes its profile there when it stops.
 */
export async function runDaemon(root, urlsFile, workers, { profileDir } = {}) {
  const d = await startDaemon(root, workers, { profileDir });
  try {
    const before = d.stat();
    const r = await mcctl(d, ['add', '-f', urlsFile, '--wait']);
    const after = d.stat();
    const daemonCpu = before.cpuMs !== undefined && after.cpuMs !== undefined ? after.cpuMs - before.cpuMs : undefined;
    return {
      ms: r.ms,
      cpuMs: daemonCpu !== undefined && r.cpuMs !== undefined ? daemonCpu + r.cpuMs : undefined,
      daemonCpuMs: daemonCpu,
      peakRss: after.hwm,
      cacheDir: d.cacheDir,
    };
  } catch (e) {
    const tail = d.logTail();
    throw new Error(`${e.message}${tail ? `\n  daemon log: ${tail}` : ''}`, { cause: e });
  } finally {
    await d.stop();
  }
}

/** Content files (`<md5>.<ext>` under the type folders) of a cache dir: count and bytes. */
export function cachedFiles(cacheDir) {
  let bytes = 0;
  let files = 0;
  for (const e of fs.readdirSync(cacheDir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && /^[0-9a-f]{32}\.[a-z0-9]+$/.test(e.name)) {
      bytes += fs.statSync(path.join(e.parentPath ?? e.path, e.name)).size;
      files++;
    }
  }
  return { bytes, files };
}
