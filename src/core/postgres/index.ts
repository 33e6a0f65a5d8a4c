/** PostgreSQL storage for cluster mode: one index and one queue shared by several daemons. */
export { PgDatabase, describeTarget, type PgDatabaseOptions, type PgTx } from './pg-db.js';
export { migrate, schemaVersion, MIGRATIONS, SCHEMA_VERSION, type Migration, type MigrationResult } from './migrations.js';
export { PgRecords, storagePathOf } from './pg-records.js';
export { PgQueue, type ClaimOptions, type EnqueueItem, type EnqueueOptions, type Enqueued, type NodeShare, type PgJob } from './pg-queue.js';
export { PgNodes, SWEEP_LOCK, type LockHolder, type NodeInfo, type NodeStatus } from './pg-nodes.js';
export { PgBatches, type PgBatch, type PgBatchLine } from './pg-batches.js';
export { isConnectionError, pgError } from './pg-errors.js';
export { PgEntryStore } from './pg-store.js';
export { copyIndexToPostgres, copyPostgresToIndex, type IndexCopyResult } from './migrate-index.js';
