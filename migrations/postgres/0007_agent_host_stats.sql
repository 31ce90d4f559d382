-- The host statistics an agent sends with each heartbeat (CPU, memory, containers, uptime,
-- spool), as JSON with the time they were reported; NULL until the first heartbeat. The node
-- capacity views and plan limits read them.
ALTER TABLE agents ADD COLUMN host_stats TEXT;
