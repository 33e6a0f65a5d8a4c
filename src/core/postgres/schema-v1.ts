/**
 * Schema version 1: everything, in the `mediacache` schema (so a pipeline's
 * own `media` or `jobs` tables in the same database never collide). The
 * reference a pipeline reads is docs/postgres.md; keep the two in step.
 *
 * Invariants the code relies on:
 * - media.md5 and media_url.md5 use the "C" collation, so a btree range scan
 *   answers an md5 prefix.
 * - URLs are keyed by url_key = sha256 of the URL (a btree entry cannot hold an
 *   8 KiB URL); a hash index on url serves a pipeline's plain `url = …` joins.
 * - At most one queued-or-running job per URL (jobs_active_url): the dedupe
 *   across daemons is this index, not application code.
 * - jobs only become 'running' through claim, which holds the host's advisory
 *   lock (lock_hosts) while it counts that host's running jobs: the cluster-wide
 *   per-host limit.
 * - counters holds deltas appended by statement-level triggers (no hot row, no
 *   lock between writers); totals are their sums, folded now and then by
 *   fold_counters(). Sums never change by folding.
 */
export const SCHEMA_V1 = String.raw`
CREATE FUNCTION mediacache.url_key(url text) RETURNS bytea
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT sha256(convert_to(url, 'UTF8')) $$;

CREATE TABLE mediacache.media (
  md5           text COLLATE "C" PRIMARY KEY CHECK (md5 ~ '^[0-9a-f]{32}$'),
  sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  size          bigint NOT NULL CHECK (size >= 0),
  mime          text NOT NULL,
  media_type    text NOT NULL CHECK (media_type IN ('image', 'video', 'audio', 'document')),
  width         integer,
  height        integer,
  extension     text NOT NULL,
  storage_path  text NOT NULL,
  fetched_at    timestamptz NOT NULL,
  verified_at   timestamptz NOT NULL,
  etag          text,
  last_modified text
);
CREATE INDEX media_sha256 ON mediacache.media (sha256);

CREATE TABLE mediacache.media_url (
  url        text NOT NULL,
  url_key    bytea GENERATED ALWAYS AS (mediacache.url_key(url)) STORED PRIMARY KEY,
  md5        text COLLATE "C" NOT NULL REFERENCES mediacache.media (md5) ON DELETE CASCADE,
  first_seen timestamptz NOT NULL DEFAULT now(),
  last_seen  timestamptz NOT NULL DEFAULT now(),
  seq        bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX media_url_md5 ON mediacache.media_url (md5, seq);
CREATE INDEX media_url_url ON mediacache.media_url USING hash (url);

CREATE TABLE mediacache.batches (
  id             text PRIMARY KEY,
  key            text NOT NULL UNIQUE,
  node_id        text,
  inbox          text NOT NULL,
  source_path    text NOT NULL,
  processed_path text NOT NULL,
  state          text NOT NULL CHECK (state IN ('enqueued', 'moved')),
  lines          jsonb NOT NULL DEFAULT '[]',
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mediacache.jobs (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  url              text NOT NULL,
  url_key          bytea GENERATED ALWAYS AS (mediacache.url_key(url)) STORED,
  host             text NOT NULL,
  state            text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
  priority         integer NOT NULL DEFAULT 0,
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  lease_owner      text,
  lease_expires_at timestamptz,
  done_by          text,
  error_code       text,
  error_message    text,
  error_status     integer,
  md5              text COLLATE "C",
  batch_id         text REFERENCES mediacache.batches (id) ON DELETE SET NULL,
  source           text NOT NULL DEFAULT 'rpc',
  force            boolean NOT NULL DEFAULT false,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  ended_at         timestamptz
);
CREATE UNIQUE INDEX jobs_active_url ON mediacache.jobs (url_key) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_queued ON mediacache.jobs (priority, id) WHERE state = 'queued';
CREATE INDEX jobs_running_host ON mediacache.jobs (host) WHERE state = 'running';
CREATE INDEX jobs_running_owner ON mediacache.jobs (lease_owner) WHERE state = 'running';
CREATE INDEX jobs_running_lease ON mediacache.jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_ended ON mediacache.jobs (ended_at) WHERE state IN ('done', 'failed');
CREATE INDEX jobs_batch ON mediacache.jobs (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX jobs_md5 ON mediacache.jobs (md5) WHERE md5 IS NOT NULL;

-- Origins that asked us to wait (Retry-After, 429/503): no claim for them before not_before.
CREATE TABLE mediacache.hosts (
  host       text PRIMARY KEY,
  not_before timestamptz NOT NULL
);

CREATE TABLE mediacache.nodes (
  id           text PRIMARY KEY,
  host_name    text NOT NULL,
  pid          integer NOT NULL,
  version      text,
  info         jsonb NOT NULL DEFAULT '{}',
  started_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  stopped_at   timestamptz
);

-- Named cluster-wide leases (the integrity sweep): held until expires_at unless renewed.
CREATE TABLE mediacache.cluster_locks (
  name        text PRIMARY KEY,
  owner       text NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL
);

CREATE TABLE mediacache.counters (
  id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name  text NOT NULL,
  key   text NOT NULL,
  n     bigint NOT NULL DEFAULT 0,
  bytes bigint NOT NULL DEFAULT 0
);
CREATE INDEX counters_name ON mediacache.counters (name, key);

-- Media totals: one delta row per statement and media type.
CREATE FUNCTION mediacache.media_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO mediacache.counters (name, key, n, bytes)
      SELECT 'media', media_type, count(*), sum(size) FROM new_rows GROUP BY media_type;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO mediacache.counters (name, key, n, bytes)
      SELECT 'media', media_type, -count(*), -sum(size) FROM old_rows GROUP BY media_type;
  ELSE
    INSERT INTO mediacache.counters (name, key, n, bytes)
      SELECT 'media', media_type, sum(d), sum(s) FROM (
        SELECT media_type, 1 AS d, size AS s FROM new_rows
        UNION ALL SELECT media_type, -1, -size FROM old_rows) x
      GROUP BY media_type HAVING sum(d) <> 0 OR sum(s) <> 0;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER media_count_ins AFTER INSERT ON mediacache.media
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mediacache.media_count();
CREATE TRIGGER media_count_del AFTER DELETE ON mediacache.media
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION mediacache.media_count();
CREATE TRIGGER media_count_upd AFTER UPDATE ON mediacache.media
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mediacache.media_count();

-- Job totals per state, and per daemon the jobs it ended (its queue share).
CREATE FUNCTION mediacache.jobs_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO mediacache.counters (name, key, n)
      SELECT 'jobs', state, count(*) FROM new_rows GROUP BY state;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO mediacache.counters (name, key, n)
      SELECT 'jobs', state, -count(*) FROM old_rows GROUP BY state;
  ELSE
    INSERT INTO mediacache.counters (name, key, n)
      SELECT 'jobs', state, sum(d) FROM (
        SELECT state, 1 AS d FROM new_rows UNION ALL SELECT state, -1 FROM old_rows) x
      GROUP BY state HAVING sum(d) <> 0;
    INSERT INTO mediacache.counters (name, key, n)
      SELECT 'node_' || n.state, n.done_by, count(*)
      FROM new_rows n JOIN old_rows o ON o.id = n.id
      WHERE n.state IN ('done', 'failed') AND o.state IS DISTINCT FROM n.state AND n.done_by IS NOT NULL
      GROUP BY n.state, n.done_by;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER jobs_count_ins AFTER INSERT ON mediacache.jobs
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mediacache.jobs_count();
CREATE TRIGGER jobs_count_del AFTER DELETE ON mediacache.jobs
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION mediacache.jobs_count();
CREATE TRIGGER jobs_count_upd AFTER UPDATE ON mediacache.jobs
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mediacache.jobs_count();

-- Replace all delta rows of one counter by one row per key. Concurrent folds
-- are safe: a row is returned by only the DELETE that removed it.
CREATE FUNCTION mediacache.fold_counters(counter text) RETURNS void LANGUAGE sql AS $$
  WITH gone AS (DELETE FROM mediacache.counters WHERE name = counter RETURNING key, n, bytes)
  INSERT INTO mediacache.counters (name, key, n, bytes)
    SELECT counter, key, sum(n), sum(bytes) FROM gone GROUP BY key HAVING sum(n) <> 0 OR sum(bytes) <> 0
$$;

-- Take the claim locks of these hosts in one global order (no deadlock between
-- claimers), held until the transaction ends.
CREATE FUNCTION mediacache.lock_hosts(hosts text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE k integer;
BEGIN
  FOR k IN SELECT DISTINCT hashtext(h) FROM unnest(hosts) h ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock(1835283299, k);
  END LOOP;
END $$;
`;
