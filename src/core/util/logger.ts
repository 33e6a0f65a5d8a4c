/** The logging surface core needs; winston loggers satisfy it. Silent by default. */
export interface Logger {
  error(message: string, meta?: Record<string, unknown>): unknown;
  warn(message: string, meta?: Record<string, unknown>): unknown;
  info(message: string, meta?: Record<string, unknown>): unknown;
  debug(message: string, meta?: Record<string, unknown>): unknown;
}

const noop = (): undefined => undefined;
export const silentLogger: Logger = { error: noop, warn: noop, info: noop, debug: noop };
