-- Unified logs (issue 17). A node's spool is committed here: `spool_cursors` remembers, per agent
-- and spool epoch, the last sequence stored (in the same transaction as the lines), so a batch
-- sent again after a reconnect is skipped; `log_gaps` records what a node dropped past its
-- spool's bound. Lines live in one table per day, `log_lines_<yyyymmdd>`, with its FTS5 index
-- `log_text_<yyyymmdd>` (trigram tokenizer: any substring of three characters or more), made
-- when the first line of that day arrives and listed in `log_days`; retention drops whole days.
CREATE TABLE spool_cursors (
    org_id          TEXT NOT NULL REFERENCES organizations(id),
    agent_id        TEXT NOT NULL,
    epoch           INTEGER NOT NULL,
    committed_seq   INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (agent_id, epoch)
);

CREATE TABLE log_gaps (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    agent_id    TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX log_gaps_org ON log_gaps (org_id, recorded_at);

CREATE TABLE log_days (
    day INTEGER PRIMARY KEY
);

CREATE TABLE log_settings (
    org_id          TEXT PRIMARY KEY REFERENCES organizations(id),
    retention_days  INTEGER NOT NULL
);
