-- Single sign-on policy (issue 16): an organisation may require its members to sign in through
-- one of its providers (admins keep their local sign-in for break-glass), and a session knows
-- the provider that made it, so that deleting or turning off a provider ends its sessions.

ALTER TABLE organizations ADD COLUMN require_sso BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sessions ADD COLUMN sso_org_id TEXT;
ALTER TABLE sessions ADD COLUMN sso_provider_id TEXT;
CREATE INDEX sessions_sso_provider ON sessions (sso_provider_id) WHERE sso_provider_id IS NOT NULL;
