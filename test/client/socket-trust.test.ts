/**
 * mcctl refuses a socket another user could have planted (issue: a
 * pre-created /tmp/mediacache-<uid> with a fake server received URLs and
 * answered `verify` with fake results), and the daemon's refusal never
 * recommends the folder it refused. Ownership cases chown folders to
 * `nobody`, so they need root (CI runs tests as root); they are skipped
 * otherwise.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { main, type CliIO } from '../../src/client/cli.js';
import { socketDistrust } from '../../src/client/socket-trust.js';
import { prepareSocketDir } from '../../src/daemon/rpc/socket-bind.js';
import { EXIT } from '../../src/client/exit-codes.js';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;
const uid = process.getuid?.() ?? -1;

class Capture {
  out = '';
  write(s: string): boolean {
    this.out += s;
    return true;
  }
}

async function mcctl(argv: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = { stdout: new Capture(), stderr: new Capture(), env, cwd: '/' } as unknown as CliIO & { stdout: Capture; stderr: Capture };
  const code = await main(argv, io);
  return { code, stdout: io.stdout.out, stderr: io.stderr.out };
}

function tmpRoot(t: Test): string {
  const root = fs.mkdtempSync(path.join('/tmp', 'mcst-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  return root;
}

/** A fake "daemon": answers stats and verify with made-up results, and counts what it received. */
async function fakeDaemon(t: Test, socket: string): Promise<{ received: string[]; connections: () => number }> {
  const received: string[] = [];
  let connections = 0;
  const srv = net.createServer((s) => {
    connections++;
    s.on('error', () => undefined);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      for (const line of d.split('\n').filter(Boolean)) {
        received.push(line);
        const m = JSON.parse(line) as { id: number };
        s.write(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { totalFiles: 42, totalSize: 1, byType: {} } }) + '\n');
      }
    });
  });
  await new Promise<void>((r) => srv.listen(socket, r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  return { received, connections: () => connections };
}

t.test('default socket in a folder owned by another user: refused, exit 3, nothing sent', { skip: !isRoot && 'needs root to chown to nobody' }, async (t) => {
  const root = tmpRoot(t);
  // The default path under XDG_RUNTIME_DIR, pre-created by "another user" with a fake server in it.
  const dir = path.join(root, 'mediacache');
  fs.mkdirSync(dir, { mode: 0o700 });
  const fake = await fakeDaemon(t, path.join(dir, 'mediacached.sock'));
  fs.chownSync(dir, NOBODY, NOBODY);
  fs.chownSync(path.join(dir, 'mediacached.sock'), NOBODY, NOBODY);
  const r = await mcctl(['add', 'https://example.org/secret.jpg'], { XDG_RUNTIME_DIR: root });
  t.equal(r.code, EXIT.UNREACHABLE, 'exit 3');
  t.match(r.stderr, /refusing to use the socket .*mediacached\.sock: its folder .* is owned by uid 65534, not by you/);
  t.match(r.stderr, /fake daemon/);
  t.equal(fake.connections(), 0, 'mcctl never connected');
  t.same(fake.received, [], 'no URL reached the fake server');
  t.equal(r.stdout, '');
});

t.test('a named socket in a folder another user owns inside a world-writable folder: refused', { skip: !isRoot && 'needs root to chown to nobody' }, async (t) => {
  const root = tmpRoot(t);
  fs.chmodSync(root, 0o1777); // like /tmp
  const dir = path.join(root, 'mediacache-0');
  fs.mkdirSync(dir, { mode: 0o700 });
  const fake = await fakeDaemon(t, path.join(dir, 's.sock'));
  fs.chownSync(dir, NOBODY, NOBODY);
  const r = await mcctl(['verify', 'abcdef'], { MEDIACACHE_SOCKET: path.join(dir, 's.sock') });
  t.equal(r.code, EXIT.UNREACHABLE);
  t.match(r.stderr, /owned by uid 65534 \(not you, uid 0, nor root\) and sits in .*, which others can write \(mode 1777\)/);
  t.equal(fake.connections(), 0);
});

t.test("a service account's folder in a folder only root can write is trusted when named", { skip: !isRoot && 'needs root to chown to nobody' }, async (t) => {
  const root = tmpRoot(t);
  fs.chmodSync(root, 0o755); // like /run
  const dir = path.join(root, 'mediacache');
  fs.mkdirSync(dir, { mode: 0o755 });
  const fake = await fakeDaemon(t, path.join(dir, 's.sock'));
  fs.chownSync(dir, NOBODY, NOBODY);
  const r = await mcctl(['stats', '--json', '--socket', path.join(dir, 's.sock')], {});
  t.equal(r.code, 0, r.stderr);
  t.equal(fake.connections(), 1);
  // The same folder as the *default* path is not ours, so it is refused there.
  t.match(socketDistrust({ socketPath: path.join(dir, 's.sock'), explicit: false, uid }) ?? '', /owned by uid 65534, not by you/);
});

t.test('a symbolic link planted by another user is refused', { skip: !isRoot && 'needs root to chown to nobody' }, async (t) => {
  const root = tmpRoot(t);
  const real = path.join(root, 'real');
  fs.mkdirSync(real, { mode: 0o700 });
  const link = path.join(root, 'link');
  fs.symlinkSync(real, link);
  fs.lchownSync(link, NOBODY, NOBODY);
  t.match(socketDistrust({ socketPath: path.join(link, 's.sock'), explicit: true, uid }) ?? '', /symbolic link owned by uid 65534/);
  fs.lchownSync(link, uid, uid);
  t.equal(socketDistrust({ socketPath: path.join(link, 's.sock'), explicit: true, uid }), undefined, 'our own link to our own folder is fine');
});

t.test('a folder others can write is refused for any user; our own private folder is fine', async (t) => {
  const root = tmpRoot(t);
  const dir = path.join(root, 'd');
  fs.mkdirSync(dir, { mode: 0o700 });
  const sock = path.join(dir, 's.sock');
  t.equal(socketDistrust({ socketPath: sock, explicit: false, uid }), undefined);
  t.equal(socketDistrust({ socketPath: sock, explicit: true, uid }), undefined);
  fs.chmodSync(dir, 0o777);
  t.match(socketDistrust({ socketPath: sock, explicit: true, uid }) ?? '', /writable by group or others \(mode 777\)/);
  fs.chmodSync(dir, 0o770);
  t.match(socketDistrust({ socketPath: sock, explicit: false, uid }) ?? '', /writable by group or others \(mode 770\)/);
  const r = await mcctl(['stats', '--socket', sock], {});
  t.equal(r.code, EXIT.UNREACHABLE);
  t.equal(socketDistrust({ socketPath: path.join(root, 'missing', 's.sock'), explicit: false, uid }), undefined, 'a missing folder is left to connect() to explain');
  t.equal(socketDistrust({ socketPath: '\\\\.\\pipe\\mediacache', explicit: false, uid }), undefined, 'Windows pipes are not judged');
  t.equal(socketDistrust({ socketPath: sock, explicit: false, uid: undefined }), undefined, 'no uids, no check');
});

t.test("the daemon's refusal does not recommend the folder it refused", { skip: !isRoot && 'needs root to chown to nobody' }, async (t) => {
  const root = tmpRoot(t);
  const dir = path.join(root, 'mediacache');
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.chownSync(dir, NOBODY, NOBODY);
  const env = { XDG_RUNTIME_DIR: root }; // so the first default candidate is exactly the refused folder
  let msg = '';
  try {
    prepareSocketDir(path.join(dir, 'mediacached.sock'), env);
  } catch (e) {
    msg = (e as Error).message;
  }
  t.match(msg, /owned by uid 65534, not by us \(uid 0\); refusing to use it/);
  t.match(msg, /another user may have/);
  t.notMatch(msg, new RegExp(`--socket ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), 'the refused folder is not suggested');
  t.match(msg, /--socket \/tmp\/mediacache-0\/mediacached\.sock/, 'another default location is');
});
