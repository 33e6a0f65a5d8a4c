import t from 'tap';
import {
  checkSocketPath,
  currentPlatformEnv,
  defaultCacheDir,
  defaultConfigFile,
  defaultLogDir,
  defaultSocketPath,
  defaultStateDir,
  isWindowsPipe,
  MAX_SOCKET_PATH,
  type PlatformEnv,
} from '../../../src/core/util/paths.js';

// Every case injects its platform: none of these may depend on the machine
// the tests run on (and none may read process.env behind our back — the
// sandbox sets XDG_* / TMPDIR differently from what we pass).
function linux(env: Record<string, string> = {}): PlatformEnv {
  return { platform: 'linux', env, homedir: '/home/ann', tmpdir: '/var/tmp/ignored', uid: 1000, username: 'ann' };
}
function darwin(env: Record<string, string> = {}): PlatformEnv {
  return {
    platform: 'darwin',
    env,
    homedir: '/Users/ann',
    tmpdir: '/var/folders/zz/abc123/T',
    uid: 501,
    username: 'ann',
  };
}
function win(env: Record<string, string> = {}, username = 'Ann'): PlatformEnv {
  return { platform: 'win32', env, homedir: 'C:\\Users\\Ann', tmpdir: 'C:\\Temp', uid: -1, username };
}

const SYSTEMD = {
  CACHE_DIRECTORY: '/var/cache/mediacache',
  STATE_DIRECTORY: '/var/lib/mediacache',
  RUNTIME_DIRECTORY: '/run/mediacache',
  LOGS_DIRECTORY: '/var/log/mediacache',
  CONFIGURATION_DIRECTORY: '/etc/mediacache',
};

t.test('linux with XDG variables', async (t) => {
  const p = linux({
    XDG_CACHE_HOME: '/xdg/cache',
    XDG_STATE_HOME: '/xdg/state',
    XDG_CONFIG_HOME: '/xdg/config',
    XDG_RUNTIME_DIR: '/run/user/1000',
  });
  t.equal(defaultCacheDir(p), '/xdg/cache/mediacache');
  t.equal(defaultStateDir(p), '/xdg/state/mediacache');
  t.equal(defaultConfigFile(p), '/xdg/config/mediacache/config.json');
  t.equal(defaultLogDir(p), '/xdg/state/mediacache/log');
  t.equal(defaultSocketPath(p), '/run/user/1000/mediacache/mediacached.sock');
});

t.test('linux without XDG variables: home defaults, socket under /tmp/mediacache-<uid>/', async (t) => {
  const p = linux();
  t.equal(defaultCacheDir(p), '/home/ann/.cache/mediacache');
  t.equal(defaultStateDir(p), '/home/ann/.local/state/mediacache');
  t.equal(defaultConfigFile(p), '/home/ann/.config/mediacache/config.json');
  t.equal(defaultLogDir(p), '/home/ann/.local/state/mediacache/log');
  // /tmp itself, not os.tmpdir(): the fallback must be a path every client
  // computes the same way, whatever TMPDIR each shell has.
  t.equal(defaultSocketPath(p), '/tmp/mediacache-1000/mediacached.sock');
  t.equal(defaultSocketPath({ ...p, uid: 0 }), '/tmp/mediacache-0/mediacached.sock');
});

t.test('linux: empty or relative XDG values are ignored (XDG Base Directory spec)', async (t) => {
  const empty = linux({ XDG_CACHE_HOME: '', XDG_STATE_HOME: '', XDG_CONFIG_HOME: '', XDG_RUNTIME_DIR: '' });
  t.equal(defaultCacheDir(empty), '/home/ann/.cache/mediacache');
  t.equal(defaultStateDir(empty), '/home/ann/.local/state/mediacache');
  t.equal(defaultConfigFile(empty), '/home/ann/.config/mediacache/config.json');
  t.equal(defaultSocketPath(empty), '/tmp/mediacache-1000/mediacached.sock');
  // "If an implementation encounters a relative path in any of these
  // variables it should consider the path invalid and ignore it."
  const rel = linux({ XDG_CACHE_HOME: 'cache', XDG_STATE_HOME: './state', XDG_CONFIG_HOME: 'cfg', XDG_RUNTIME_DIR: 'run' });
  t.equal(defaultCacheDir(rel), '/home/ann/.cache/mediacache');
  t.equal(defaultStateDir(rel), '/home/ann/.local/state/mediacache');
  t.equal(defaultConfigFile(rel), '/home/ann/.config/mediacache/config.json');
  t.equal(defaultSocketPath(rel), '/tmp/mediacache-1000/mediacached.sock');
});

t.test('systemd *_DIRECTORY variables win over XDG', async (t) => {
  const p = linux({
    ...SYSTEMD,
    XDG_CACHE_HOME: '/xdg/cache',
    XDG_STATE_HOME: '/xdg/state',
    XDG_CONFIG_HOME: '/xdg/config',
    XDG_RUNTIME_DIR: '/run/user/1000',
  });
  t.equal(defaultCacheDir(p), '/var/cache/mediacache');
  t.equal(defaultStateDir(p), '/var/lib/mediacache');
  t.equal(defaultLogDir(p), '/var/log/mediacache');
  t.equal(defaultConfigFile(p), '/etc/mediacache/config.json');
  t.equal(defaultSocketPath(p), '/run/mediacache/mediacached.sock');
});

