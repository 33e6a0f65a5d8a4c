/**
 * mcctl's exit codes and the one function that maps any
 * error to one, so every command agrees:
 *
 *   0  success
 *   1  a verify found corruption, a job failed, or the daemon reported another error
 *   2  usage error (unknown command, bad flag, bad argument) or not found
 *   3  the daemon cannot be reached (connect failed, connection lost, no answer in time),
 *      or its socket is not trusted (a folder another user owns or can write: socket-trust.ts)
 *   4  --wait with --timeout: the wait ended, the daemon is alive and goes on with the work
 * 130  interrupted by Ctrl-C/SIGTERM while waiting
 */
import { MediaCacheError, type ErrorCode } from '../core/errors.js';
import { ConnectionLostError, DaemonUnreachableError, RequestTimeoutError } from './rpc-client.js';
import { SocketUntrustedError } from './socket-trust.js';

export const EXIT = {
  OK: 0,
  FAILED: 1,
  USAGE: 2,
  NOT_FOUND: 2,
  UNREACHABLE: 3,
  /** `--wait --timeout MS` ran out while the daemon (still answering) goes on with the work. */
  WAIT_TIMEOUT: 4,
  /** Interrupted by SIGINT/SIGTERM while waiting (128 + 2, the shell convention). */
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A mistake in how mcctl was called (bad argument, unreadable -f file). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Daemon error codes that mean "you asked for something that is not there / not valid". */
const USAGE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'E_NOT_FOUND',
  'E_AMBIGUOUS',
  'E_BAD_REQUEST',
  'E_INVALID_URL',
  'E_UNSUPPORTED_SCHEME',
]);

export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof DaemonUnreachableError || err instanceof ConnectionLostError || err instanceof RequestTimeoutError || err instanceof SocketUntrustedError) {
    return EXIT.UNREACHABLE;
  }
  if (err instanceof UsageError) return EXIT.USAGE;
  if (err instanceof MediaCacheError && USAGE_CODES.has(err.code)) return EXIT.USAGE;
  return EXIT.FAILED;
}
