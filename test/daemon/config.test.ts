import t, { type Test } from 'tap';
import { resolveConfig, changedKeys, ConfigError, DEFAULTS, type DaemonConfig, type ResolveInput } from '../../src/daemon/config.js';
import type { PlatformEnv } from '../../src/core/util/paths.js';

const linux: PlatformEnv = { platform: 'linux', env: {}, homedir: '/home/u', tmpdir: '/tmp', uid: 1000, username: 'u' };

function input(p: Partial<ResolveInput> & { files?: Record<string, string> } = {}): ResolveInput {
  const files = p.files ?? {};
  return {
    argv: p.argv ?? [],
    env: p.env ?? {},
    platformEnv: p.platformEnv ?? linux,
    readFile: p.readFile ?? ((f) => files[f]),
    cwd: p.cwd ?? '/work',
    validateCron: p.validateCron,
  };
}

async function cfg(p: Parameters<typeof input>[0] = {}): Promise<DaemonConfig> {
  const r = await resolveConfig(input(p));
  if (r.kind !== 'config') throw new Error(`expected config, got ${r.kind}`);
  return r.config;
}

async function fails(t: Test, p: Parameters<typeof input>[0], re: RegExp): Promise<void> {
  try {
    await resolveConfig(input(p));
    t.fail(`expected ConfigError matching ${re}`);
  } catch (e) {
    t.type(e, ConfigError);
    t.match((e as Error).message, re);
  }
}

t.test('defaults follow the platform (XDG on Linux)', async (t) => {
  const c = await cfg();
  t.equal(c.cacheDir, '/home/u/.cache/mediacache');
  t.equal(c.indexDir, '/home/u/.cache/mediacache/index');
  t.same(c.inboxes, ['/home/u/.local/state/mediacache/inbox']);
  t.equal(c.socket, '/tmp/mediacache-1000/mediacached.sock');
  t.equal(c.concurrency, DEFAULTS.concurrency);
  t.equal(c.timeoutMs, 30000);
  t.equal(c.sweepSchedule, '0 3 * * *');
  t.equal(c.logLevel, 'info');
  t.equal(c.graceMs, 10000);
  t.equal(c.retries, 3);
  t.equal(c.retryDelayMs, 5000);
  t.equal(c.jobHistory, 10_000);
  t.equal(c.jobHistoryAgeMs, 7 * 86_400_000);
  t.equal(c.configFile, undefined);
  t.ok(Object.isFrozen(c));

  const sd = await cfg({ platformEnv: { ...linux, env: { CACHE_DIRECTORY: '/var/cache/mediacache', RUNTIME_DIRECTORY: '/run/mediacache', XDG_RUNTIME_DIR: '/run/user/1000' } } });
  t.equal(sd.cacheDir, '/var/cache/mediacache');
  t.equal(sd.socket, '/run/mediacache/mediacached.sock');
});

t.test('precedence: flag > env > file > default', async (t) => {
  const files = { '/etc/mc.json': JSON.stringify({ concurrency: 3, perHost: 2, cacheDir: 'rel/cache', timeout: '2s' }) };
  const env = { MEDIACACHE_CONFIG: '/etc/mc.json', MEDIACACHE_CONCURRENCY: '7', MEDIACACHE_DIR: '/env/cache' };
  const c = await cfg({ files, env, argv: ['--concurrency', '9'] });
  t.equal(c.concurrency, 9, 'flag beats env and file');
  t.equal(c.cacheDir, '/env/cache', 'env beats file');
  t.equal(c.perHost, 2, 'file beats default');
  t.equal(c.timeoutMs, 2000, 'durations accept units');
  t.equal(c.configFile, '/etc/mc.json');
  t.equal(c.indexDir, '/env/cache/index', 'index follows the cache dir');

  const c2 = await cfg({ files, env: { MEDIACACHE_CONFIG: '/etc/mc.json' } });
  t.equal(c2.concurrency, 3);
  t.equal(c2.cacheDir, '/etc/rel/cache', 'relative paths in the file are relative to the file');

  const c3 = await cfg({ files, argv: ['--config', '/etc/mc.json', '--cache-dir', 'here'] });
  t.equal(c3.cacheDir, '/work/here', 'relative flag paths are relative to cwd');
});

