-- Installed plugins (host-wide: every organisation sees the same set), the installed licence,
-- plugin-scoped key/value data, and alerting: channels (plugin instances), rules, the history of
-- what fired and resolved, and per-channel deliveries with their retries.

CREATE TABLE plugins (
    id                TEXT PRIMARY KEY,
    version           TEXT NOT NULL,
    world             TEXT NOT NULL,
    edition           TEXT NOT NULL,
    -- manifest.json as shipped (the signature covers these bytes).
    manifest          BYTEA NOT NULL,
    -- The WebAssembly component, in the database so every replica loads the same bytes.
    component         BYTEA NOT NULL,
    component_sha256  TEXT NOT NULL,
    -- Id of the trusted key that signed the bundle; NULL when admitted under the development switch.
    signed_by         TEXT,
    first_party       BOOLEAN NOT NULL DEFAULT FALSE,
    enabled           BOOLEAN NOT NULL DEFAULT FALSE,
    -- The operator's grant (a Capabilities object); the plugin gets manifest ∩ grant.
    grants            TEXT NOT NULL DEFAULT '{}',
    installed_at      BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE licenses (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    body          TEXT NOT NULL,
    installed_at  BIGINT NOT NULL
);

CREATE TABLE plugin_kv (
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    plugin_id   TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       BYTEA NOT NULL,
    PRIMARY KEY (org_id, plugin_id, key)
);

CREATE TABLE alert_channels (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    plugin_id   TEXT NOT NULL REFERENCES plugins(id),
    name        TEXT NOT NULL,
    -- Non-secret settings (JSON object).
    settings    TEXT NOT NULL,
    -- Secret settings (the schema's writeOnly fields), a JSON object sealed with the master key.
    secrets     BYTEA,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE alert_rules (
    id                TEXT PRIMARY KEY,
    org_id            TEXT NOT NULL REFERENCES organizations(id),
    name              TEXT NOT NULL,
    -- container_crashed | restart_loop | cpu_high | memory_high | node_offline
    kind              TEXT NOT NULL,
    -- Kind-specific parameters (JSON object).
    params            TEXT NOT NULL,
    -- Only this node when set.
    agent_id          TEXT REFERENCES agents(id),
    severity          TEXT NOT NULL,
    cooldown_seconds  BIGINT NOT NULL,
    -- JSON array of channel ids.
    channel_ids       TEXT NOT NULL,
    enabled           BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE alert_events (
    id               TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES organizations(id),
    rule_id          TEXT NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    -- What it is about: agent:<id> or container:<agent id>/<name>.
    target           TEXT NOT NULL,
    -- firing | resolved
    state            TEXT NOT NULL,
    severity         TEXT NOT NULL,
    summary          TEXT NOT NULL,
    -- Occurrences folded into this event (repeats within the cooldown).
    occurrences      BIGINT NOT NULL DEFAULT 1,
    fired_at         BIGINT NOT NULL,
    resolved_at      BIGINT
);
CREATE INDEX alert_events_open ON alert_events (org_id, rule_id, target, state);
-- At most one firing event per rule and target, even with several replicas evaluating.
CREATE UNIQUE INDEX alert_events_one_firing ON alert_events (org_id, rule_id, target) WHERE state = 'firing';
CREATE INDEX alert_events_time ON alert_events (org_id, fired_at);

CREATE TABLE alert_deliveries (
    id               TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES organizations(id),
    event_id         TEXT NOT NULL REFERENCES alert_events(id) ON DELETE CASCADE,
    channel_id       TEXT NOT NULL REFERENCES alert_channels(id) ON DELETE CASCADE,
    -- firing | resolved (which transition of the event is announced)
    transition       TEXT NOT NULL,
    -- pending | delivered | failed
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    detail           TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (state, next_attempt_at);
CREATE INDEX alert_deliveries_event ON alert_deliveries (event_id);

-- How far the rules engine has read the Docker events of each organisation.
CREATE TABLE alert_cursors (
    org_id                TEXT PRIMARY KEY REFERENCES organizations(id),
    last_docker_event_id  BIGINT NOT NULL
);
