// A private, throw-away PostgreSQL server for tests and benches: `initdb` into
// a temp folder, `pg_ctl start` listening on a Unix socket in that folder only
// (listen_addresses='', so no TCP port is taken and parallel test files never
// collide), stopped and removed by close(). Plain JS so bench/*.js can use it;
// test/helpers/postgres.ts wraps it for tap.
//
// PostgreSQL refuses to run as root; CI runs as root, so when uid is 0 the
// server programs run as the `postgres` system user (created by Debian's
// package) and the temp folder is owned by it.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const PORT = 5432; // only names the socket file (.s.PGSQL.5432) inside the private folder

/** Folder holding initdb and pg_ctl: $PG_BINDIR, the newest /usr/lib/postgresql/<v>/bin, else PATH. */
export function findPgBinDir() {
  const fromEnv = process.env.PG_BINDIR;
  if (fromEnv && fs.existsSync(path.join(fromEnv, 'initdb'))) return fromEnv;
  const base = '/usr/lib/postgresql';
  let versions = [];
  try {
    versions = fs.readdirSync(base).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a));
  } catch {
    // not Debian's layout
  }
  for (const v of versions) {
    const dir = path.join(base, v, 'bin');
    if (fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'pg_ctl'))) return dir;
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'pg_ctl'))) return dir;
  }
  return undefined;
}

/** uid/gid to run the server as: ourselves, or `postgres` when we are root. */
function serverUser() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  let uid;
  let gid;
  try {
    uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  } catch {
    throw new Error('running as root and there is no "postgres" user to run PostgreSQL as (install Debian\'s postgresql package)');
  }
  return { uid, gid };
}

function run(bin, args, user, { timeoutMs = 120_000 } = {}) {
  return new Promise((resolve, reject) => {
    const opts = { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C', TZ: 'UTC' } };
    if (user) Object.assign(opts, user);
    const child = spawn(bin, args, opts);
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${path.basename(bin)} ${args.join(' ')} exited ${code}: ${out.trim()}`));
    });
  });
}

/**
 * Start a private server. Options: `durable` (default false: fsync and
 * full_page_writes off, which is safe against a server crash, only not
 * against the machine losing power); `settings`: more `name=value` server
 * settings (later ones win).
 */
export async function startCluster({ durable = false, settings: extra = [] } = {}) {
  const binDir = findPgBinDir();
  if (!binDir) throw new Error('PostgreSQL server programs (initdb, pg_ctl) not found: install the postgresql package or set PG_BINDIR');
  const user = serverUser();
  // /tmp rather than $TMPDIR when root: the postgres user must be able to reach the folder.
  const root = fs.mkdtempSync(path.join(user ? '/tmp' : os.tmpdir(), 'mc-pg-'));
  if (user) fs.chownSync(root, user.uid, user.gid);
  const dataDir = path.join(root, 'data');
  const logFile = path.join(root, 'server.log');
  const initdb = path.join(binDir, 'initdb');
  const pgCtl = path.join(binDir, 'pg_ctl');
  await run(initdb, ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync'], user);
  const settings = [
    `-k ${root}`,
    "-c listen_addresses=''",
    `-p ${PORT}`,
    '-c max_connections=60',
    '-c shared_buffers=32MB',
    // fsync off only: a commit still writes its WAL to the kernel before returning
    // (synchronous_commit stays on), so a server crash (stop -m immediate) loses nothing.
    ...(durable ? [] : ['-c fsync=off', '-c full_page_writes=off']),
    ...extra.map((kv) => `-c ${kv}`),
  ].join(' ');
  let running = false;
  const onExit = () => {
    // Last resort when the process ends without close(): no orphaned server.
    if (running) spawnSync(pgCtl, ['-D', dataDir, 'stop', '-m', 'immediate', '-w'], { stdio: 'ignore', ...(user ?? {}) });
  };
  process.once('exit', onExit);

  const cluster = {
    binDir,
    root,
    dataDir,
    socketDir: root,
    port: PORT,
    get running() {
      return running;
    },
    /** node-postgres config for one database. */
    config(database = 'postgres') {
      return { host: root, port: PORT, user: 'postgres', database };
    },
    connectionString(database = 'postgres') {
      return `postgresql://postgres@/${encodeURIComponent(database)}?host=${encodeURIComponent(root)}&port=${PORT}`;
    },
    async start() {
      await run(pgCtl, ['-D', dataDir, '-l', logFile, '-w', '-t', '120', '-o', settings, 'start'], user);
      running = true;
    },
    /** mode: 'fast' (clean shutdown, disconnects clients) or 'immediate' (like a crash). */
    async stop(mode = 'fast') {
      if (!running) return;
      await run(pgCtl, ['-D', dataDir, '-w', '-t', '120', '-m', mode, 'stop'], user);
      running = false;
    },
    async restart(mode = 'fast') {
      await cluster.stop(mode);
      await cluster.start();
    },
    /** The server's log, for failure messages. */
    log() {
      try {
        return fs.readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
    async close() {
      try {
        await cluster.stop('immediate');
      } finally {
        process.removeListener('exit', onExit);
        fs.rmSync(root, { recursive: true, force: true });
      }
    },
  };
  try {
    await cluster.start();
  } catch (e) {
    await cluster.close().catch(() => {});
    throw e;
  }
  return cluster;
}
