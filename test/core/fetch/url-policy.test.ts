/**
 * UrlPolicy's decisions without the network: presets, host patterns, CIDRs,
 * ports, IPv6 forms that carry an IPv4 address, and bad options.
 */
import t from 'tap';
import { UrlPolicy, embeddedIPv4 } from '../../../src/core/fetch/url-policy.js';
import { MediaCacheError } from '../../../src/core/errors.js';

const refused = (fn: () => unknown, re: RegExp) => {
  try {
    fn();
  } catch (e) {
    return e instanceof MediaCacheError && e.code === 'E_FORBIDDEN' && !e.retryable && re.test(e.message);
  }
  return false;
};

t.test('open (default) refuses nothing', async (t) => {
  const p = new UrlPolicy();
  t.ok(p.permitsAll);
  for (const a of ['127.0.0.1', '::1', '169.254.169.254', '10.1.2.3']) t.equal(p.addressRefusal(a), undefined, a);
});

t.test('public refuses every non-public address, in every IPv6 disguise', async (t) => {
  const p = new UrlPolicy({ preset: 'public' });
  t.notOk(p.permitsAll);
  const denied = [
    '127.0.0.1', '127.255.0.9', '0.0.0.0', '10.0.0.1', '172.16.5.4', '172.31.255.255', '192.168.1.1', '169.254.169.254',
    '100.64.0.1', '224.0.0.1', '255.255.255.255', '198.18.0.1', '192.0.2.1',
    '::1', '::', 'fe80::1', 'fc00::1', 'fd00:ec2::254', 'ff02::1',
    '::ffff:127.0.0.1', '::ffff:7f00:1', '::FFFF:169.254.169.254', '::ffff:10.0.0.1', '::127.0.0.1',
    '64:ff9b::7f00:1', '64:ff9b::a9fe:a9fe', '2002:7f00:1::1', '2002:a9fe:a9fe::',
  ];
  for (const a of denied) t.ok(p.addressRefusal(a), `${a} refused`);
  for (const a of ['93.184.216.34', '8.8.8.8', '2606:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808', '172.32.0.1', '100.128.0.1']) {
    t.equal(p.addressRefusal(a), undefined, `${a} allowed`);
  }
  t.ok(refused(() => p.checkTarget('[::ffff:127.0.0.1]', 80), /address ::ffff:127\.0\.0\.1 \(carrying 127\.0\.0\.1\) is in the denied range 127\.0\.0\.0\/8/), 'a bracketed literal in a URL is checked');
  t.equal(p.checkTarget('example.org', 443), 'check-addresses', 'a name is judged by its addresses');
});

t.test('embedded IPv4 forms', async (t) => {
  t.equal(embeddedIPv4('::ffff:127.0.0.1'), '127.0.0.1');
  t.equal(embeddedIPv4('::ffff:7f00:1'), '127.0.0.1');
  t.equal(embeddedIPv4('64:ff9b::a9fe:a9fe'), '169.254.169.254');
  t.equal(embeddedIPv4('2002:c0a8:0101::1'), '192.168.1.1');
  t.equal(embeddedIPv4('::1'), undefined);
  t.equal(embeddedIPv4('::'), undefined);
  t.equal(embeddedIPv4('2606:4700::1111'), undefined);
  t.equal(embeddedIPv4('127.0.0.1'), undefined);
});

t.test('host lists: exact, *.suffix, .suffix; deny beats allow; allow skips address checks', async (t) => {
  const p = new UrlPolicy({ preset: 'public', allowHosts: ['intranet.example', '*.cdn.example', 'LOCALHOST.'], denyHosts: ['.evil.example', 'bad.cdn.example'] });
  t.equal(p.checkTarget('intranet.example', 80), 'allowed');
  t.equal(p.checkTarget('Intranet.Example.', 80), 'allowed', 'case and a trailing dot do not matter');
  t.equal(p.checkTarget('a.cdn.example', 80), 'allowed');
  t.equal(p.checkTarget('cdn.example', 80), 'check-addresses', '*.x does not match x itself');
  t.equal(p.checkTarget('localhost', 80), 'allowed');
  t.ok(p.hostAllowed('localhost'));
  t.ok(refused(() => p.checkTarget('evil.example', 80), /host evil\.example is denied/));
  t.ok(refused(() => p.checkTarget('x.evil.example', 80), /denied/));
  t.ok(refused(() => p.checkTarget('bad.cdn.example', 80), /denied/), 'deny wins over a matching allow pattern');
  t.notOk(p.hostAllowed('bad.cdn.example'));
});

t.test('CIDR rules: allow beats deny; allowlist refuses the rest', async (t) => {
  const p = new UrlPolicy({ preset: 'public', allowCidrs: ['10.1.0.0/16'], denyCidrs: ['203.0.113.7', '2606:4700::/32'] });
  t.equal(p.addressRefusal('10.1.2.3'), undefined, 'allowed inside a denied preset range');
  t.match(p.addressRefusal('10.2.0.1'), /10\.0\.0\.0\/8/);
  t.match(p.addressRefusal('203.0.113.7'), /denied range/);
  t.match(p.addressRefusal('2606:4700::1111'), /2606:4700::\/32/);
  const a = new UrlPolicy({ preset: 'allowlist', allowCidrs: ['::1/128'], allowHosts: ['media.example'] });
  t.equal(a.addressRefusal('::1'), undefined);
  t.match(a.addressRefusal('8.8.8.8'), /not in an allowed range/);
  t.equal(a.checkTarget('media.example', 443), 'allowed');
  // An allowed IPv4 range is reached through its mapped form too, but not the other way round.
  const m = new UrlPolicy({ preset: 'public', allowCidrs: ['127.0.0.0/8'] });
  t.equal(m.addressRefusal('::ffff:127.0.0.1'), undefined);
  t.ok(m.addressRefusal('::1'));
});

t.test('ports: single and ranges, default ports by scheme', async (t) => {
  const p = new UrlPolicy({ allowPorts: [443, '8000-8099'] });
  t.notOk(p.permitsAll);
  t.equal(p.checkTarget('example.org', 443), 'check-addresses');
  t.equal(p.checkTarget('example.org', 8050), 'check-addresses');
  t.ok(refused(() => p.checkTarget('example.org', 80), /port 80 is not in the allowed ports/));
  t.ok(refused(() => p.checkTarget('example.org', 22), /port 22/));
});

t.test('bad options fail with E_BAD_REQUEST naming the entry', async (t) => {
  const bad = (o: ConstructorParameters<typeof UrlPolicy>[0], re: RegExp) => t.throws(() => new UrlPolicy(o), { code: 'E_BAD_REQUEST', message: re });
  bad({ preset: 'closed' as 'open' }, /preset must be one of open, public, allowlist/);
  bad({ denyCidrs: ['10.0.0.0/33'] }, /prefix must be 0-32/);
  bad({ denyCidrs: ['10.0.0/8'] }, /not an address or CIDR/);
  bad({ allowCidrs: ['example.org'] }, /not an address or CIDR/);
  bad({ allowPorts: ['0'] }, /not a port/);
  bad({ allowPorts: ['90-80'] }, /not a port/);
  bad({ allowHosts: ['http://x/'] }, /not a host name/);
  bad({ denyHosts: [''] }, /not a host name/);
});
