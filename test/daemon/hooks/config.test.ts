import t, { type Test } from 'tap';
import { ConfigError, DEFAULTS, resolveConfig, type DaemonConfig, type ResolveInput } from '../../../src/daemon/config.js';
import { parseCommand, splitCommand } from '../../../src/daemon/hooks/argv.js';
import type { PlatformEnv } from '../../../src/core/util/paths.js';

const linux: PlatformEnv = { platform: 'linux', env: {}, homedir: '/home/u', tmpdir: '/tmp', uid: 1000, username: 'u' };
type In = { argv?: string[]; env?: Record<string, string>; files?: Record<string, string> };
const input = (p: In): ResolveInput => ({ argv: p.argv ?? [], env: p.env ?? {}, platformEnv: linux, readFile: (f) => p.files?.[f], cwd: '/work' });

async function cfg(p: In): Promise<DaemonConfig> {
  const r = await resolveConfig(input(p));
  if (r.kind !== 'config') throw new Error(r.kind);
  return r.config;
}
async function fails(t: Test, p: In, re: RegExp): Promise<void> {
  await t.rejects(resolveConfig(input(p)), ConfigError);
  await resolveConfig(input(p)).catch((e: Error) => t.match(e.message, re));
}

t.test('splitCommand: words, quotes, escapes, no expansion', async (t) => {
  t.same(splitCommand('/usr/bin/hook --flag  value'), ['/usr/bin/hook', '--flag', 'value']);
  t.same(splitCommand(`"/opt/my hook" 'a b' c\\ d "x\\"y" $HOME *`), ['/opt/my hook', 'a b', 'c d', 'x"y', '$HOME', '*']);
  t.same(splitCommand(`a '' b`), ['a', '', 'b'], 'an empty quoted word is a word');
  t.same(splitCommand(`ab"cd"'ef'`), ['abcdef'], 'adjacent quoted parts join');
  t.throws(() => splitCommand(`a 'b`), /unterminated single/);
  t.throws(() => splitCommand(`a "b`), /unterminated double/);
  t.throws(() => splitCommand(`a \\`), /trailing backslash/);
});

t.test('parseCommand: JSON arrays and strings', async (t) => {
  t.same(parseCommand(['/bin/x', 'a b']), ['/bin/x', 'a b']);
  t.same(parseCommand('["/bin/x", "a b"]'), ['/bin/x', 'a b'], 'JSON array text from a flag');
  t.throws(() => parseCommand(''), /names no program/);
  t.throws(() => parseCommand([]), /names no program/);
  t.throws(() => parseCommand([1]), /list of strings/);
  t.throws(() => parseCommand('[oops'), /does not parse/);
  t.throws(() => parseCommand({}), /command line or a JSON list/);
});

t.test('hook flags, env and config keys', async (t) => {
  const d = await cfg({});
  t.equal(d.onDone, undefined);
  t.same(d.webhooks, []);
  t.equal(d.hookTimeoutMs, DEFAULTS.hookTimeoutMs);
  t.equal(d.hookConcurrency, DEFAULTS.hookConcurrency);

  const f = await cfg({
    argv: ['--on-done', "/bin/hook 'arg one'", '--webhook', 'http://127.0.0.1:9/a', '--webhook', 'https://example.org/b?token=x', '--hook-timeout', '5s', '--hook-concurrency', '3', '--webhook-secret', 'k'],
  });
  t.same(f.onDone, ['/bin/hook', 'arg one']);
  t.same(f.webhooks, ['http://127.0.0.1:9/a', 'https://example.org/b?token=x'], 'repeatable');
  t.equal(f.hookTimeoutMs, 5000);
  t.equal(f.hookConcurrency, 3);
  t.equal(f.webhookSecret, 'k');

  const e = await cfg({ env: { MEDIACACHE_ON_FAILED: '["/bin/f", "x y"]', MEDIACACHE_WEBHOOK: 'http://a/1  http://b/2', MEDIACACHE_WEBHOOK_SECRET: 'envkey' } });
  t.same(e.onFailed, ['/bin/f', 'x y']);
  t.same(e.webhooks, ['http://a/1', 'http://b/2'], 'env: space-separated list');
  t.equal(e.webhookSecret, 'envkey');

  const files = { '/etc/mc.json': JSON.stringify({ onDone: ['/bin/d', '--json'], webhooks: ['http://c/3'], webhookSecretFile: 'secret.txt', hookTimeout: '1m' }), '/etc/secret.txt': 'filekey\n' };
  const c = await cfg({ env: { MEDIACACHE_CONFIG: '/etc/mc.json' }, files });
  t.same(c.onDone, ['/bin/d', '--json']);
  t.same(c.webhooks, ['http://c/3']);
  t.equal(c.webhookSecret, 'filekey', 'secret read from the file (relative to the config file), newline dropped');
  t.equal(c.webhookSecretFile, '/etc/secret.txt');
  t.equal(c.hookTimeoutMs, 60_000);
  t.same((await cfg({ argv: ['--webhook', 'http://x/'], env: { MEDIACACHE_CONFIG: '/etc/mc.json' }, files })).webhooks, ['http://x/'], 'flag beats file');
});

t.test('bad hook settings stop the daemon with a clear message', async (t) => {
  await fails(t, { argv: ['--webhook', 'ftp://x/'] }, /webhook \(from --webhook\) must be an http:\/\/ or https:\/\/ URL/);
  await fails(t, { argv: ['--webhook', 'not a url'] }, /must be an http/);
  await fails(t, { argv: ['--on-done', "a 'b"] }, /on-done \(from --on-done\) unterminated single quote/);
  await fails(t, { argv: ['--hook-concurrency', '0'] }, /at least 1/);
  await fails(t, { argv: ['--webhook-secret-file', '/nope'] }, /webhook secret file \/nope does not exist/);
  await fails(t, { argv: ['--webhook-secret-file', '/s', '--webhook-secret', 'x'], files: { '/s': 'k' } }, /not both/);
  await fails(t, { argv: ['--webhook-secret-file', '/s'], files: { '/s': '\n' } }, /is empty/);
  await fails(t, { files: { '/etc/mc.json': JSON.stringify({ onDone: [] }) }, env: { MEDIACACHE_CONFIG: '/etc/mc.json' } }, /names no program/);
});
