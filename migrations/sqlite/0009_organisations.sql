-- Organisations (issue 15): sessions, their refresh tokens and pending second sign-in steps become
-- personal (no org_id); invitations to an organisation. (PostgreSQL's migration also adds the
-- row-level security policies; SQLite has none.)
--
-- SQLite cannot drop a column with a foreign key: the tables are rebuilt. Dropping `sessions`
-- deletes the refresh tokens that reference it (ON DELETE CASCADE), so they are kept aside first.

CREATE TABLE sessions_personal (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    access_hash         TEXT NOT NULL UNIQUE,
    access_expires_at   INTEGER NOT NULL,
    refresh_expires_at  INTEGER NOT NULL,
    ip                  TEXT NOT NULL,
    user_agent          TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    last_used_at        INTEGER NOT NULL,
    revoked_at          INTEGER,
    revoked_reason      TEXT
);
INSERT INTO sessions_personal (id, user_id, access_hash, access_expires_at, refresh_expires_at, ip,
    user_agent, created_at, last_used_at, revoked_at, revoked_reason)
    SELECT id, user_id, access_hash, access_expires_at, refresh_expires_at, ip, user_agent,
        created_at, last_used_at, revoked_at, revoked_reason FROM sessions;
CREATE TABLE refresh_tokens_kept (token_hash TEXT, session_id TEXT, created_at INTEGER, used_at INTEGER);
INSERT INTO refresh_tokens_kept SELECT token_hash, session_id, created_at, used_at FROM refresh_tokens;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
ALTER TABLE sessions_personal RENAME TO sessions;
CREATE INDEX sessions_user ON sessions (user_id);
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    used_at     INTEGER
);
INSERT INTO refresh_tokens SELECT token_hash, session_id, created_at, used_at FROM refresh_tokens_kept;
DROP TABLE refresh_tokens_kept;

CREATE TABLE mfa_challenges_personal (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
INSERT INTO mfa_challenges_personal SELECT token_hash, user_id, expires_at, attempts FROM mfa_challenges;
DROP TABLE mfa_challenges;
ALTER TABLE mfa_challenges_personal RENAME TO mfa_challenges;

CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    token_hash  TEXT NOT NULL UNIQUE,
    invited_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    accepted_at INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX invitations_org ON invitations (org_id, created_at);