t.test('the default config file is read when present', async (t) => {
  const c = await cfg({ files: { '/home/u/.config/mediacache/config.json': '{"logLevel":"debug","sweepSchedule":"@daily"}' } });
  t.equal(c.logLevel, 'debug');
  t.equal(c.sweepSchedule, '@daily');
  t.equal(c.configFile, '/home/u/.config/mediacache/config.json');
});

t.test('every flag has an env twin', async (t) => {
  const c = await cfg({
    env: {
      MEDIACACHE_DIR: '/c',
      MEDIACACHE_INBOX: '/a:/b::/c',
      MEDIACACHE_SOCKET: '/s/d.sock',
      MEDIACACHE_INDEX: '/i',
      MEDIACACHE_CONCURRENCY: '2',
      MEDIACACHE_PER_HOST: '1',
      MEDIACACHE_TIMEOUT: '1500',
      MEDIACACHE_MAX_FILE_SIZE: '10M',
      MEDIACACHE_SWEEP_SCHEDULE: '*/5 * * * *',
      MEDIACACHE_SWEEP_RATE: '2.5',
      MEDIACACHE_SWEEP_MAX_DURATION: '30m',
      MEDIACACHE_LOG_LEVEL: 'warn',
      MEDIACACHE_LOG_FILE: 'd.log',
      MEDIACACHE_GRACE: '500',
      MEDIACACHE_ON_DONE: '/bin/done --x',
      MEDIACACHE_ON_FAILED: '["/bin/failed"]',
      MEDIACACHE_HOOK_TIMEOUT: '5s',
      MEDIACACHE_HOOK_CONCURRENCY: '3',
      MEDIACACHE_WEBHOOK: 'http://127.0.0.1:1/h',
      MEDIACACHE_WEBHOOK_SECRET: 'k',
      MEDIACACHE_RETRIES: '0',
      MEDIACACHE_RETRY_DELAY: '2s',
      MEDIACACHE_JOB_HISTORY: '50',
      MEDIACACHE_JOB_HISTORY_AGE: '12h',
      MEDIACACHE_MAX_SIZE: '3G',
      MEDIACACHE_MIN_FREE: '512M',
      MEDIACACHE_REVALIDATE_AFTER: '7d',
      MEDIACACHE_INBOX_MAX_LINES: '5000',
      MEDIACACHE_INBOX_MAX_BYTES: '2M',
      MEDIACACHE_URL_POLICY: 'public',
      MEDIACACHE_ALLOW_HOST: 'intranet.example, *.cdn.example',
      MEDIACACHE_DENY_HOST: 'bad.example',
      MEDIACACHE_ALLOW_CIDR: '10.20.0.0/16',
      MEDIACACHE_DENY_CIDR: '203.0.113.0/24 2001:db8::/32',
      MEDIACACHE_ALLOW_PORT: '443,8000-8099',
      MEDIACACHE_UMASK: '0027',
      MEDIACACHE_MAX_CONNECTIONS: '64',
      MEDIACACHE_IDLE_TIMEOUT: '1m',
    },
  });
  t.same(
    { ...c },
    {
      cacheDir: '/c',
      indexDir: '/i',
      inboxes: ['/a', '/b', '/c'],
      socket: '/s/d.sock',
      concurrency: 2,
      perHost: 1,
      timeoutMs: 1500,
      maxFileSize: 10 * 1024 * 1024,
      sweepSchedule: '*/5 * * * *',
      sweepRate: 2.5,
      sweepMaxDuration: 30 * 60_000,
      logLevel: 'warn',
      logFile: '/work/d.log',
      graceMs: 500,
      onDone: ['/bin/done', '--x'],
      onFailed: ['/bin/failed'],
      hookTimeoutMs: 5000,
      hookConcurrency: 3,
      webhooks: ['http://127.0.0.1:1/h'],
      webhookSecret: 'k',
      retries: 0,
      retryDelayMs: 2000,
      jobHistory: 50,
      jobHistoryAgeMs: 12 * 3_600_000,
      maxSize: 3 * 1024 ** 3,
      minFree: 512 * 1024 ** 2,
      revalidateAfter: 7 * 86_400_000,
      inboxMaxLines: 5000,
      inboxMaxBytes: 2 * 1024 * 1024,
      urlPolicy: {
        preset: 'public',
        allowHosts: ['intranet.example', '*.cdn.example'],
        denyHosts: ['bad.example'],
        allowCidrs: ['10.20.0.0/16'],
        denyCidrs: ['203.0.113.0/24', '2001:db8::/32'],
        allowPorts: ['443', '8000-8099'],
      },
      umask: 0o027,
      maxConnections: 64,
      idleTimeoutMs: 60_000,
    },
  );
});

