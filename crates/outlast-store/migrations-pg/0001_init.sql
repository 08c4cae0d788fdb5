CREATE TABLE IF NOT EXISTS outlast_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO outlast_meta (key, value) VALUES ('schema', 'outlast') ON CONFLICT DO NOTHING;
