-- Agents: the host's CA, enrollment tokens and enrolled agents.

-- One CA per installation (shared by all replicas); its key is sealed under the master key.
CREATE TABLE host_ca (
    id          TEXT PRIMARY KEY CHECK (id = 'default'),
    cert_pem    TEXT NOT NULL,
    sealed_key  BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE enrollment_tokens (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    token_hash  TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    labels      TEXT NOT NULL,
    max_uses    INTEGER NOT NULL CHECK (max_uses > 0),
    uses        INTEGER NOT NULL DEFAULT 0,
    expires_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
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
    cert_expires_at     INTEGER NOT NULL,
    enrolled_at         INTEGER NOT NULL,
    last_seen_at        INTEGER,
    revoked_at          INTEGER,
    UNIQUE (org_id, name)
);
