-- Issue 17: the nodes' CPU, memory and disk over time, from their heartbeats. Each heartbeat is
-- added into the minute and the hour it falls in (sums and counts, so a bucket's average is
-- exact however many heartbeats it took); retention keeps minutes for two days and hours for
-- 90 (host/infrapilot's hourly task).
CREATE TABLE node_samples (
    org_id              TEXT NOT NULL REFERENCES organizations(id),
    agent_id            TEXT NOT NULL,
    resolution_seconds  INTEGER NOT NULL,
    bucket_ms           BIGINT NOT NULL,
    samples             INTEGER NOT NULL,
    cpu_samples         INTEGER NOT NULL,
    cpu_sum             DOUBLE PRECISION NOT NULL,
    cpu_max             DOUBLE PRECISION NOT NULL,
    memory_used_sum     DOUBLE PRECISION NOT NULL,
    memory_total_bytes  BIGINT NOT NULL,
    disk_used_sum       DOUBLE PRECISION NOT NULL,
    disk_total_bytes    BIGINT NOT NULL,
    PRIMARY KEY (agent_id, resolution_seconds, bucket_ms)
);
CREATE INDEX node_samples_age ON node_samples (resolution_seconds, bucket_ms);
GRANT SELECT, INSERT, UPDATE, DELETE ON node_samples TO infrapilot_app;

ALTER TABLE node_samples ENABLE ROW LEVEL SECURITY;
ALTER TABLE node_samples FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON node_samples
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));
