import t from 'tap';
import { createHmac } from 'node:crypto';
import { sign, verifySignature } from '../../../src/daemon/hooks/sign.js';

const secret = 's3cret';
const body = JSON.stringify({ id: 'x', type: 'job.done', data: { url: 'http://a/b.png' } });
const now = 1_700_000_000_000;
const ts = String(now / 1000);

t.test('the signature is HMAC-SHA256 over "<timestamp>.<body>"', async (t) => {
  const want = 'sha256=' + createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex');
  t.equal(sign(secret, ts, body), want);
  t.equal(sign(secret, Number(ts), Buffer.from(body)), want, 'number timestamp and Buffer body sign the same');
});

t.test('a right signature verifies; tampering is detected', async (t) => {
  const signature = sign(secret, ts, body);
  t.same(verifySignature({ secret, body, timestamp: ts, signature, now }), { ok: true, timestamp: Number(ts) });
  t.same(verifySignature({ secret, body, timestamp: [ts], signature: [signature.toUpperCase().replace('SHA256', 'sha256')], now }).ok, true, 'header arrays and upper-case hex accepted');

  const tampered = body.replace('b.png', 'c.png');
  t.same(verifySignature({ secret, body: tampered, timestamp: ts, signature, now }), { ok: false, reason: 'mismatch' }, 'tampered body');
  t.same(verifySignature({ secret: 'other', body, timestamp: ts, signature, now }), { ok: false, reason: 'mismatch' }, 'wrong secret');
  t.same(verifySignature({ secret, body, timestamp: String(Number(ts) + 1), signature, now }), { ok: false, reason: 'mismatch' }, 'timestamp changed (re-dated replay)');
  t.same(verifySignature({ secret, body, timestamp: ts, signature, now: now + 301_000 }), { ok: false, reason: 'stale' }, 'stale timestamp (old replay)');
  t.same(verifySignature({ secret, body, timestamp: ts, signature, now: now - 301_000 }), { ok: false, reason: 'stale' }, 'timestamp from the future');
  t.equal(verifySignature({ secret, body, timestamp: ts, signature, now: now + 290_000 }).ok, true, 'inside the default 300 s window');
  t.same(verifySignature({ secret, body, timestamp: ts, signature, now: now + 20_000, toleranceSec: 10 }), { ok: false, reason: 'stale' }, 'custom window');
  t.same(verifySignature({ secret, body, timestamp: undefined, signature, now }), { ok: false, reason: 'missing' });
  t.same(verifySignature({ secret, body, timestamp: ts, signature: undefined, now }), { ok: false, reason: 'missing' });
  t.same(verifySignature({ secret, body, timestamp: ts, signature: 'sha1=abc', now }), { ok: false, reason: 'malformed' });
  t.same(verifySignature({ secret, body, timestamp: 'yesterday', signature, now }), { ok: false, reason: 'malformed' });
});
