//! Status page records: minute buckets of health history (read back as day roll-ups for the
//! 90-day bars), incidents as the detector's JSON, and the webhook outbox (a notification is
//! written in the same transaction as the incident change that caused it, and deleted only
//! once delivered, so neither a restart nor a receiver outage loses it).

use crate::{Db, StoreError};

/// One minute of one series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteRow {
    pub kind: String,
    pub name: String,
    pub minute: i64,
    pub ok: i64,
    pub fault: i64,
}

/// One day of one series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRow {
    pub kind: String,
    pub name: String,
    pub day: i64,
    pub ok: i64,
    pub fault: i64,
}

/// An incident as stored: the detector's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRow {
    pub id: String,
    pub target: String,
    pub open: bool,
    pub updated_ms: i64,
    pub body: String,
}

/// A notification waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub url: String,
    pub body: String,
    pub attempts: i64,
    /// Not to be sent before this (Unix ms).
    pub next_ms: i64,
}

const MINUTES_PER_DAY: i64 = 1440;

/// Add minute buckets (a bucket flushed twice adds up: replicas share one table).
pub async fn add_minutes(db: &Db, rows: &[MinuteRow]) -> Result<(), StoreError> {
    const SQL_LITE: &str = "INSERT INTO status_minutes (kind, name, minute, ok, fault) VALUES (?, ?, ?, ?, ?) \
        ON CONFLICT (kind, name, minute) DO UPDATE SET ok = status_minutes.ok + excluded.ok, fault = status_minutes.fault + excluded.fault";
    const SQL_PG: &str = "INSERT INTO status_minutes (kind, name, minute, ok, fault) VALUES ($1, $2, $3, $4, $5) \
        ON CONFLICT (kind, name, minute) DO UPDATE SET ok = status_minutes.ok + excluded.ok, fault = status_minutes.fault + excluded.fault";
    match db {
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            for r in rows {
                sqlx::query(SQL_LITE)
                    .bind(&r.kind)
                    .bind(&r.name)
                    .bind(r.minute)
                    .bind(r.ok)
                    .bind(r.fault)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            for r in rows {
                sqlx::query(SQL_PG)
                    .bind(&r.kind)
                    .bind(&r.name)
                    .bind(r.minute)
                    .bind(r.ok)
                    .bind(r.fault)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Day roll-ups since `from_day` (Unix day), and removal of minutes older than it.
pub async fn days_since(db: &Db, from_day: i64) -> Result<Vec<DayRow>, StoreError> {
    let from_minute = from_day * MINUTES_PER_DAY;
    let rows: Vec<(String, String, i64, i64, i64)> = match db {
        Db::Sqlite(pool) => {
            sqlx::query("DELETE FROM status_minutes WHERE minute < ?")
                .bind(from_minute)
                .execute(pool)
                .await?;
            sqlx::query_as(
                "SELECT kind, name, minute / 1440 AS day, CAST(SUM(ok) AS INTEGER), CAST(SUM(fault) AS INTEGER) \
                 FROM status_minutes WHERE minute >= ? GROUP BY kind, name, day",
            )
            .bind(from_minute)
            .fetch_all(pool)
            .await?
        }
        Db::Postgres(pool) => {
            sqlx::query("DELETE FROM status_minutes WHERE minute < $1")
                .bind(from_minute)
                .execute(pool)
                .await?;
            sqlx::query_as(
                "SELECT kind, name, minute / 1440 AS day, SUM(ok)::BIGINT, SUM(fault)::BIGINT \
                 FROM status_minutes WHERE minute >= $1 GROUP BY kind, name, day",
            )
            .bind(from_minute)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(kind, name, day, ok, fault)| DayRow {
            kind,
            name,
            day,
            ok,
            fault,
        })
        .collect())
}

/// Open incidents, and resolved ones updated since `since_ms`.
pub async fn incidents(db: &Db, since_ms: i64) -> Result<Vec<IncidentRow>, StoreError> {
    let rows: Vec<(String, String, i64, i64, String)> = match db {
        Db::Sqlite(pool) => {
            sqlx::query_as(
                "SELECT id, target, open, updated_ms, body FROM status_incidents WHERE open = 1 OR updated_ms >= ? ORDER BY updated_ms",
            )
            .bind(since_ms)
            .fetch_all(pool)
            .await?
        }
        Db::Postgres(pool) => {
            sqlx::query_as(
                "SELECT id, target, open, updated_ms, body FROM status_incidents WHERE open = 1 OR updated_ms >= $1 ORDER BY updated_ms",
            )
            .bind(since_ms)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(id, target, open, updated_ms, body)| IncidentRow {
            id,
            target,
            open: open != 0,
            updated_ms,
            body,
        })
        .collect())
}

/// Save incident changes and queue their notifications (`(url, body)`) in one transaction.
pub async fn save_incidents(
    db: &Db,
    incidents: &[IncidentRow],
    notifications: &[(String, String)],
    now_ms: i64,
) -> Result<(), StoreError> {
    const UPSERT_LITE: &str = "INSERT INTO status_incidents (id, target, open, updated_ms, body) VALUES (?, ?, ?, ?, ?) \
        ON CONFLICT (id) DO UPDATE SET open = excluded.open, updated_ms = excluded.updated_ms, body = excluded.body";
    const UPSERT_PG: &str = "INSERT INTO status_incidents (id, target, open, updated_ms, body) VALUES ($1, $2, $3, $4, $5) \
        ON CONFLICT (id) DO UPDATE SET open = excluded.open, updated_ms = excluded.updated_ms, body = excluded.body";
    const OUTBOX_LITE: &str = "INSERT INTO status_outbox (url, body, attempts, next_ms, created_ms) VALUES (?, ?, 0, ?, ?)";
    const OUTBOX_PG: &str = "INSERT INTO status_outbox (url, body, attempts, next_ms, created_ms) VALUES ($1, $2, 0, $3, $4)";
    match db {
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            for i in incidents {
                sqlx::query(UPSERT_LITE)
                    .bind(&i.id)
                    .bind(&i.target)
                    .bind(i64::from(i.open))
                    .bind(i.updated_ms)
                    .bind(&i.body)
                    .execute(&mut *tx)
                    .await?;
            }
            for (url, body) in notifications {
                sqlx::query(OUTBOX_LITE)
                    .bind(url)
                    .bind(body)
                    .bind(now_ms)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            for i in incidents {
                sqlx::query(UPSERT_PG)
                    .bind(&i.id)
                    .bind(&i.target)
                    .bind(i64::from(i.open))
                    .bind(i.updated_ms)
                    .bind(&i.body)
                    .execute(&mut *tx)
                    .await?;
            }
            for (url, body) in notifications {
                sqlx::query(OUTBOX_PG)
                    .bind(url)
                    .bind(body)
                    .bind(now_ms)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

/// The oldest notifications waiting, due or not: a receiver's notifications go out in order,
/// so one not yet due holds back the newer ones for the same URL.
pub async fn outbox_head(db: &Db, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
    let rows: Vec<(i64, String, String, i64, i64)> =
        match db {
            Db::Sqlite(pool) => sqlx::query_as(
                "SELECT id, url, body, attempts, next_ms FROM status_outbox ORDER BY id LIMIT ?",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?,
            Db::Postgres(pool) => sqlx::query_as(
                "SELECT id, url, body, attempts, next_ms FROM status_outbox ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?,
        };
    Ok(rows
        .into_iter()
        .map(|(id, url, body, attempts, next_ms)| OutboxRow {
            id,
            url,
            body,
            attempts,
            next_ms,
        })
        .collect())
}

/// Notifications not yet delivered.
pub async fn outbox_len(db: &Db) -> Result<i64, StoreError> {
    let (n,): (i64,) = match db {
        Db::Sqlite(pool) => {
            sqlx::query_as("SELECT COUNT(*) FROM status_outbox")
                .fetch_one(pool)
                .await?
        }
        Db::Postgres(pool) => {
            sqlx::query_as("SELECT COUNT(*) FROM status_outbox")
                .fetch_one(pool)
                .await?
        }
    };
    Ok(n)
}

/// Delivered: remove it.
pub async fn outbox_delivered(db: &Db, id: i64) -> Result<(), StoreError> {
    match db {
        Db::Sqlite(pool) => {
            sqlx::query("DELETE FROM status_outbox WHERE id = ?")
                .bind(id)
                .execute(pool)
                .await?;
        }
        Db::Postgres(pool) => {
            sqlx::query("DELETE FROM status_outbox WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

/// Delivery failed: try again at `next_ms`.
pub async fn outbox_retry(db: &Db, id: i64, next_ms: i64, error: &str) -> Result<(), StoreError> {
    match db {
        Db::Sqlite(pool) => {
            sqlx::query(
                "UPDATE status_outbox SET attempts = attempts + 1, next_ms = ?, last_error = ? WHERE id = ?",
            )
            .bind(next_ms)
            .bind(error)
            .bind(id)
            .execute(pool)
            .await?;
        }
        Db::Postgres(pool) => {
            sqlx::query(
                "UPDATE status_outbox SET attempts = attempts + 1, next_ms = $1, last_error = $2 WHERE id = $3",
            )
            .bind(next_ms)
            .bind(error)
            .bind(id)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}
