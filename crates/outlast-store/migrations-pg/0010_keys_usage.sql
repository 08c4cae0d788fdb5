-- Virtual keys (only a SHA-256 of each key is kept) and the usage ledger.
CREATE TABLE IF NOT EXISTS virtual_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    models TEXT NOT NULL DEFAULT '',
    priority TEXT NOT NULL DEFAULT 'default',
    rpm BIGINT,
    tpm BIGINT,
    max_concurrent BIGINT,
    budget_daily_usd DOUBLE PRECISION,
    budget_monthly_usd DOUBLE PRECISION,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
CREATE TABLE IF NOT EXISTS usage_ledger (
    id BIGSERIAL PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    key_id TEXT,
    route TEXT NOT NULL,
    target TEXT,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    price_known BOOLEAN NOT NULL,
    latency_ms BIGINT NOT NULL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_ledger_key_ts ON usage_ledger (key_id, ts_ms);
