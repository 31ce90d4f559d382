-- Issue 17: text search of the logs under row-level security. ILIKE is not leakproof, so below
-- the tenant policy PostgreSQL may not use the trigram index and read every line of the range
-- (0.5 s for one rare word in a million lines). `log_text_matches` (owned by the migrating role,
-- for which the partitioned table's policy is no longer forced) searches the trigram index for
-- the organisation of the transaction — the setting the policy itself reads, never a parameter —
-- and returns the keys of at most `max_rows` matching lines; the application then reads those
-- lines through the policy as before. The application role does not own `log_lines`: every
-- query it makes is still filtered by the policy.
ALTER TABLE log_lines NO FORCE ROW LEVEL SECURITY;

CREATE FUNCTION log_text_matches(pattern TEXT, since_ns BIGINT, until_ns BIGINT, max_rows INTEGER)
RETURNS TABLE (time_ns BIGINT, agent_id TEXT, seq BIGINT)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
    -- Planned for these values each time (a generic plan would not know the pattern is rare).
    RETURN QUERY EXECUTE
        'SELECT l.time_ns, l.agent_id, l.seq FROM log_lines l '
        'WHERE l.org_id = NULLIF(current_setting(''app.current_org_id'', true), '''') '
        'AND l.time_ns >= $2 AND l.time_ns < $3 AND l.line ILIKE $1 ESCAPE ''\'' LIMIT $4'
        USING pattern, since_ns, until_ns, max_rows;
END;
$$;
REVOKE ALL ON FUNCTION log_text_matches(TEXT, BIGINT, BIGINT, INTEGER) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION log_text_matches(TEXT, BIGINT, BIGINT, INTEGER) TO infrapilot_app;

-- The tables of 0015 and 0016 for the application role explicitly (migrations may run as
-- another role than 0001's, whose default privileges then do not apply).
GRANT SELECT, INSERT, UPDATE, DELETE ON spool_cursors, log_gaps, log_settings, log_lines, node_samples TO infrapilot_app;
