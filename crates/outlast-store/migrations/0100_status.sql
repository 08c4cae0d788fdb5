-- Status page: health history in one-minute buckets (rolled up per day for 90 days on read),
-- incidents (the detector's state, JSON), and the webhook outbox.
CREATE TABLE IF NOT EXISTS status_minutes (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    minute INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    fault INTEGER NOT NULL,
    PRIMARY KEY (kind, name, minute)
);
CREATE TABLE IF NOT EXISTS status_incidents (
    id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    open INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS status_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS status_outbox_next ON status_outbox (next_ms);
