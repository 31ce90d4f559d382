-- Commands sent to agents (durable, so a command in flight when the host stops is re-delivered
-- with the same idempotency key and runs once), and the Docker events agents report.

-- The agent that runs inside the host process (community mode).
ALTER TABLE agents ADD COLUMN builtin INTEGER NOT NULL DEFAULT 0;

CREATE TABLE agent_commands (
    id               TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES organizations(id),
    agent_id         TEXT NOT NULL REFERENCES agents(id),
    idempotency_key  TEXT NOT NULL,
    kind             TEXT NOT NULL,
    target           TEXT NOT NULL,
    -- The encoded protobuf Command, re-sent as is.
    body             BLOB NOT NULL,
    -- pending | delivered | succeeded | failed | expired
    state            TEXT NOT NULL,
    deliveries       INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    result           TEXT,
    requested_by     TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    UNIQUE (agent_id, idempotency_key)
);
CREATE INDEX agent_commands_open ON agent_commands (agent_id, state);

CREATE TABLE docker_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          TEXT NOT NULL REFERENCES organizations(id),
    agent_id        TEXT NOT NULL REFERENCES agents(id),
    time_ms         INTEGER NOT NULL,
    container_id    TEXT NOT NULL,
    container_name  TEXT NOT NULL,
    action          TEXT NOT NULL,
    exit_code       INTEGER,
    attributes      TEXT NOT NULL
);
CREATE INDEX docker_events_agent ON docker_events (agent_id, id);
