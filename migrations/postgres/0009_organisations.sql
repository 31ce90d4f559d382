-- Organisations (issue 15).
--
-- A person is not an organisation's: sessions, their refresh tokens and pending second sign-in
-- steps become personal (no org_id, no row-level security); the organisation of a request is
-- chosen per request among the person's memberships.
--
-- Lookups that must find a row before its organisation is known go through narrow policies that
-- show a row only to whoever presents its secret or is its subject (the system path,
-- ARCHITECTURE.md "Tenancy"):
--   credential_lookup  an API token, an enrollment token or an invitation whose hash is in
--                      app.credential_hash (set by Store::lookup for one statement's transaction);
--   own_memberships    the memberships of the person in app.current_user_id.
-- Both are SELECT only: every change is made in a tenant transaction of the row's organisation.

DROP POLICY tenant_isolation ON sessions;
ALTER TABLE sessions NO FORCE ROW LEVEL SECURITY;
ALTER TABLE sessions DISABLE ROW LEVEL SECURITY;
DROP INDEX sessions_user;
ALTER TABLE sessions DROP COLUMN org_id;
CREATE INDEX sessions_user ON sessions (user_id);

DROP POLICY tenant_isolation ON refresh_tokens;
ALTER TABLE refresh_tokens NO FORCE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens DISABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens DROP COLUMN org_id;

DROP POLICY tenant_isolation ON mfa_challenges;
ALTER TABLE mfa_challenges NO FORCE ROW LEVEL SECURITY;
ALTER TABLE mfa_challenges DISABLE ROW LEVEL SECURITY;
ALTER TABLE mfa_challenges DROP COLUMN org_id;

CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    token_hash  TEXT NOT NULL UNIQUE,
    invited_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    accepted_at BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX invitations_org ON invitations (org_id, created_at);
ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));

CREATE POLICY credential_lookup ON api_tokens FOR SELECT
    USING (token_hash = NULLIF(current_setting('app.credential_hash', true), ''));
CREATE POLICY credential_lookup ON enrollment_tokens FOR SELECT
    USING (token_hash = NULLIF(current_setting('app.credential_hash', true), ''));
CREATE POLICY credential_lookup ON invitations FOR SELECT
    USING (token_hash = NULLIF(current_setting('app.credential_hash', true), ''));
CREATE POLICY own_memberships ON memberships FOR SELECT
    USING (user_id = NULLIF(current_setting('app.current_user_id', true), ''));
