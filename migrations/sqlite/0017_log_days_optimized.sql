-- Issue 17: a day's text index is merged into one segment once the day is over (ingest leaves
-- many); this marks the days that were.
ALTER TABLE log_days ADD COLUMN optimized INTEGER NOT NULL DEFAULT 0;