t.test('flags: repeatable --inbox, all SPEC flags accepted', async (t) => {
  const c = await cfg({
    argv: ['--inbox', '/x', '--inbox', 'y', '--index', '/idx', '--per-host', '3', '--max-file-size', '1024', '--sweep-max-duration', '2h', '--grace', '0', '--log-file', '/l.log', '--sweep-rate', '0'],
  });
  t.same(c.inboxes, ['/x', '/work/y']);
  t.equal(c.indexDir, '/idx');
  t.equal(c.perHost, 3);
  t.equal(c.maxFileSize, 1024);
  t.equal(c.sweepMaxDuration, 7_200_000);
  t.equal(c.graceMs, 0);
  t.equal(c.logFile, '/l.log');
  t.equal(c.sweepRate, 0);
  const inboxFile = await cfg({ files: { '/m.json': '{"inbox":["a","/b"]}' }, argv: ['--config', '/m.json'] });
  t.same(inboxFile.inboxes, ['/a', '/b']);
});

t.test('Windows: path lists split on ";" and the socket is a pipe', async (t) => {
  const win: PlatformEnv = { platform: 'win32', env: { LOCALAPPDATA: 'C:\\Users\\u\\AppData\\Local' }, homedir: 'C:\\Users\\u', tmpdir: 'C:\\Temp', uid: -1, username: 'u' };
  const c = await cfg({ platformEnv: win, cwd: 'C:\\work', env: { MEDIACACHE_INBOX: 'C:\\a;D:\\b' } });
  t.same(c.inboxes, ['C:\\a', 'D:\\b']);
  t.equal(c.socket, '\\\\.\\pipe\\mediacache-u');
  await fails(t, { platformEnv: win, cwd: 'C:\\work', argv: ['--socket', 'C:\\x.sock'] }, /named pipe/);
});

t.test('help and version', async (t) => {
  const h = await resolveConfig(input({ argv: ['--help'] }));
  t.equal(h.kind, 'help');
  if (h.kind === 'help') {
    for (const f of ['--cache-dir', '--inbox', '--socket', '--index', '--concurrency', '--per-host', '--timeout', '--max-file-size', '--sweep-schedule', '--sweep-rate', '--sweep-max-duration', '--log-level', '--log-file', '--grace', '--config']) {
      t.match(h.text, f, `help mentions ${f}`);
    }
  }
  t.equal((await resolveConfig(input({ argv: ['--version'] }))).kind, 'version');
});

