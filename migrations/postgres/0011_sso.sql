-- Single sign-on (issue 16). A provider is an organisation's: a plugin (world `sso-provider`),
-- its settings (secret fields sealed) and the group → role mapping, which is host data: a plugin
-- reports groups, it never grants a role. People are keyed by (provider, subject), never by
-- what a provider says their email is. A login in flight is single use, expires after ten
-- minutes and is bound to the browser that started it (a sealed cookie holds its secret); its
-- one-time exchange code hands the session to the dashboard.

CREATE TABLE sso_providers (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations(id),
    plugin_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    settings      TEXT NOT NULL,
    secrets       BYTEA,
    group_roles   TEXT NOT NULL DEFAULT '[]',
    default_role  TEXT CHECK (default_role IN ('admin', 'operator', 'viewer')),
    enabled       BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE sso_identities (
    provider_id    TEXT NOT NULL REFERENCES sso_providers(id) ON DELETE CASCADE,
    subject        TEXT NOT NULL,
    org_id         TEXT NOT NULL REFERENCES organizations(id),
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    issuer         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_login_at  BIGINT NOT NULL,
    PRIMARY KEY (provider_id, subject)
);
CREATE INDEX sso_identities_user ON sso_identities (user_id);

CREATE TABLE sso_logins (
    id                   TEXT PRIMARY KEY,
    org_id               TEXT NOT NULL REFERENCES organizations(id),
    provider_id          TEXT NOT NULL REFERENCES sso_providers(id) ON DELETE CASCADE,
    state_hash           TEXT NOT NULL,
    browser_hash         TEXT NOT NULL,
    nonce                TEXT NOT NULL,
    callback_url         TEXT NOT NULL,
    code_verifier        BYTEA NOT NULL,
    context              BYTEA,
    created_at           BIGINT NOT NULL,
    expires_at           BIGINT NOT NULL,
    used_at              BIGINT,
    user_id              TEXT REFERENCES users(id) ON DELETE CASCADE,
    exchange_hash        TEXT UNIQUE,
    exchange_expires_at  BIGINT,
    exchanged_at         BIGINT
);
CREATE INDEX sso_logins_expiry ON sso_logins (org_id, expires_at);

ALTER TABLE sso_providers ENABLE ROW LEVEL SECURITY;
ALTER TABLE sso_providers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sso_providers
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));
ALTER TABLE sso_identities ENABLE ROW LEVEL SECURITY;
ALTER TABLE sso_identities FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sso_identities
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));
ALTER TABLE sso_logins ENABLE ROW LEVEL SECURITY;
ALTER TABLE sso_logins FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sso_logins
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), ''))
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), ''));
GRANT SELECT, INSERT, UPDATE, DELETE ON sso_providers, sso_identities, sso_logins TO infrapilot_app;
