/**
 * The URL policy through real downloads: loopback origins on 127.0.0.1 and
 * [::1], refusals on the first hop, on a redirect hop, after name
 * resolution (a name mapped by an injected lookup: no real DNS here) and by
 * port; refused hops never reach the origin and are not retried.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type dns from 'node:dns';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { MediaCacheError } from '../../../src/core/errors.js';
import type { UrlPolicyOptions } from '../../../src/core/fetch/url-policy.js';
import { startOrigin, fixture } from '../../helpers/origin.js';

const v4 = await startOrigin('127.0.0.1');
const v6 = await startOrigin('::1');
t.teardown(() => Promise.all([v4.close(), v6.close()]));
const png = fixture('sample.png');
v4.route('/img.png', { headers: { 'content-type': 'image/png' }, body: png });
v6.route('/img.png', { headers: { 'content-type': 'image/png' }, body: png });
v6.route('/to-v4', { status: 302, headers: { location: v4.url('/img.png') } });
const v4Port = Number(new URL(v4.base).port);
v6.route('/to-mapped', { status: 302, headers: { location: `http://[::ffff:127.0.0.1]:${v4Port}/img.png` } });
v6.route('/to-name', { status: 302, headers: { location: `http://media.test:${v4Port}/img.png` } });

/** Names only this test knows, as an /etc/hosts would. */
const HOSTS: Record<string, Array<{ address: string; family: number }>> = {
  'media.test': [{ address: '127.0.0.1', family: 4 }],
  'dual.test': [
    { address: '::1', family: 6 },
    { address: '127.0.0.1', family: 4 },
  ],
};
let lookups = 0;
const lookup = ((host: string, opts: dns.LookupOptions, cb: (err: Error | null, a: unknown, f?: number) => void) => {
  lookups++;
  const found = HOSTS[host];
  if (!found) return cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' }), undefined);
  if (opts.all) return cb(null, found);
  cb(null, found[0]!.address, found[0]!.family);
}) as unknown as typeof dns.lookup;

async function open(t: Test, urlPolicy: UrlPolicyOptions | undefined): Promise<MediaCache> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-policy-'));
  const cache = await MediaCache.open({ cacheDir: dir, urlPolicy, lookup, retries: 2, retryBaseDelayMs: 1, timeoutMs: 5000 });
  t.teardown(async () => {
    await cache.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return cache;
}

async function forbidden(t: Test, p: Promise<unknown>, re: RegExp): Promise<void> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  t.type(e, MediaCacheError);
  t.equal((e as MediaCacheError).code, 'E_FORBIDDEN', (e as Error).message);
  t.match((e as Error).message, re);
}

t.test('without a policy loopback is fetched (the default stays permissive)', async (t) => {
  const cache = await open(t, undefined);
  t.equal((await cache.download(v4.url('/img.png'))).fileSize, png.length);
  t.equal((await cache.download(v6.url('/to-v4'))).fileSize, png.length, 'redirect [::1] → 127.0.0.1');
});

t.test('deny 127.0.0.0/8: a direct URL and a redirect from an allowed origin are refused', async (t) => {
  const cache = await open(t, { denyCidrs: ['127.0.0.0/8'] });
  const before = v4.totalHits();
  await forbidden(t, cache.download(v4.url('/img.png?direct')), /address 127\.0\.0\.1 is in the denied range 127\.0\.0\.0\/8/);
  const hops = v6.hits('/to-v4');
  await forbidden(t, cache.download(v6.url('/to-v4')), /127\.0\.0\.0\/8/);
  t.equal(v6.hits('/to-v4'), hops + 1, 'the allowed first hop was fetched once (no retry of a refusal)');
  t.equal(v4.totalHits(), before, 'the denied origin never saw a request');
  t.equal((await cache.download(v6.url('/img.png'))).fileSize, png.length, '[::1] itself is allowed');
});

t.test('an IPv4-mapped IPv6 address cannot bypass an IPv4 deny', async (t) => {
  const cache = await open(t, { denyCidrs: ['127.0.0.0/8'] });
  const before = v4.totalHits();
  await forbidden(t, cache.download(`http://[::ffff:127.0.0.1]:${v4Port}/img.png`), /address ::ffff:7f00:1 \(carrying 127\.0\.0\.1\) is in the denied range 127\.0\.0\.0\/8/);
  await forbidden(t, cache.download(v6.url('/to-mapped')), /denied range 127\.0\.0\.0\/8/);
  t.equal(v4.totalHits(), before);
});

t.test('a host name is judged by the address it resolves to, on the first hop and after a redirect', async (t) => {
  const cache = await open(t, { denyCidrs: ['127.0.0.0/8'] });
  const before = v4.totalHits();
  await forbidden(t, cache.download(`http://media.test:${v4Port}/img.png`), /media\.test resolves only to refused addresses \(127\.0\.0\.1 is in the denied range/);
  await forbidden(t, cache.download(v6.url('/to-name')), /media\.test resolves only to refused/);
  t.equal(v4.totalHits(), before, 'no connection to the denied address');
  // A name with an allowed and a refused address connects only to the allowed one.
  const rec = await cache.download(`http://dual.test:${Number(new URL(v6.base).port)}/img.png`);
  t.equal(rec.fileSize, png.length);
});

t.test('the lookup used to judge is the one used to connect', async (t) => {
  const cache = await open(t, { preset: 'public', allowCidrs: ['127.0.0.0/8'] });
  const n = lookups;
  const hits = v4.totalHits();
  t.equal((await cache.download(`http://media.test:${v4Port}/img.png?x=1`)).fileSize, png.length, 'fetched through the injected name');
  t.equal(lookups - n, 1, 'one lookup for the connection');
  t.equal(v4.totalHits(), hits + 1);
});

t.test('preset public refuses loopback by literal and by name (localhost via /etc/hosts)', async (t) => {
  const cache = await open(t, { preset: 'public' });
  await forbidden(t, cache.download(v4.url('/img.png?p')), /127\.0\.0\.0\/8/);
  await forbidden(t, cache.download(v6.url('/img.png?p')), /::1\/128/);
  await forbidden(t, cache.download(`http://media.test:${v4Port}/img.png?p`), /refused addresses/);
  const allowed = await open(t, { preset: 'public', allowHosts: ['media.test'] });
  t.equal((await allowed.download(`http://media.test:${v4Port}/img.png?allowed`)).fileSize, png.length, 'an allow-listed name skips the address check');
});

t.test('localhost resolved by the system resolver is refused by the public preset', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-policy-'));
  const cache = await MediaCache.open({ cacheDir: dir, urlPolicy: { preset: 'public' }, retries: 0 });
  t.teardown(async () => {
    await cache.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await forbidden(t, cache.download(`http://localhost:${v4Port}/img.png?lh`), /localhost resolves only to refused addresses/);
});

t.test('port policy', async (t) => {
  const cache = await open(t, { allowPorts: [443] });
  await forbidden(t, cache.download(v4.url('/img.png?port')), new RegExp(`port ${v4Port} is not in the allowed ports`));
  const ok = await open(t, { allowPorts: [`${v4Port}-${v4Port}`] });
  t.equal((await ok.download(v4.url('/img.png?port2'))).fileSize, png.length);
  // A redirect to another port is checked too.
  await forbidden(t, ok.download(v6.url('/to-v4')), /is not in the allowed ports/);
});

t.test('host deny list applies to redirects', async (t) => {
  const cache = await open(t, { denyHosts: ['media.test'] });
  await forbidden(t, cache.download(v6.url('/to-name')), /host media\.test is denied/);
});
