/**
 * Binding the daemon's socket safely: the directory is ours alone (0700,
 * owned by us, not a symlink), the socket is 0600, a stale socket left by a
 * crashed daemon is replaced, a live one is never stolen. Systemd socket
 * activation (LISTEN_PID/LISTEN_FDS) adopts fd 3 instead.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { currentPlatformEnv, defaultSocketPath, isWindowsPipe } from '../../core/util/paths.js';

/** A start-up refusal the user must act on; main prints it and exits 1. */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

export interface BindResult {
  /** True when the socket came from systemd (then it must not be unlinked). */
  activated: boolean;
}

function myUid(): number | undefined {
  return typeof process.getuid === 'function' ? process.getuid() : undefined;
}

/**
 * What to tell the user to do instead of using `refusedDir`: one of the
 * default socket locations, but never the folder just refused (a planted
 * /tmp/mediacache-<uid> must not be recommended back to its victim).
 */
export function socketDirAdvice(refusedDir: string, env: Readonly<Record<string, string | undefined>> = process.env): string {
  const base = currentPlatformEnv();
  const candidates = [
    defaultSocketPath({ ...base, env }),
    defaultSocketPath({ ...base, env: { ...env, RUNTIME_DIRECTORY: undefined, XDG_RUNTIME_DIR: undefined } }),
  ];
  const other = candidates.find((c) => path.resolve(path.dirname(c)) !== path.resolve(refusedDir));
  const eg = other ? `, e.g. --socket ${other} (created 0700 if missing)` : '';
  return `If you did not create ${refusedDir}, another user may have: do not use it. Give --socket a path in a folder only you can write${eg}.`;
}

/**
 * Create the socket's directory 0700, or check an existing one: a real
 * directory, owned by us, not writable by group or others (anyone who can
 * write there could replace our socket with theirs).
 */
export function prepareSocketDir(socketPath: string, env: Readonly<Record<string, string | undefined>> = process.env): void {
  if (isWindowsPipe(socketPath)) return;
  const dir = path.dirname(socketPath);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    return;
  }
  const uid = myUid();
  const fix = socketDirAdvice(dir, env);
  if (st.isSymbolicLink()) throw new StartupError(`socket directory ${dir} is a symbolic link; refusing to use it. ${fix}`);
  if (!st.isDirectory()) throw new StartupError(`socket directory ${dir} is not a directory. ${fix}`);
  if (uid !== undefined && st.uid !== uid) throw new StartupError(`socket directory ${dir} is owned by uid ${st.uid}, not by us (uid ${uid}); refusing to use it. ${fix}`);
  if (st.mode & 0o022) {
    throw new StartupError(`socket directory ${dir} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)}). If it is yours: chmod 700 ${dir}. ${fix}`);
  }
}

function listenOnce(server: net.Server, target: string | { fd: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => {
      server.removeListener('listening', onListening);
      reject(e);
    };
    const onListening = (): void => {
      server.removeListener('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(target);
  });
}

/** Connect to find out whether someone answers: 'live', 'stale' (refused) or 'gone'. */
export function probeSocket(socketPath: string, timeoutMs = 2000): Promise<'live' | 'stale' | 'gone'> {
  return new Promise((resolve) => {
    const s = net.createConnection(socketPath);
    const timer = setTimeout(() => {
      s.destroy();
      resolve('live'); // a wedged listener still owns the socket; do not steal it
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('live');
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code === 'ENOENT' ? 'gone' : 'stale');
    });
  });
}

function liveMessage(socketPath: string): string {
  return `another mediacached is already listening on ${socketPath}. Stop it first (mcctl status shows its pid), or give this one another --socket and --cache-dir.`;
}

/**
 * Refuse early, before touching the cache, when a live daemon answers on
 * `socketPath` (bindSocket checks again, race-free, when it binds).
 */
export async function refuseIfSocketLive(socketPath: string, env: Readonly<Record<string, string | undefined>> = process.env): Promise<void> {
  if (Number(env.LISTEN_PID) === process.pid) return;
  if (!isWindowsPipe(socketPath) && !fs.existsSync(socketPath)) return;
  if ((await probeSocket(socketPath)) === 'live') throw new StartupError(liveMessage(socketPath));
}

/**
 * Listen on `socketPath` (or the systemd-passed fd 3). On EADDRINUSE, a
 * socket nobody answers on is stale and replaced; one that answers belongs
 * to a live daemon and we refuse with a message naming it.
 */
export async function bindSocket(server: net.Server, socketPath: string, env: Readonly<Record<string, string | undefined>> = process.env): Promise<BindResult> {
  if (Number(env.LISTEN_PID) === process.pid && Number(env.LISTEN_FDS) >= 1) {
    await listenOnce(server, { fd: 3 });
    return { activated: true };
  }
  const pipe = isWindowsPipe(socketPath);
  prepareSocketDir(socketPath, env);
  for (let attempt = 0; ; attempt++) {
    try {
      await listenOnce(server, socketPath);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 3) throw e;
      const state = await probeSocket(socketPath);
      if (state === 'live') {
        throw new StartupError(liveMessage(socketPath));
      }
      if (pipe || state === 'gone') continue;
      const st = fs.lstatSync(socketPath, { throwIfNoEntry: false });
      if (st && !st.isSocket()) throw new StartupError(`${socketPath} exists and is not a socket; refusing to replace it. Remove it or choose another --socket.`);
      fs.rmSync(socketPath, { force: true }); // stale: left by a daemon that died without cleaning up
    }
  }
  if (!pipe) fs.chmodSync(socketPath, 0o600);
  return { activated: false };
}

/** Remove our socket file at shutdown (not for activated sockets or pipes). */
export function unlinkSocket(socketPath: string): void {
  if (isWindowsPipe(socketPath)) return;
  try {
    fs.rmSync(socketPath, { force: true });
  } catch {
    /* already gone */
  }
}
