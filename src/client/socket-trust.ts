/**
 * Whether mcctl may talk to the socket it is about to dial. The daemon
 * refuses to listen in a folder that is not its own (rpc/socket-bind.ts);
 * the client must refuse as well, or anyone who pre-creates the default
 * folder (`/tmp/mediacache-<uid>/`, in a folder everyone can write) with a
 * fake server receives our URLs and answers `verify` with made-up results.
 *
 * Rules (POSIX only; a Windows pipe is the OS's business):
 * - The socket's folder must not be writable by group or others (then
 *   anyone could have replaced the socket), and when it is a symbolic link
 *   the link itself must belong to us or root.
 * - Default socket path (no --socket, no MEDIACACHE_SOCKET): the folder and
 *   the socket must belong to us, exactly as the daemon we would have
 *   started leaves them.
 * - A path the user named: the folder may also belong to root, or to a
 *   service account when its parent is a folder only we or root can write
 *   (/run/mediacache of a system service); a folder owned by someone else
 *   inside /tmp is refused.
 * A folder or socket that does not exist is not judged here: connecting
 * fails with its own explanation.
 */
import fs from 'node:fs';
import path from 'node:path';
import { MediaCacheError } from '../core/errors.js';

/** Same test as core/util/paths.ts isWindowsPipe, inlined: that module loads node:os, which mcctl's start avoids. */
const isWindowsPipe = (p: string): boolean => /^\\\\[.?]\\pipe\\/i.test(p);

/** mcctl exits 3 on it (the daemon cannot be reached safely). */
export class SocketUntrustedError extends MediaCacheError {
  readonly socketPath: string;
  constructor(socketPath: string, reason: string) {
    super(
      'E_UNAVAILABLE',
      `refusing to use the socket ${socketPath}: ${reason}. Another user may have put a fake daemon there. ` +
        'Start mediacached with --socket in a folder only you can write, and give mcctl the same --socket (or MEDIACACHE_SOCKET).',
    );
    this.name = 'SocketUntrustedError';
    this.socketPath = socketPath;
  }
}

export interface TrustInput {
  socketPath: string;
  /** True when the path came from --socket or MEDIACACHE_SOCKET rather than the default. */
  explicit: boolean;
  /** Our uid (undefined where there are none: Windows). */
  uid?: number;
}

const ROOT = 0;

function statOrUndefined(p: string, follow: boolean): fs.Stats | undefined {
  try {
    return follow ? fs.statSync(p) : fs.lstatSync(p);
  } catch {
    return undefined;
  }
}

const mode = (st: fs.Stats): string => (st.mode & 0o7777).toString(8);

/** Why the socket must not be used, or undefined when it may be. */
export function socketDistrust({ socketPath, explicit, uid }: TrustInput): string | undefined {
  if (uid === undefined || isWindowsPipe(socketPath)) return undefined;
  const dir = path.dirname(path.resolve(socketPath));
  const link = statOrUndefined(dir, false);
  if (!link) return undefined;
  if (link.isSymbolicLink() && link.uid !== uid && link.uid !== ROOT) {
    return `its folder ${dir} is a symbolic link owned by uid ${link.uid}, not by you (uid ${uid}) or root`;
  }
  const st = link.isSymbolicLink() ? statOrUndefined(dir, true) : link;
  if (!st || !st.isDirectory()) return undefined;
  if (st.mode & 0o022) return `its folder ${dir} is writable by group or others (mode ${mode(st)})`;
  const mine = st.uid === uid;
  if (!explicit && !mine) return `its folder ${dir} is owned by uid ${st.uid}, not by you (uid ${uid})`;
  if (explicit && !mine && st.uid !== ROOT) {
    // A service account's folder is trusted only where no one else could have made it.
    const parent = path.dirname(fs.realpathSync(dir));
    const pst = statOrUndefined(parent, true);
    if (!pst || (pst.uid !== uid && pst.uid !== ROOT) || pst.mode & 0o022) {
      return `its folder ${dir} is owned by uid ${st.uid} (not you, uid ${uid}, nor root) and sits in ${parent}, which ${pst ? `others can write (mode ${mode(pst)})` : 'cannot be checked'}`;
    }
  }
  const sock = statOrUndefined(socketPath, false);
  if (sock && !explicit && sock.uid !== uid) return `the socket is owned by uid ${sock.uid}, not by you (uid ${uid})`;
  return undefined;
}
