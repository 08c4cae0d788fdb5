-- Status page: health history in one-minute buckets (rolled up per day for 90 days on read),
-- incidents (the detector's state, JSON), and the webhook outbox.
CREATE TABLE IF NOT EXISTS status_minutes (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    minute BIGINT NOT NULL,
    ok BIGINT NOT NULL,
    fault BIGINT NOT NULL,
    PRIMARY KEY (kind, name, minute)
);
CREATE TABLE IF NOT EXISTS status_incidents (
    id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    open BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS status_outbox (
    id BIGSERIAL PRIMARY KEY,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS status_outbox_next ON status_outbox (next_ms);
