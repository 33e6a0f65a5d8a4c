import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import * as undici from 'undici';
import * as parts from '../../../src/core/fetch/undici-parts.js';
import { ensureBuilt, REPO_ROOT } from '../../helpers/build.js';

t.test('each part is the very export of the undici index (same class, interchangeable dispatchers)', async (t) => {
  t.equal(parts.Agent, undici.Agent);
  t.equal(parts.EnvHttpProxyAgent, undici.EnvHttpProxyAgent);
  t.equal(parts.buildConnector, undici.buildConnector);
  t.equal(parts.redirectInterceptor, undici.interceptors.redirect);
  t.ok(new undici.Agent() instanceof parts.Agent);
});

t.test('an embedded cache and daemon load neither the undici index (fetch, WebSocket, cache stores) nor the PostgreSQL driver; the dispatchers still have the API methods', async (t) => {
  await ensureBuilt();
  const probe = `
    import { createRequire } from 'node:module';
    await import(${JSON.stringify(path.join(REPO_ROOT, 'dist/core/index.js'))});
    await import(${JSON.stringify(path.join(REPO_ROOT, 'dist/daemon/daemon.js'))});
    const { Agent } = await import(${JSON.stringify(path.join(REPO_ROOT, 'dist/core/fetch/undici-parts.js'))});
    const a = new Agent();
    const methods = ['request', 'stream', 'pipeline', 'connect', 'upgrade'].filter((m) => typeof a[m] === 'function');
    const require = createRequire(${JSON.stringify(path.join(REPO_ROOT, 'package.json'))});
    const loaded = Object.keys(require.cache);
    process.stdout.write(JSON.stringify({ index: loaded.includes(require.resolve('undici')), agent: loaded.includes(require.resolve('undici/lib/dispatcher/agent.js')), pg: loaded.some((f) => f.includes('/node_modules/pg/')), methods }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe], { encoding: 'utf8', cwd: REPO_ROOT });
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { index: false, agent: true, pg: false, methods: ['request', 'stream', 'pipeline', 'connect', 'upgrade'] });
});