t.test('bad input is refused with a message that says how to fix it', async (t) => {
  await fails(t, { argv: ['--concurrency', 'abc'] }, /concurrency \(from --concurrency\) must be a whole number, got "abc"/);
  await fails(t, { argv: ['--concurrency', '0'] }, /concurrency .* must be at least 1, got 0/);
  await fails(t, { env: { MEDIACACHE_CONCURRENCY: '2.5' } }, /from MEDIACACHE_CONCURRENCY\) must be a whole number/);
  await fails(t, { argv: ['--concurrency'] }, /concurrency/);
  await fails(t, { argv: ['--bogus', '1'] }, /Unknown argument.*bogus.*--help/);
  await fails(t, { argv: ['extra'] }, /Unknown argument: extra/);
  await fails(t, { argv: ['--log-level', 'loud'] }, /log-level .* must be one of error, warn, info/);
  await fails(t, { argv: ['--timeout', '5 parsecs'] }, /timeout .* like 30s, 30m, 2h/);
  await fails(t, { argv: ['--max-file-size', 'big'] }, /max-file-size .* number of bytes/);
  await fails(t, { argv: ['--config', '/nope.json'] }, /config file \/nope.json \(from --config\) does not exist/);
  await fails(t, { files: { '/m.json': '{"concurency": 4}' }, argv: ['--config', '/m.json'] }, /unknown key "concurency" in config file \/m.json\. Did you mean "concurrency"\?/);
  await fails(t, { files: { '/m.json': '{\n  "concurrency": 4,\n}' }, argv: ['--config', '/m.json'] }, /config file \/m.json is not valid JSON: .*\(line 3, column 1\)/);
  await fails(t, { files: { '/m.json': '{"log-level": "debug"}' }, argv: ['--config', '/m.json'] }, /Did you mean "logLevel"/);
  await fails(t, { files: { '/m.json': '[1]' }, argv: ['--config', '/m.json'] }, /must hold a JSON object/);
  await fails(t, { files: { '/m.json': '{"concurrency": "many"}' }, argv: ['--config', '/m.json'] }, /"concurrency" in \/m.json\) must be a whole number/);
  await fails(t, { files: { '/m.json': '{"cacheDir": 5}' }, argv: ['--config', '/m.json'] }, /cache-dir .* must be a path string/);
  const long = '/tmp/' + 'x'.repeat(120) + '/d.sock';
  await fails(t, { argv: ['--socket', long] }, /socket path is \d+ bytes, longer than the 107/);
  await fails(
    t,
    { argv: ['--sweep-schedule', 'every tuesday'], validateCron: (e) => (e.split(' ').length === 5 ? undefined : 'expected 5 fields') },
    /sweep-schedule "every tuesday" is not a valid cron expression: expected 5 fields/,
  );
  await fails(t, { readFile: () => { throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' }); } }, /cannot read config file .*permission denied/);
});

t.test('changedKeys lists what differs', async (t) => {
  const a = await cfg();
  const b = await cfg({ argv: ['--concurrency', '2', '--inbox', '/z'] });
  t.same(changedKeys(a, b).sort(), ['concurrency', 'inboxes']);
  t.same(changedKeys(a, a), []);
});

t.test('--database: flag, env and file; validated without echoing it; per-daemon state dir by default', async (t) => {
  const url = 'postgres://media:s3cret@db.internal:5433/media';
  const c = await cfg({ argv: ['--database', url, '--cache-dir', '/mnt/shared', '--socket', '/run/a.sock'] });
  t.equal(c.database, url);
  t.match(c.indexDir, /^\/mnt\/shared\/\.nodes\/[A-Za-z0-9._-]+-[0-9a-f]{8}$/, 'state dir of its own under the shared root');
  const other = await cfg({ argv: ['--database', url, '--cache-dir', '/mnt/shared', '--socket', '/run/b.sock'] });
  t.not(other.indexDir, c.indexDir, 'two daemons on one host get two state dirs');
  t.equal((await cfg({ argv: ['--database', url, '--index', '/var/lib/mc'] })).indexDir, '/var/lib/mc', '--index still wins');
  t.equal((await cfg({ env: { MEDIACACHE_DATABASE: url } })).database, url);
  t.equal((await cfg({ argv: ['--config', '/c.json'], files: { '/c.json': JSON.stringify({ database: url }) } })).database, url);
  t.equal((await cfg()).database, undefined, 'embedded by default');
  await fails(t, { argv: ['--database', 'mysql://root:hunter2@db/x'] }, /^(?!.*hunter2).*postgres:\/\/ or postgresql:\/\/ connection URL/);
});

t.test('a size quota with --database is refused with E_BAD_REQUEST (not ignored), from flag, env and file', async (t) => {
  const url = 'postgres://media:s3cret@db.internal:5433/media';
  const refused = async (p: Parameters<typeof input>[0], key: RegExp): Promise<void> => {
    try {
      await resolveConfig(input(p));
      t.fail('expected a refusal');
    } catch (e) {
      t.type(e, ConfigError);
      t.equal((e as ConfigError).code, 'E_BAD_REQUEST', 'a stable code');
      t.equal((e as ConfigError).exitCode, 2);
      t.match((e as Error).message, key);
      t.match((e as Error).message, /not supported with --database/);
      t.notMatch((e as Error).message, /s3cret/, 'the URL is not echoed');
    }
  };
  await refused({ argv: ['--database', url, '--max-size', '50G'] }, /^max-size/);
  await refused({ argv: ['--database', url, '--min-free', '5G'] }, /^min-free/);
  await refused({ env: { MEDIACACHE_DATABASE: url, MEDIACACHE_MAX_SIZE: '1M' } }, /^max-size/);
  await refused({ argv: ['--config', '/c.json'], files: { '/c.json': JSON.stringify({ database: url, minFree: 1024 }) } }, /^min-free/);
  const zero = await cfg({ argv: ['--database', url, '--max-size', '0', '--min-free', '0'] });
  t.equal(zero.database, url, 'an explicit 0 (no quota) is fine');
  t.equal((await cfg({ argv: ['--max-size', '50G'] })).maxSize, 50 * 1024 ** 3, 'a quota stays fine without --database');
});
