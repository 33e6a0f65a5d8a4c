export interface PgClusterConfig {
  host: string;
  port: number;
  user: string;
  database: string;
}
export interface PgCluster {
  readonly binDir: string;
  readonly root: string;
  readonly dataDir: string;
  readonly socketDir: string;
  readonly port: number;
  readonly running: boolean;
  config(database?: string): PgClusterConfig;
  connectionString(database?: string): string;
  start(): Promise<void>;
  stop(mode?: 'fast' | 'smart' | 'immediate'): Promise<void>;
  restart(mode?: 'fast' | 'smart' | 'immediate'): Promise<void>;
  log(): string;
  close(): Promise<void>;
}
export function findPgBinDir(): string | undefined;
export function startCluster(opts?: { durable?: boolean; settings?: string[] }): Promise<PgCluster>;
