-- Schema bookkeeping only; each concern adds its tables in its own migration
-- (0010-0099: keys and usage; 0100-0199: status history, incidents, notifications).
CREATE TABLE IF NOT EXISTS outlast_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO outlast_meta (key, value) VALUES ('schema', 'outlast');
