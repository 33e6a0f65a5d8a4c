/**
 * Which hosts, addresses and ports the cache may fetch from. Anyone who can
 * write an inbox (or reach the socket) chooses the URLs; without a policy
 * they can make the daemon fetch loopback, private and link-local addresses
 * (a cloud metadata service, an admin page on localhost), also by a
 * redirect or a DNS name that resolves there.
 *
 * A decision is made per hop, twice (dispatcher.ts wires both):
 * - on the URL before connecting: port, host lists, and an IP literal's
 *   address (this also covers hops sent through an HTTP proxy, where the
 *   proxy resolves names);
 * - on every address a host name resolves to, inside the connect call, so
 *   the address judged is the address connected to (no second lookup an
 *   attacker's DNS could answer differently).
 *
 * Rules, first match wins:
 *   1. `allowPorts` given and the port is not in it     → refused
 *   2. host name in `denyHosts`                          → refused
 *   3. host name in `allowHosts`                         → allowed (its addresses are not checked)
 *   4. address in `allowCidrs`                           → allowed
 *   5. address in `denyCidrs` or in the preset's ranges  → refused
 *   6. preset `allowlist`                                → refused
 *   7. otherwise                                         → allowed
 * Presets: `open` (default: no address refused), `public` (everything that
 * is not a public unicast address: loopback, private, link-local with the
 * 169.254.169.254 metadata address, CGNAT, multicast, reserved,
 * documentation ranges, unique-local IPv6), `allowlist` (only the allow
 * lists). IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible, NAT64
 * (64:ff9b::/96) and 6to4 (2002::/16) IPv6 addresses are also judged by
 * the IPv4 address they carry, so they cannot smuggle a denied one through.
 */
import net from 'node:net';
import { MediaCacheError } from '../errors.js';

export const URL_POLICY_PRESETS = ['open', 'public', 'allowlist'] as const;
export type UrlPolicyPreset = (typeof URL_POLICY_PRESETS)[number];

export interface UrlPolicyOptions {
  /** Default 'open'. */
  preset?: UrlPolicyPreset;
  /** Exact names (`cdn.example.org`), `*.example.org` (subdomains only) or `.example.org` (the name and its subdomains). */
  allowHosts?: readonly string[];
  denyHosts?: readonly string[];
  /** `10.0.0.0/8`, `fd00::/8`, or one address. */
  allowCidrs?: readonly string[];
  denyCidrs?: readonly string[];
  /** Ports (`443`) or ranges (`8000-8099`); empty or absent: any port. */
  allowPorts?: ReadonlyArray<number | string>;
}

/** Everything but public unicast space (IANA special-purpose registries). */
const NON_PUBLIC_V4 = [
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12',
  '192.0.0.0/24', '192.0.2.0/24', '192.88.99.0/24', '192.168.0.0/16', '198.18.0.0/15', '198.51.100.0/24',
  '203.0.113.0/24', '224.0.0.0/4', '240.0.0.0/4',
];
const NON_PUBLIC_V6 = ['::/128', '::1/128', '100::/64', '2001:db8::/32', 'fc00::/7', 'fe80::/10', 'fec0::/10', 'ff00::/8'];
export const PUBLIC_PRESET_DENY: readonly string[] = [...NON_PUBLIC_V4, ...NON_PUBLIC_V6];

interface Cidr {
  text: string;
  family: 'ipv4' | 'ipv6';
  list: net.BlockList;
}

function badOption(msg: string): MediaCacheError {
  return new MediaCacheError('E_BAD_REQUEST', `urlPolicy: ${msg}`);
}

function parseCidr(s: string): Cidr {
  const text = String(s).trim();
  const [addr = '', bits, extra] = text.split('/');
  const v = net.isIP(addr);
  if (!v || extra !== undefined) throw badOption(`${JSON.stringify(s)} is not an address or CIDR range like 10.0.0.0/8 or fd00::/8`);
  const max = v === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!/^\d+$/.test(bits ?? String(max)) || prefix > max) throw badOption(`${JSON.stringify(s)}: prefix must be 0-${max}`);
  const family = v === 4 ? 'ipv4' : 'ipv6';
  const list = new net.BlockList();
  list.addSubnet(addr, prefix, family);
  return { text, family, list };
}

function normHost(h: string): string {
  return h.trim().toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
}

function parseHostPattern(s: string): (host: string) => boolean {
  const p = normHost(String(s));
  if (p === '' || /[\s/:]/.test(p.replace(/^\*\./, '')) && !net.isIPv6(p)) throw badOption(`${JSON.stringify(s)} is not a host name or pattern like *.example.org`);
  if (p.startsWith('*.')) {
    const suffix = p.slice(1);
    return (h) => h.endsWith(suffix) && h.length > suffix.length;
  }
  if (p.startsWith('.')) return (h) => h === p.slice(1) || h.endsWith(p);
  return (h) => h === p;
}

function parsePorts(list: ReadonlyArray<number | string>): Array<[number, number]> {
  return list.map((x) => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(String(x).trim());
    const lo = m ? Number(m[1]) : NaN;
    const hi = m?.[2] !== undefined ? Number(m[2]) : lo;
    if (!m || lo < 1 || hi > 65535 || lo > hi) throw badOption(`${JSON.stringify(x)} is not a port (1-65535) or a range like 8000-8099`);
    return [lo, hi];
  });
}

/**
 * The IPv4 address an IPv6 address carries and would reach (mapped,
 * compatible, NAT64, 6to4), or undefined.
 */
