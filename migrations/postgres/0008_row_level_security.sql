-- Row-level security on every table of an organisation's data (every table with org_id).
-- The application connects as infrapilot_app, which owns nothing and cannot bypass RLS; every
-- transaction sets app.current_org_id (Store::begin). A transaction without the setting sees and
-- writes no tenant row (NULLIF turns the unset setting's '' into NULL, and NULL matches nothing).
-- FORCE applies the policies to the tables' owner too, so no path but an explicit policy reads
-- across organisations. A new table with org_id gets the same three lines; a test of the catalogue
-- (host/store/tests/row_level_security.rs) fails on one without.

ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memberships
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sessions
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refresh_tokens
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE mfa_challenges ENABLE ROW LEVEL SECURITY;
ALTER TABLE mfa_challenges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mfa_challenges
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_tokens
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_heads
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE enrollment_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE enrollment_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON enrollment_tokens
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE agents ENABLE ROW LEVEL SECURITY;
ALTER TABLE agents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON agents
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE agent_commands ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_commands FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON agent_commands
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE docker_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE docker_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON docker_events
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE plugin_kv ENABLE ROW LEVEL SECURITY;
ALTER TABLE plugin_kv FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON plugin_kv
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE alert_channels ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_channels FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON alert_channels
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE alert_rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_rules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON alert_rules
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE alert_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON alert_events
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE alert_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON alert_deliveries
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE alert_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_cursors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON alert_cursors
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE proxy_hosts ENABLE ROW LEVEL SECURITY;
ALTER TABLE proxy_hosts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proxy_hosts
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE proxy_domains ENABLE ROW LEVEL SECURITY;
ALTER TABLE proxy_domains FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proxy_domains
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE proxy_revisions ENABLE ROW LEVEL SECURITY;
ALTER TABLE proxy_revisions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proxy_revisions
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE proxy_status ENABLE ROW LEVEL SECURITY;
ALTER TABLE proxy_status FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proxy_status
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE proxy_certificates ENABLE ROW LEVEL SECURITY;
ALTER TABLE proxy_certificates FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proxy_certificates
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));
