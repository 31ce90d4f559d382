-- Unified logs (issue 17). A node's spool is committed here: `spool_cursors` remembers, per agent
-- and spool epoch, the last sequence stored (in the same transaction as the lines), so a batch
-- sent again after a reconnect is skipped; `log_gaps` records what a node dropped past its
-- spool's bound. Lines go to `log_lines`, partitioned by day on the line's time (partitions
-- `log_lines_<yyyymmdd>` made by `ensure_log_day`, which runs as the migrating role: the
-- application role may not create tables) with a trigram index for text search; retention
-- drops whole partitions.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE spool_cursors (
    org_id          TEXT NOT NULL REFERENCES organizations(id),
    agent_id        TEXT NOT NULL,
    epoch           BIGINT NOT NULL,
    committed_seq   BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (agent_id, epoch)
);

CREATE TABLE log_gaps (
    id          BIGSERIAL PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    agent_id    TEXT NOT NULL,
    epoch       BIGINT NOT NULL,
    first_seq   BIGINT NOT NULL,
    last_seq    BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX log_gaps_org ON log_gaps (org_id, recorded_at);
GRANT USAGE, SELECT ON SEQUENCE log_gaps_id_seq TO infrapilot_app;

CREATE TABLE log_settings (
    org_id          TEXT PRIMARY KEY REFERENCES organizations(id),
    retention_days  INTEGER NOT NULL
);

CREATE TABLE log_lines (
    org_id          TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    time_ns         BIGINT NOT NULL,
    seq             BIGINT NOT NULL,
    container_id    TEXT NOT NULL,
    container_name  TEXT NOT NULL,
    compose_project TEXT NOT NULL,
    stream          TEXT NOT NULL,
    level           TEXT,
    line            TEXT NOT NULL,
    -- Lines of the node's managed nginx: the proxy host they belong to, and an access line's
    -- HTTP status.
    proxy_host_id   TEXT,
    status          INTEGER
) PARTITION BY RANGE (time_ns);
CREATE INDEX log_lines_org_time ON log_lines (org_id, time_ns);
CREATE INDEX log_lines_proxy_host ON log_lines (org_id, proxy_host_id, time_ns) WHERE proxy_host_id IS NOT NULL;
CREATE INDEX log_lines_text ON log_lines USING gin (line gin_trgm_ops);

-- The partition of the UTC day starting at `day_start_ns` (yyyymmdd in its name).
CREATE FUNCTION ensure_log_day(day_start_ns BIGINT) RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    name TEXT := 'log_lines_' || to_char(to_timestamp(day_start_ns / 1000000000) AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
    IF day_start_ns % 86400000000000 <> 0 THEN
        RAISE EXCEPTION 'not the start of a day: %', day_start_ns;
    END IF;
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    -- One maker at a time (replicas, agents at midnight); the loser finds it made.
    PERFORM pg_advisory_xact_lock(hashtext('ensure_log_day'));
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF log_lines FOR VALUES FROM (%s) TO (%s)',
                   name, day_start_ns, day_start_ns + 86400000000000);
    -- A partition read directly is as isolated as the parent.
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', name);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', name);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (org_id = NULLIF(current_setting(''app.current_org_id'', true), '''')) WITH CHECK (org_id = NULLIF(current_setting(''app.current_org_id'', true), ''''))', name);
END $$;

-- Drops the partitions of days wholly before `before_ns` (retention of the longest-kept
-- organisation; shorter ones delete rows).
CREATE FUNCTION drop_log_days_before(before_ns BIGINT) RETURNS INTEGER
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    part RECORD;
    dropped INTEGER := 0;
BEGIN
    -- One pass at a time (every replica runs retention): the others skip.
    IF NOT pg_try_advisory_xact_lock(hashtext('drop_log_days_before')) THEN
        RETURN 0;
    END IF;
    FOR part IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'log_lines'::regclass
    LOOP
        IF (regexp_match(part.bound, 'TO \(''?(-?\d+)''?\)'))[1]::BIGINT <= before_ns THEN
            EXECUTE format('DROP TABLE IF EXISTS %I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$;

REVOKE ALL ON FUNCTION ensure_log_day(BIGINT) FROM PUBLIC;
REVOKE ALL ON FUNCTION drop_log_days_before(BIGINT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ensure_log_day(BIGINT) TO infrapilot_app;
GRANT EXECUTE ON FUNCTION drop_log_days_before(BIGINT) TO infrapilot_app;

ALTER TABLE log_lines ENABLE ROW LEVEL SECURITY;
ALTER TABLE log_lines FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON log_lines
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));
ALTER TABLE spool_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE spool_cursors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON spool_cursors
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));
ALTER TABLE log_gaps ENABLE ROW LEVEL SECURITY;
ALTER TABLE log_gaps FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON log_gaps
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));
ALTER TABLE log_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE log_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON log_settings
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));
