-- Virtual keys (only a SHA-256 of each key is kept) and the usage ledger.
CREATE TABLE IF NOT EXISTS virtual_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    models TEXT NOT NULL DEFAULT '',
    priority TEXT NOT NULL DEFAULT 'default',
    rpm INTEGER,
    tpm INTEGER,
    max_concurrent INTEGER,
    budget_daily_usd REAL,
    budget_monthly_usd REAL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS usage_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    key_id TEXT,
    route TEXT NOT NULL,
    target TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    price_known INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_ledger_key_ts ON usage_ledger (key_id, ts_ms);
