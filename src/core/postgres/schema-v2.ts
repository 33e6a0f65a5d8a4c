/**
 * Schema version 2: `media.extra`, a jsonb object with the record fields that
 * have no column of their own (media metadata such as durationSec or
 * videoCodec, pinned, lastUsedAt, revalidatedAt, upstreamChanges…), so a
 * record stored in PostgreSQL reads back whole. Keys are the record's field
 * names; a pipeline reads them as `extra->>'durationSec'`.
 */
export const SCHEMA_V2 = `
ALTER TABLE mediacache.media ADD COLUMN extra jsonb NOT NULL DEFAULT '{}'::jsonb;
`;
