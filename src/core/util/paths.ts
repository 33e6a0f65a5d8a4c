/**
 * Default locations, computed by functions from an injected environment
 * (never at module load), so the daemon, the client and tests share one
 * answer and tests can ask "what would Windows do?".
 */
import os from 'node:os';
import path from 'node:path';

export interface PlatformEnv {
  platform: NodeJS.Platform;
  env: Readonly<Record<string, string | undefined>>;
  homedir: string;
  tmpdir: string;
  uid: number;
  username: string;
}

export function currentPlatformEnv(): PlatformEnv {
  let username = 'user';
  try {
    username = os.userInfo().username;
  } catch {
    /* containers without a passwd entry */
  }
  return {
    platform: process.platform,
    env: process.env,
    homedir: os.homedir(),
    tmpdir: os.tmpdir(),
    uid: typeof process.getuid === 'function' ? process.getuid() : -1,
    username,
  };
}

/** Unix socket path limits (sun_path minus the NUL); Node truncates silently. */
export const MAX_SOCKET_PATH: Partial<Record<NodeJS.Platform, number>> = {
  linux: 107,
  darwin: 103,
  freebsd: 103,
  openbsd: 103,
};

function pathFor(p: PlatformEnv): path.PlatformPath {
  return p.platform === 'win32' ? path.win32 : path.posix;
}

function firstOfList(v: string | undefined, sep: string): string | undefined {
  if (!v) return undefined;
  const first = v.split(sep).find((s) => s.length > 0);
  return first || undefined;
}

/**
 * An XDG base directory variable, or undefined when unset, empty or relative:
 * the XDG Base Directory spec says a relative value "should be considered
 * invalid and ignored" (a relative cache dir would follow the daemon's cwd).
 */
function xdg(p: PlatformEnv, name: 'XDG_CACHE_HOME' | 'XDG_STATE_HOME' | 'XDG_CONFIG_HOME' | 'XDG_RUNTIME_DIR'): string | undefined {
  const v = p.env[name];
  return v && path.posix.isAbsolute(v) ? v : undefined;
}

/** Where cached media lives by default. */
export function defaultCacheDir(p: PlatformEnv = currentPlatformEnv()): string {
  const P = pathFor(p);
  const sd = firstOfList(p.env.CACHE_DIRECTORY, ':');
  if (sd && p.platform !== 'win32') return sd;
  if (p.platform === 'win32') {
    const base = p.env.LOCALAPPDATA || P.join(p.homedir, 'AppData', 'Local');
    return P.join(base, 'mediacache', 'cache');
  }
  if (p.platform === 'darwin') return P.join(p.homedir, 'Library', 'Caches', 'mediacache');
  return P.join(xdg(p, 'XDG_CACHE_HOME') || P.join(p.homedir, '.cache'), 'mediacache');
}

/** Where state that is not cache lives (default inbox). */
export function defaultStateDir(p: PlatformEnv = currentPlatformEnv()): string {
  const P = pathFor(p);
  const sd = firstOfList(p.env.STATE_DIRECTORY, ':');
  if (sd && p.platform !== 'win32') return sd;
  if (p.platform === 'win32') {
    const base = p.env.LOCALAPPDATA || P.join(p.homedir, 'AppData', 'Local');
    return P.join(base, 'mediacache', 'state');
  }
  if (p.platform === 'darwin') return P.join(p.homedir, 'Library', 'Application Support', 'mediacache');
  return P.join(xdg(p, 'XDG_STATE_HOME') || P.join(p.homedir, '.local', 'state'), 'mediacache');
}

/** Where the config file is looked for when --config is not given. */
export function defaultConfigFile(p: PlatformEnv = currentPlatformEnv()): string {
  const P = pathFor(p);
  if (p.platform === 'win32') {
    const base = p.env.APPDATA || P.join(p.homedir, 'AppData', 'Roaming');
    return P.join(base, 'mediacache', 'config.json');
  }
  if (p.platform === 'darwin') return P.join(p.homedir, 'Library', 'Application Support', 'mediacache', 'config.json');
  const cd = firstOfList(p.env.CONFIGURATION_DIRECTORY, ':');
  if (cd) return P.join(cd, 'config.json');
  return P.join(xdg(p, 'XDG_CONFIG_HOME') || P.join(p.homedir, '.config'), 'mediacache', 'config.json');
}

/** Default log directory (only used when a log file is asked for without a path). */
export function defaultLogDir(p: PlatformEnv = currentPlatformEnv()): string {
  const P = pathFor(p);
  const ld = firstOfList(p.env.LOGS_DIRECTORY, ':');
  if (ld && p.platform !== 'win32') return ld;
  if (p.platform === 'darwin') return P.join(p.homedir, 'Library', 'Logs', 'mediacache');
  return P.join(defaultStateDir(p), 'log');
}

/**
 * The socket the daemon listens on and the client dials, when none is given.
 * Linux: $RUNTIME_DIRECTORY (systemd) or $XDG_RUNTIME_DIR/mediacache, else
 * /tmp/mediacache-<uid>/ (the caller must create it 0700 and check its owner);
 * macOS: $TMPDIR/mediacache-<uid>/; Windows: \\.\pipe\mediacache-<user>.
 */
export function defaultSocketPath(p: PlatformEnv = currentPlatformEnv()): string {
  if (p.platform === 'win32') {
    const user = p.username.replace(/[^A-Za-z0-9._-]/g, '_') || 'user';
    return `\\\\.\\pipe\\mediacache-${user}`;
  }
  const P = path.posix;
  const rd = firstOfList(p.env.RUNTIME_DIRECTORY, ':');
  if (rd) return P.join(rd, 'mediacached.sock');
  const runtime = xdg(p, 'XDG_RUNTIME_DIR');
  if (p.platform !== 'darwin' && runtime) {
    return P.join(runtime, 'mediacache', 'mediacached.sock');
  }
  const tmp = p.platform === 'darwin' ? p.tmpdir : '/tmp';
  return P.join(tmp, `mediacache-${p.uid}`, 'mediacached.sock');
}

export function isWindowsPipe(socketPath: string): boolean {
  return /^\\\\[.?]\\pipe\\/i.test(socketPath);
}

/**
 * Refuse socket paths the kernel cannot hold. Returns an error message, or
 * undefined when the path is usable.
 */
export function checkSocketPath(socketPath: string, platform: NodeJS.Platform = process.platform): string | undefined {
  if (platform === 'win32') {
    return isWindowsPipe(socketPath) ? undefined : `on Windows the socket must be a named pipe like \\\\.\\pipe\\mediacache, not "${socketPath}"`;
  }
  const max = MAX_SOCKET_PATH[platform] ?? 103;
  const len = Buffer.byteLength(socketPath);
  if (len > max) {
    return `socket path is ${len} bytes, longer than the ${max} this platform allows (Node would silently truncate it): ${socketPath}. Pass a shorter --socket, e.g. /tmp/mediacache-${process.getuid?.() ?? 'user'}/mediacached.sock`;
  }
  return undefined;
}