export function embeddedIPv4(addr: string): string | undefined {
  if (!net.isIPv6(addr)) return undefined;
  const words = expandV6(addr);
  const v4 = (hi: number, lo: number): string => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zero = (from: number, to: number): boolean => words.slice(from, to).every((w) => w === 0);
  if (zero(0, 5) && words[5] === 0xffff) return v4(words[6]!, words[7]!); // ::ffff:a.b.c.d
  if (zero(0, 6) && (words[6]! !== 0 || words[7]! > 1)) return v4(words[6]!, words[7]!); // ::a.b.c.d (not :: or ::1)
  if (words[0] === 0x64 && words[1] === 0xff9b && zero(2, 6)) return v4(words[6]!, words[7]!); // NAT64
  if (words[0] === 0x2002) return v4(words[1]!, words[2]!); // 6to4
  return undefined;
}

function expandV6(addr: string): number[] {
  let a = addr.toLowerCase().replace(/%.*$/, '');
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (dotted) {
    const [b0, b1, b2, b3] = dotted[1]!.split('.').map(Number) as [number, number, number, number];
    a = a.slice(0, -dotted[1]!.length) + `${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head = '', tail] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((w) => parseInt(w, 16));
}

export class UrlPolicy {
  readonly preset: UrlPolicyPreset;
  private readonly allowHosts: Array<(h: string) => boolean>;
  private readonly denyHosts: Array<(h: string) => boolean>;
  private readonly allowCidrs: Cidr[];
  private readonly denyCidrs: Cidr[];
  private readonly ports: Array<[number, number]>;

  /** Throws E_BAD_REQUEST naming the bad entry. */
  constructor(o: UrlPolicyOptions = {}) {
    const preset = o.preset ?? 'open';
    if (!URL_POLICY_PRESETS.includes(preset)) throw badOption(`preset must be one of ${URL_POLICY_PRESETS.join(', ')}, got ${JSON.stringify(preset)}`);
    this.preset = preset;
    this.allowHosts = (o.allowHosts ?? []).map(parseHostPattern);
    this.denyHosts = (o.denyHosts ?? []).map(parseHostPattern);
    this.allowCidrs = (o.allowCidrs ?? []).map(parseCidr);
    this.denyCidrs = [...(preset === 'public' ? PUBLIC_PRESET_DENY : []), ...(o.denyCidrs ?? [])].map(parseCidr);
    this.ports = parsePorts(o.allowPorts ?? []);
  }

  /** True when no rule can refuse anything (the dispatcher then skips the checks). */
  get permitsAll(): boolean {
    return this.preset === 'open' && !this.denyHosts.length && !this.denyCidrs.length && !this.ports.length;
  }

  /** Whether `hostname` is allow-listed by name (its addresses are then not checked). */
  hostAllowed(hostname: string): boolean {
    const host = normHost(hostname);
    return !this.denyHosts.some((m) => m(host)) && this.allowHosts.some((m) => m(host));
  }

  /**
   * Check a hop before connecting: port, host lists, and the address of an
   * IP literal. Returns 'allowed' (an allow-listed host: skip the address
   * check), 'check-addresses', or throws E_FORBIDDEN.
   */
  checkTarget(hostname: string, port: number, url?: string): 'allowed' | 'check-addresses' {
    const host = normHost(hostname);
    if (this.ports.length && !this.ports.some(([lo, hi]) => port >= lo && port <= hi)) {
      throw forbidden(`port ${port} is not in the allowed ports`, url);
    }
    if (this.denyHosts.some((m) => m(host))) throw forbidden(`host ${host} is denied`, url);
    if (this.allowHosts.some((m) => m(host))) return 'allowed';
    if (net.isIP(host)) this.checkAddress(host, url, host);
    return 'check-addresses';
  }

  /** Throws E_FORBIDDEN unless `address` (what a connection would go to) is allowed. */
  checkAddress(address: string, url?: string, host?: string): void {
    const why = this.addressRefusal(address);
    if (why) throw forbidden(`${host && host !== address ? `${host} resolves to ${address}, which` : `address ${address}`} ${why}`, url);
  }

  /** Why `address` is refused, or undefined. */
  addressRefusal(address: string): string | undefined {
    const forms = [address.replace(/%.*$/, '')];
    const v4 = embeddedIPv4(forms[0]!);
    if (v4) forms.push(v4);
    const hit = (list: Cidr[]): Cidr | undefined => list.find((c) => forms.some((f) => c.list.check(f, net.isIPv4(f) ? 'ipv4' : 'ipv6')));
    // A mapped address is that IPv4 address: an allow rule must match what is really reached.
    const allowForms = address.toLowerCase().startsWith('::ffff:') && v4 ? [v4] : forms;
    if (this.allowCidrs.some((c) => allowForms.some((f) => c.list.check(f, net.isIPv4(f) ? 'ipv4' : 'ipv6')))) return undefined;
    const denied = hit(this.denyCidrs);
    const carrying = v4 ? ` (carrying ${v4})` : '';
    if (denied) return `${carrying ? `${carrying.trim()} ` : ''}is in the denied range ${denied.text}`;
    if (this.preset === 'allowlist') return `${carrying ? `${carrying.trim()} ` : ''}is not in an allowed range`;
    return undefined;
  }
}

export function forbidden(why: string, url?: string): MediaCacheError {
  return new MediaCacheError('E_FORBIDDEN', `refused by the URL policy: ${why}`, { url, retryable: false });
}

/** A policy from options, an instance, or nothing (the permissive default). */
export function toUrlPolicy(p: UrlPolicy | UrlPolicyOptions | undefined): UrlPolicy {
  return p instanceof UrlPolicy ? p : new UrlPolicy(p ?? {});
}
