//! The usage ledger: one row per request (key, route, target, tokens, cost, latency,
//! outcome), inserted in batches of one transaction each.

use sqlx::Row;

use crate::{Db, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The virtual key's id; `None` for static keys or an open gateway.
    pub key_id: Option<String>,
    /// The model name the client sent.
    pub route: String,
    /// `provider/model` that answered, if any did.
    pub target: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    /// `false` when the target is missing from the price table: tokens are counted, cost 0.
    pub price_known: bool,
    pub latency_ms: u64,
    pub status: u16,
    /// `ok`, `error`, `shed`, `rate_limited`, ...
    pub outcome: String,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Db {
    /// Write rows in one transaction.
    pub async fn insert_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        macro_rules! bind_row {
            ($q:expr, $r:expr) => {
                $q.bind($r.ts_ms)
                    .bind(&$r.key_id)
                    .bind(&$r.route)
                    .bind(&$r.target)
                    .bind(i($r.prompt_tokens))
                    .bind(i($r.completion_tokens))
                    .bind($r.cost_usd)
                    .bind($r.price_known)
                    .bind(i($r.latency_ms))
                    .bind(i32::from($r.status))
                    .bind(&$r.outcome)
            };
        }
        const COLS: &str = "ts_ms, key_id, route, target, prompt_tokens, completion_tokens, \
             cost_usd, price_known, latency_ms, status, outcome";
        match self {
            Db::Sqlite(pool) => {
                let sql =
                    format!("INSERT INTO usage_ledger ({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)");
                let mut tx = pool.begin().await?;
                for r in rows {
                    bind_row!(sqlx::query(&sql), r).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let sql = format!(
                    "INSERT INTO usage_ledger ({COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
                );
                let mut tx = pool.begin().await?;
                for r in rows {
                    bind_row!(sqlx::query(&sql), r).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Spend per key since `since_ms` (for budgets after a restart).
    pub async fn spend_since(&self, since_ms: i64) -> Result<Vec<(String, f64)>, StoreError> {
        let mut out = Vec::new();
        match self {
            Db::Sqlite(pool) => {
                let rows = sqlx::query(
                    "SELECT key_id, SUM(cost_usd) AS spent FROM usage_ledger \
                     WHERE key_id IS NOT NULL AND ts_ms >= ? GROUP BY key_id",
                )
                .bind(since_ms)
                .fetch_all(pool)
                .await?;
                for r in rows {
                    out.push((r.try_get("key_id")?, r.try_get("spent")?));
                }
            }
            Db::Postgres(pool) => {
                let rows = sqlx::query(
                    "SELECT key_id, SUM(cost_usd) AS spent FROM usage_ledger \
                     WHERE key_id IS NOT NULL AND ts_ms >= $1 GROUP BY key_id",
                )
                .bind(since_ms)
                .fetch_all(pool)
                .await?;
                for r in rows {
                    out.push((r.try_get("key_id")?, r.try_get("spent")?));
                }
            }
        }
        Ok(out)
    }

    /// Rows in the ledger (for tests and the shutdown check).
    pub async fn usage_count(&self) -> Result<i64, StoreError> {
        Ok(match self {
            Db::Sqlite(pool) => sqlx::query("SELECT COUNT(*) AS n FROM usage_ledger")
                .fetch_one(pool)
                .await?
                .try_get("n")?,
            Db::Postgres(pool) => sqlx::query("SELECT COUNT(*) AS n FROM usage_ledger")
                .fetch_one(pool)
                .await?
                .try_get("n")?,
        })
    }
}
