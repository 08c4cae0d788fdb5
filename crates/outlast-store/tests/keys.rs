#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use outlast_store::Db;
use outlast_store::keys::{KeyLimits, hash_key};
use outlast_store::usage::UsageRow;

#[tokio::test]
async fn key_lifecycle_stores_only_the_hash() {
    let db = Db::open_memory().await.unwrap();
    let limits = KeyLimits {
        models: vec!["chat".into(), "openai/gpt-4o".into()],
        priority: "critical".into(),
        rpm: Some(60),
        tpm: None,
        max_concurrent: Some(2),
        budget_daily_usd: Some(1.0),
        budget_monthly_usd: None,
    };
    let new = db.create_key("ci", limits.clone()).await.unwrap();
    assert!(new.secret.starts_with("olk-") && new.secret.len() == 68);
    let keys = db.list_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].hash, hash_key(&new.secret));
    assert_eq!(keys[0].limits, limits);
    assert!(!format!("{keys:?}").contains(&new.secret));
    assert!(db.revoke_key(&new.record.id).await.unwrap());
    assert!(!db.revoke_key(&new.record.id).await.unwrap());
    assert!(db.list_keys().await.unwrap()[0].revoked_ms.is_some());
}

#[tokio::test]
async fn ledger_sums_spend_per_key() {
    let db = Db::open_memory().await.unwrap();
    let row = |key: Option<&str>, ts, cost| UsageRow {
        ts_ms: ts,
        key_id: key.map(str::to_string),
        route: "chat".into(),
        target: Some("a/m".into()),
        prompt_tokens: 10,
        completion_tokens: 5,
        cost_usd: cost,
        price_known: true,
        latency_ms: 3,
        status: 200,
        outcome: "ok".into(),
    };
    db.insert_usage(&[
        row(Some("k1"), 100, 0.5),
        row(Some("k1"), 200, 0.25),
        row(None, 200, 9.0),
        row(Some("k2"), 50, 1.0),
    ])
    .await
    .unwrap();
    assert_eq!(db.usage_count().await.unwrap(), 4);
    let mut spend = db.spend_since(100).await.unwrap();
    spend.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(spend, vec![("k1".to_string(), 0.75)]);
}

/// The same on PostgreSQL (127.0.0.1:5432, database `test`), in a schema of its own.
#[tokio::test]
async fn keys_and_ledger_on_postgres() {
    let base = std::env::var("OUTLAST_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("outlast_keys_test_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&base)
        .await
        .expect("PostgreSQL must be running (scripts/services starts it)");
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{base}?options=-csearch_path%3D{schema}");
    let outcome = tokio::spawn(async move {
        let db = Db::open_postgres(&url).await.unwrap();
        let new = db
            .create_key(
                "pg",
                KeyLimits {
                    priority: "default".into(),
                    rpm: Some(5),
                    ..KeyLimits::default()
                },
            )
            .await
            .unwrap();
        let keys = db.list_keys().await.unwrap();
        assert_eq!(keys[0].hash, hash_key(&new.secret));
        assert_eq!(keys[0].limits.rpm, Some(5));
        assert!(db.revoke_key(&new.record.id).await.unwrap());
        db.insert_usage(&[UsageRow {
            ts_ms: 10,
            key_id: Some(new.record.id.clone()),
            route: "chat".into(),
            target: None,
            prompt_tokens: 1,
            completion_tokens: 2,
            cost_usd: 0.5,
            price_known: false,
            latency_ms: 1,
            status: 503,
            outcome: "unavailable".into(),
        }])
        .await
        .unwrap();
        assert_eq!(db.usage_count().await.unwrap(), 1);
        assert_eq!(db.spend_since(0).await.unwrap(), vec![(new.record.id, 0.5)]);
    })
    .await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    outcome.unwrap();
}
