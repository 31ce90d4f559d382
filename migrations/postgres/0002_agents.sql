-- Agents: the host's CA, enrollment tokens and enrolled agents.

-- One CA per installation (shared by all replicas); its key is sealed under the master key.
CREATE TABLE host_ca (
    id          TEXT PRIMARY KEY CHECK (id = 'default'),
    cert_pem    TEXT NOT NULL,
    sealed_key  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE enrollment_tokens (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    token_hash  TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    labels      TEXT NOT NULL,
    max_uses    BIGINT NOT NULL CHECK (max_uses > 0),
    uses        BIGINT NOT NULL DEFAULT 0,
    expires_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX enrollment_tokens_org ON enrollment_tokens (org_id);

CREATE TABLE agents (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL REFERENCES organizations(id),
    name                TEXT NOT NULL,
    labels              TEXT NOT NULL,
    version             TEXT NOT NULL,
    enrollment_token_id TEXT,
    cert_serial         TEXT NOT NULL,
    cert_fingerprint    TEXT NOT NULL UNIQUE,
    cert_expires_at     BIGINT NOT NULL,
    enrolled_at         BIGINT NOT NULL,
    last_seen_at        BIGINT,
    revoked_at          BIGINT,
    UNIQUE (org_id, name)
);
