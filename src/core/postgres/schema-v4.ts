/**
 * Schema version 4: `claim_jobs`, one claim round in one call (one round
 * trip, its own transaction), so the hosts' claim locks are held only while
 * the function runs instead of across several client round trips.
 *
 * Same invariants as the client-side round it replaces (pg-queue.ts):
 * candidates are locked FOR UPDATE SKIP LOCKED; with a per-host limit the
 * hosts' advisory locks are taken (lock_hosts) BEFORE their running jobs are
 * counted, and that count is a new statement of this VOLATILE function, so
 * its snapshot includes every claim committed before the locks were ours.
 * p_limit = 2147483647 means no limit (no host lock taken).
 *
 * The claim commits asynchronously (synchronous_commit off for its own
 * transaction only): it is visible to every other transaction at commit as
 * usual, but neither the caller nor the host locks wait for the WAL flush,
 * so claimers on one host do not queue behind each other's fsync. Losing a
 * claim in a server crash is harmless: the job is back to queued, which the
 * claiming daemon may still end (complete/fail accept a queued job) or
 * another daemon claims and runs again (content is stored by md5, once).
 * The next synchronous commit (any record write) flushes it anyway.
 */
export const SCHEMA_V4 = String.raw`
CREATE FUNCTION mediacache.claim_jobs(p_node text, p_n integer, p_limit integer, p_lease_ms bigint)
  RETURNS SETOF mediacache.jobs LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  r record;
  ids bigint[] := '{}';
  hosts text[] := '{}';
  chosen bigint[] := '{}';
  busy jsonb;
  k integer;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  FOR r IN
    WITH busy AS (
      SELECT host, count(*)::int AS running FROM mediacache.jobs WHERE state = 'running' GROUP BY host
    ), blocked AS (
      SELECT host FROM busy WHERE running >= p_limit
      UNION SELECT host FROM mediacache.hosts WHERE not_before > now()
    ), scan AS (
      SELECT id, host, priority FROM mediacache.jobs
       WHERE state = 'queued' AND next_attempt_at <= now() AND host NOT IN (SELECT host FROM blocked)
       ORDER BY priority, id LIMIT 200
    ), ranked AS (
      SELECT s.id, row_number() OVER (PARTITION BY s.host ORDER BY s.priority, s.id) + coalesce(b.running, 0) AS slot
        FROM scan s LEFT JOIN busy b ON b.host = s.host
    )
    SELECT j.id, j.host FROM mediacache.jobs j JOIN ranked x ON x.id = j.id
     WHERE j.state = 'queued' AND x.slot <= p_limit
     ORDER BY j.priority, j.id LIMIT p_n
     FOR UPDATE OF j SKIP LOCKED
  LOOP
    ids := ids || r.id;
    hosts := hosts || r.host;
  END LOOP;
  IF cardinality(ids) = 0 THEN
    RETURN;
  END IF;
  IF p_limit < 2147483647 THEN
    PERFORM mediacache.lock_hosts(hosts);
    SELECT coalesce(jsonb_object_agg(host, n), '{}'::jsonb) INTO busy FROM (
      SELECT host, count(*)::int AS n FROM mediacache.jobs
       WHERE state = 'running' AND host = ANY(hosts) GROUP BY host) c;
    FOR i IN 1 .. cardinality(ids) LOOP
      k := coalesce((busy ->> hosts[i])::int, 0);
      IF k < p_limit THEN
        chosen := chosen || ids[i];
        busy := jsonb_set(busy, ARRAY[hosts[i]], to_jsonb(k + 1));
      END IF;
    END LOOP;
  ELSE
    chosen := ids;
  END IF;
  RETURN QUERY
    UPDATE mediacache.jobs SET state = 'running', lease_owner = p_node,
           lease_expires_at = now() + p_lease_ms * interval '1 millisecond',
           attempts = attempts + 1, updated_at = now()
     WHERE id = ANY(chosen) RETURNING *;
END $$;
`;
