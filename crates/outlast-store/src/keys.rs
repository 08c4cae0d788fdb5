//! Virtual keys: generated from 32 random bytes, shown once, stored as a SHA-256 hash (a
//! random 256-bit key needs no slow hash: there is nothing to brute-force). The gateway loads
//! the active keys into memory and looks them up by hash.

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Db, StoreError};

/// Every key starts with this, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "olk-";

/// What a key may do. `None` means no limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyLimits {
    /// Models (route names or `provider/model`) the key may use; empty: any.
    pub models: Vec<String>,
    /// `critical`, `default` or `sheddable`.
    pub priority: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u64>,
    pub budget_daily_usd: Option<f64>,
    pub budget_monthly_usd: Option<f64>,
}

/// A stored key, without the key itself.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the key.
    pub hash: String,
    /// The first characters of the key, for people to tell keys apart.
    pub prefix: String,
    pub limits: KeyLimits,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// A freshly created key: `secret` is shown once and never stored.
#[derive(Debug)]
pub struct NewKey {
    pub secret: String,
    pub record: KeyRecord,
}

/// Hex SHA-256 of a presented key.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.map(|n| u64::try_from(n).unwrap_or(0))
}

const COLUMNS: &str = "id, name, hash, prefix, models, priority, rpm, tpm, max_concurrent, \
     budget_daily_usd, budget_monthly_usd, created_ms, revoked_ms";

macro_rules! record_from_row {
    ($row:expr) => {{
        let row = $row;
        let models: String = row.try_get("models")?;
        KeyRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            hash: row.try_get("hash")?,
            prefix: row.try_get("prefix")?,
            limits: KeyLimits {
                models: models
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
                priority: row.try_get("priority")?,
                rpm: to_u64(row.try_get("rpm")?),
                tpm: to_u64(row.try_get("tpm")?),
                max_concurrent: to_u64(row.try_get("max_concurrent")?),
                budget_daily_usd: row.try_get("budget_daily_usd")?,
                budget_monthly_usd: row.try_get("budget_monthly_usd")?,
            },
            created_ms: row.try_get("created_ms")?,
            revoked_ms: row.try_get("revoked_ms")?,
        }
    }};
}

impl Db {
    /// Create a key with these limits; the returned secret is the only copy.
    pub async fn create_key(&self, name: &str, limits: KeyLimits) -> Result<NewKey, StoreError> {
        let secret = format!("{KEY_PREFIX}{}", random_hex(32)?);
        let id = format!("key_{}", random_hex(8)?);
        let record = KeyRecord {
            id,
            name: name.to_string(),
            hash: hash_key(&secret),
            prefix: secret.chars().take(KEY_PREFIX.len() + 6).collect(),
            limits,
            created_ms: now_ms(),
            revoked_ms: None,
        };
        let r = &record;
        let l = &r.limits;
        let models = l.models.join(",");
        macro_rules! bind_all {
            ($q:expr) => {
                $q.bind(&r.id)
                    .bind(&r.name)
                    .bind(&r.hash)
                    .bind(&r.prefix)
                    .bind(&models)
                    .bind(&l.priority)
                    .bind(to_i64(l.rpm))
                    .bind(to_i64(l.tpm))
                    .bind(to_i64(l.max_concurrent))
                    .bind(l.budget_daily_usd)
                    .bind(l.budget_monthly_usd)
                    .bind(r.created_ms)
            };
        }
        match self {
            Db::Sqlite(pool) => {
                let sql = format!(
                    "INSERT INTO virtual_keys ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,NULL)"
                );
                bind_all!(sqlx::query(&sql)).execute(pool).await?;
            }
            Db::Postgres(pool) => {
                let sql = format!(
                    "INSERT INTO virtual_keys ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,NULL)"
                );
                bind_all!(sqlx::query(&sql)).execute(pool).await?;
            }
        }
        Ok(NewKey { secret, record })
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM virtual_keys ORDER BY created_ms, id");
        let mut out = Vec::new();
        match self {
            Db::Sqlite(pool) => {
                for row in sqlx::query(&sql).fetch_all(pool).await? {
                    out.push(record_from_row!(&row));
                }
            }
            Db::Postgres(pool) => {
                for row in sqlx::query(&sql).fetch_all(pool).await? {
                    out.push(record_from_row!(&row));
                }
            }
        }
        Ok(out)
    }

    /// Revoke by id; `false` if there is no such active key.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = match self {
            Db::Sqlite(pool) => sqlx::query(
                "UPDATE virtual_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected(),
            Db::Postgres(pool) => sqlx::query(
                "UPDATE virtual_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(done > 0)
    }
}