t.test('systemd lists (several *Directory= entries) use the first entry', async (t) => {
  // systemd joins several CacheDirectory= entries with ':'.
  const p = linux({
    CACHE_DIRECTORY: '/var/cache/mediacache:/var/cache/other',
    STATE_DIRECTORY: ':/var/lib/mediacache',
    RUNTIME_DIRECTORY: '/run/mediacache:/run/x',
    LOGS_DIRECTORY: '/var/log/mediacache:/var/log/x',
    CONFIGURATION_DIRECTORY: '/etc/mediacache:/etc/x',
  });
  t.equal(defaultCacheDir(p), '/var/cache/mediacache');
  t.equal(defaultStateDir(p), '/var/lib/mediacache');
  t.equal(defaultSocketPath(p), '/run/mediacache/mediacached.sock');
  t.equal(defaultLogDir(p), '/var/log/mediacache');
  t.equal(defaultConfigFile(p), '/etc/mediacache/config.json');
});

t.test('macOS uses ~/Library and $TMPDIR, ignores XDG', async (t) => {
  const p = darwin({ XDG_CACHE_HOME: '/xdg/cache', XDG_RUNTIME_DIR: '/run/user/501', XDG_CONFIG_HOME: '/xdg/config' });
  t.equal(defaultCacheDir(p), '/Users/ann/Library/Caches/mediacache');
  t.equal(defaultStateDir(p), '/Users/ann/Library/Application Support/mediacache');
  t.equal(defaultConfigFile(p), '/Users/ann/Library/Application Support/mediacache/config.json');
  t.equal(defaultLogDir(p), '/Users/ann/Library/Logs/mediacache');
  t.equal(defaultSocketPath(p), '/var/folders/zz/abc123/T/mediacache-501/mediacached.sock');
  t.equal(checkSocketPath(defaultSocketPath(p), 'darwin'), undefined, 'the default fits in sun_path');
});

t.test('Windows uses %LOCALAPPDATA% / %APPDATA% and a per-user named pipe', async (t) => {
  const p = win({ LOCALAPPDATA: 'D:\\Local', APPDATA: 'D:\\Roaming', CACHE_DIRECTORY: '/var/cache/x', RUNTIME_DIRECTORY: '/run/x' });
  t.equal(defaultCacheDir(p), 'D:\\Local\\mediacache\\cache', 'systemd variables mean nothing on Windows');
  t.equal(defaultStateDir(p), 'D:\\Local\\mediacache\\state');
  t.equal(defaultConfigFile(p), 'D:\\Roaming\\mediacache\\config.json');
  t.equal(defaultLogDir(p), 'D:\\Local\\mediacache\\state\\log');
  t.equal(defaultSocketPath(p), '\\\\.\\pipe\\mediacache-Ann');
  t.ok(isWindowsPipe(defaultSocketPath(p)));
  t.equal(checkSocketPath(defaultSocketPath(p), 'win32'), undefined);

  const bare = win({});
  t.equal(defaultCacheDir(bare), 'C:\\Users\\Ann\\AppData\\Local\\mediacache\\cache', 'no %LOCALAPPDATA%: under the profile');
  t.equal(defaultConfigFile(bare), 'C:\\Users\\Ann\\AppData\\Roaming\\mediacache\\config.json');

  // Pipe names may not contain backslashes; user names with spaces or domain
  // parts must still give one valid, stable name.
  t.equal(defaultSocketPath(win({}, 'CORP\\Ann Lee')), '\\\\.\\pipe\\mediacache-CORP_Ann_Lee');
  t.equal(defaultSocketPath(win({}, '')), '\\\\.\\pipe\\mediacache-user');
});

t.test('checkSocketPath refuses what the kernel would truncate', async (t) => {
  t.equal(MAX_SOCKET_PATH.linux, 107);
  t.equal(MAX_SOCKET_PATH.darwin, 103);
  const of = (n: number) => '/' + 'x'.repeat(n - 1);

  t.equal(checkSocketPath(of(107), 'linux'), undefined, '107 bytes fit on Linux');
  const l = checkSocketPath(of(108), 'linux');
  t.match(l, /108 bytes/, 'message gives the length');
  t.match(l, /107/, 'and the limit');
  t.match(l, /--socket/, 'and what to do');

  t.equal(checkSocketPath(of(103), 'darwin'), undefined, '103 bytes fit on macOS');
  t.match(checkSocketPath(of(104), 'darwin'), /104 bytes.*103/);

  // Bytes, not characters: 60 × "é" (2 bytes each): 68 characters, 128 bytes.
  const wide = '/' + 'é'.repeat(60) + '/s.sock';
  t.ok(wide.length < 107 && Buffer.byteLength(wide) > 107);
  t.match(checkSocketPath(wide, 'linux'), /socket path is \d+ bytes/);
});

t.test('checkSocketPath on Windows wants a named pipe', async (t) => {
  t.equal(checkSocketPath('\\\\.\\pipe\\mediacache-ann', 'win32'), undefined);
  t.equal(checkSocketPath('\\\\?\\pipe\\mediacache-ann', 'win32'), undefined);
  t.match(checkSocketPath('C:\\Temp\\mediacached.sock', 'win32'), /named pipe/);
  t.match(checkSocketPath('/tmp/mediacached.sock', 'win32'), /named pipe/);
  t.notOk(isWindowsPipe('/tmp/pipe/x'));
  // A pipe name is not a Unix path: no length rule applies to it elsewhere.
  t.ok(isWindowsPipe('\\\\.\\PIPE\\X'), 'case-insensitive');
});

t.test('currentPlatformEnv describes this process', async (t) => {
  const p = currentPlatformEnv();
  t.equal(p.platform, process.platform);
  t.equal(p.env, process.env);
  t.ok(p.homedir.length > 0);
  t.ok(p.username.length > 0);
  if (typeof process.getuid === 'function') t.equal(p.uid, process.getuid());
  // The real defaults are computable and the socket fits.
  t.equal(checkSocketPath(defaultSocketPath()), undefined);
});
