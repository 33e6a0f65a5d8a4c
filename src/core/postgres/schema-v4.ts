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
 * Candidates: with no host blocked, the head of the queue in order (200
 * rows at most). With a host at its limit or paused, walking the queue in
 * order would read all of that host's queued jobs at every claim (46 ms a
 * claim with 100,000 queued on one host, measured): then each other host
 * that has queued work gives its own best jobs instead (a loose scan of
 * jobs_queued_host, one index probe per host).
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
CREATE INDEX jobs_queued_host ON mediacache.jobs (host, priority, id) WHERE state = 'queued';

CREATE FUNCTION mediacache.claim_jobs(p_node text, p_n integer, p_limit integer, p_lease_ms bigint)
  RETURNS SETOF mediacache.jobs LANGUAGE plpgsql VOLATILE
  -- A short statement on indexes: compiling it (JIT, past jit_above_cost on a
  -- pessimistic estimate) cost 17 ms a call where running it cost 1.6.
  SET jit = off
  AS $$
DECLARE
  r record;
  ids bigint[] := '{}';
  hosts text[] := '{}';
  chosen bigint[] := '{}';
  busy jsonb;
  blocked text[];
  cand bigint[];
  k integer;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  SELECT coalesce(jsonb_object_agg(b.host, b.running), '{}'::jsonb) INTO busy FROM (
    SELECT q.host, count(*)::int AS running FROM mediacache.jobs q WHERE q.state = 'running' GROUP BY q.host) b;
  -- Hosts that can start nothing now: at their limit, or paused by a Retry-After.
  SELECT array_agg(x.h) INTO blocked FROM (
    SELECT e.key AS h FROM jsonb_each_text(busy) e WHERE e.value::int >= p_limit
    UNION SELECT hs.host FROM mediacache.hosts hs WHERE hs.not_before > now()) x;
  -- Candidates (ids, not yet locked), by one of two walks.
  IF blocked IS NULL THEN
    -- Nothing to skip: the head of the queue in (priority, id) order.
    cand := ARRAY(
      WITH scan AS (
        SELECT q.id, q.host, q.priority FROM mediacache.jobs q
         WHERE q.state = 'queued' AND q.next_attempt_at <= now()
         ORDER BY q.priority, q.id LIMIT 200
      ), ranked AS (
        SELECT s.id, row_number() OVER (PARTITION BY s.host ORDER BY s.priority, s.id) + coalesce((busy ->> s.host)::int, 0) AS slot
          FROM scan s
      )
      SELECT ranked.id FROM ranked WHERE ranked.slot <= p_limit);
  ELSE
    -- Walking the queue in order would read every queued job of the blocked
    -- hosts (all of it when one host has the whole queue, at every poll):
    -- instead each other host with queued work (one probe each, by
    -- jobs_queued_host) gives its own best jobs, as many as it has room for.
    cand := ARRAY(
      WITH RECURSIVE qh AS (
        (SELECT q.host FROM mediacache.jobs q WHERE q.state = 'queued' ORDER BY q.host LIMIT 1)
        UNION ALL
        SELECT (SELECT q.host FROM mediacache.jobs q WHERE q.state = 'queued' AND q.host > qh.host ORDER BY q.host LIMIT 1)
          FROM qh WHERE qh.host IS NOT NULL
      ), open AS (
        SELECT qh.host, least(p_n, p_limit - coalesce((busy ->> qh.host)::int, 0)) AS room
          FROM qh WHERE qh.host IS NOT NULL AND qh.host <> ALL (blocked)
      )
      -- A range of jobs_queued_host from the host's first entry, in its own order (the one
      -- index that gives it: with "host = o.host" instead, a plan may walk jobs_queued and
      -- filter, reading the whole queue again); rows past the host are dropped outside.
      SELECT c.id FROM open o CROSS JOIN LATERAL (
        SELECT q.id, q.host FROM mediacache.jobs q
         WHERE q.state = 'queued' AND (q.host, q.priority, q.id) > (o.host, -2147483648, -1)
           AND q.next_attempt_at <= now()
         ORDER BY q.host, q.priority, q.id LIMIT o.room) c
       WHERE c.host = o.host);
  END IF;
  -- The best of them, locked (a candidate another claimer holds is skipped).
  FOR r IN
    SELECT j.id, j.host FROM mediacache.jobs j
     WHERE j.id = ANY (cand) AND j.state = 'queued'
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
