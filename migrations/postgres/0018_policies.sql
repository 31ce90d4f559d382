-- Issue 18: policies, evaluated by policy-engine plugins before node actions, and the
-- violations they found (every decision that is not "allow").
CREATE TABLE policies (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organizations(id),
    name         TEXT NOT NULL,
    -- A template id (no_root_containers …) or "rego": the engine plugin that declares it decides.
    policy_type  TEXT NOT NULL,
    -- JSON object text.
    conditions   TEXT NOT NULL,
    -- block | warn | audit
    action       TEXT NOT NULL,
    enabled      BOOLEAN NOT NULL,
    -- JSON object text: the policy applies to nodes carrying all of these labels ({} = all).
    node_labels  TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE policy_violations (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES organizations(id),
    -- Kept when the policy is deleted (with its name at the time).
    policy_id       TEXT NOT NULL,
    policy_name     TEXT NOT NULL,
    -- container.start …
    action          TEXT NOT NULL,
    -- container:<node id>/<container>, proxy:<id> …
    resource        TEXT NOT NULL,
    agent_id        TEXT,
    -- block | warn | audit
    decision        TEXT NOT NULL,
    -- JSON array of strings.
    reasons         TEXT NOT NULL,
    actor           TEXT NOT NULL,
    -- Set when the policy's engine failed or timed out (a block policy then fails closed): why.
    engine_error    TEXT,
    -- The audit event the violation was committed with.
    audit_event_id  TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX policy_violations_recent ON policy_violations (org_id, created_at, id);
CREATE INDEX policy_violations_policy ON policy_violations (org_id, policy_id, created_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON policies, policy_violations TO infrapilot_app;

ALTER TABLE policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON policies
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

ALTER TABLE policy_violations ENABLE ROW LEVEL SECURITY;
ALTER TABLE policy_violations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON policy_violations
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));
