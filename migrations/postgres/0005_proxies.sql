-- Reverse proxy hosts per node, the domains they claim (unique per node), and the revisions of
-- each node's whole proxy configuration: every change makes a revision (a snapshot of the node's
-- hosts) and one durable apply command, whose stored result is the apply status.

CREATE TABLE proxy_hosts (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    -- The validated, normalised host (JSON).
    spec        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX proxy_hosts_agent ON proxy_hosts (org_id, agent_id);

CREATE TABLE proxy_domains (
    agent_id  TEXT NOT NULL REFERENCES agents(id),
    domain    TEXT NOT NULL,
    org_id    TEXT NOT NULL REFERENCES organizations(id),
    proxy_id  TEXT NOT NULL REFERENCES proxy_hosts(id) ON DELETE CASCADE,
    PRIMARY KEY (agent_id, domain)
);
CREATE INDEX proxy_domains_proxy ON proxy_domains (proxy_id);

CREATE TABLE proxy_revisions (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    agent_id    TEXT NOT NULL REFERENCES agents(id),
    number      BIGINT NOT NULL,
    -- JSON array of {"id", "spec"}: every host of the node at this revision.
    hosts       TEXT NOT NULL,
    -- The apply command (agent_commands.id); its state and result are the apply status.
    command_id  TEXT NOT NULL,
    -- What made it: create, update, delete, reapply, rollback.
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (agent_id, number)
);
CREATE INDEX proxy_revisions_org ON proxy_revisions (org_id, agent_id, number);

-- The last status report of each node's proxy: drift (hosts whose files on the node differ from
-- what was applied) and certificates with their TLS scores, sent by the node or fetched on demand.
CREATE TABLE proxy_status (
    agent_id       TEXT PRIMARY KEY REFERENCES agents(id),
    org_id         TEXT NOT NULL REFERENCES organizations(id),
    revision       BIGINT NOT NULL,
    -- JSON ProxyNodeStatus.
    status         TEXT NOT NULL,
    checked_at     BIGINT NOT NULL
);
