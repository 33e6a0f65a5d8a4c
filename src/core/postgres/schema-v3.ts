/**
 * Schema version 3: inbox batches in the database (cluster mode).
 * - state `taking`: the row is a daemon's claim on a file of a shared inbox
 *   folder, made before it enqueues anything, so of several daemons watching
 *   the same folder exactly one reads the file (the unique key decides).
 * - ident (size, mtimeMs, dev, ino of the file taken): a restarted owner moves
 *   the file only if the one still in the inbox is that same file.
 * - refused ({code, reason}): a file not read, reported as one row.
 */
export const SCHEMA_V3 = `
ALTER TABLE mediacache.batches DROP CONSTRAINT batches_state_check;
ALTER TABLE mediacache.batches ADD CONSTRAINT batches_state_check CHECK (state IN ('taking', 'enqueued', 'moved'));
ALTER TABLE mediacache.batches ADD COLUMN ident jsonb;
ALTER TABLE mediacache.batches ADD COLUMN refused jsonb;
CREATE INDEX batches_node ON mediacache.batches (node_id);
`;
