/**
 * The URL policy, umask and connection-limit settings through the real
 * config resolution: defaults, repeatable flags, config-file lists, and a
 * clear exit-2 message for a bad entry.
 */
import t from 'tap';
import { resolveConfig, type DaemonConfig, type ResolveInput } from '../../src/daemon/config.js';
import { DEFAULT_UMASK } from '../../src/daemon/security-config.js';

async function cfg(over: Partial<ResolveInput> & { file?: Record<string, unknown> } = {}): Promise<DaemonConfig> {
  const { file, ...rest } = over;
  const r = await resolveConfig({
    argv: [],
    env: {},
    platformEnv: { platform: 'linux', env: {}, homedir: '/home/u', tmpdir: '/tmp', uid: 1000, username: 'u' },
    readFile: () => (file ? JSON.stringify(file) : undefined),
    cwd: '/work',
    ...rest,
  });
  if (r.kind !== 'config') throw new Error('no config');
  return r.config;
}

t.test('defaults: open policy, private umask, 128 connections, 5 min idle', async (t) => {
  const c = await cfg();
  t.equal(c.urlPolicy.preset, 'open');
  t.equal(c.umask, DEFAULT_UMASK);
  t.equal(DEFAULT_UMASK, 0o077);
  t.equal(c.maxConnections, 128);
  t.equal(c.idleTimeoutMs, 300_000);
});

t.test('repeatable flags and lists in the config file', async (t) => {
  const c = await cfg({ argv: ['--url-policy', 'public', '--deny-cidr', '100.100.100.200', '--deny-cidr', 'fd00::/8', '--allow-host', 'images.intranet', '--allow-port', '443', '--umask', '007', '--max-connections', '10', '--idle-timeout', '0'] });
  t.same(c.urlPolicy, { preset: 'public', allowHosts: ['images.intranet'], denyHosts: [], allowCidrs: [], denyCidrs: ['100.100.100.200', 'fd00::/8'], allowPorts: ['443'] });
  t.equal(c.umask, 0o007);
  t.equal(c.maxConnections, 10);
  t.equal(c.idleTimeoutMs, 0);
  const f = await cfg({ file: { urlPolicy: 'allowlist', allowHosts: ['a.example', 'b.example'], allowCidrs: '10.0.0.0/8', allowPorts: [443, 8443], umask: '0027' } });
  t.same(f.urlPolicy, { preset: 'allowlist', allowHosts: ['a.example', 'b.example'], denyHosts: [], allowCidrs: ['10.0.0.0/8'], denyCidrs: [], allowPorts: ['443', '8443'] });
  t.equal(f.umask, 0o027);
});

t.test('bad values stop the daemon with a message naming what to fix', async (t) => {
  await t.rejects(cfg({ argv: ['--url-policy', 'closed'] }), { name: 'ConfigError', message: /url-policy \(from --url-policy\) must be one of open, public, allowlist/ });
  await t.rejects(cfg({ argv: ['--deny-cidr', '10.0.0.0/40'] }), { name: 'ConfigError', message: /URL policy .*"10\.0\.0\.0\/40": prefix must be 0-32/ });
  await t.rejects(cfg({ argv: ['--allow-port', 'http'] }), { name: 'ConfigError', message: /"http" is not a port/ });
  await t.rejects(cfg({ argv: ['--umask', '999'] }), { name: 'ConfigError', message: /umask \(from --umask\) must be an octal umask like 077/ });
  await t.rejects(cfg({ file: { umask: 63 } }), { name: 'ConfigError', message: /as a string/ });
  await t.rejects(cfg({ argv: ['--max-connections', '0'] }), { name: 'ConfigError', message: /max-connections .* at least 1/ });
});
