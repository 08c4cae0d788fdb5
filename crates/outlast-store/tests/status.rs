//! Status records: minute buckets roll up into days, incidents and the outbox survive.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use outlast_store::Db;
use outlast_store::status::{self, IncidentRow, MinuteRow};

#[tokio::test]
async fn sqlite_minutes_roll_up_and_outbox_is_durable() {
    exercise(&Db::open_memory().await.unwrap()).await;
}

/// The same against PostgreSQL, in a schema of this test's own that is dropped afterwards.
#[tokio::test]
async fn postgres_minutes_roll_up_and_outbox_is_durable() {
    let base = std::env::var("OUTLAST_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("outlast_status_test_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&base)
        .await
        .expect("PostgreSQL must be running (scripts/services starts it)");
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{base}?options=-csearch_path%3D{schema}");
    let result = tokio::spawn(async move {
        let db = Db::open_postgres(&url).await.unwrap();
        exercise(&db).await;
    })
    .await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    result.unwrap();
}

async fn exercise(db: &Db) {
    let db = db.clone();
    let day = 19_000;
    let m = |minute, ok, fault| MinuteRow {
        kind: "target".into(),
        name: "a/m".into(),
        minute,
        ok,
        fault,
    };
    status::add_minutes(&db, &[m(day * 1440, 3, 1), m(day * 1440 + 5, 2, 0)])
        .await
        .unwrap();
    status::add_minutes(&db, &[m(day * 1440, 1, 1), m((day - 100) * 1440, 9, 9)])
        .await
        .unwrap();
    let days = status::days_since(&db, day - 89).await.unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!((days[0].day, days[0].ok, days[0].fault), (day, 6, 2));

    let inc = IncidentRow {
        id: "x1".into(),
        target: "a/m".into(),
        open: true,
        updated_ms: 10,
        body: "{}".into(),
    };
    status::save_incidents(
        &db,
        std::slice::from_ref(&inc),
        &[
            ("http://h/1".into(), "b1".into()),
            ("http://h/2".into(), "b2".into()),
        ],
        100,
    )
    .await
    .unwrap();
    let closed = IncidentRow {
        open: false,
        updated_ms: 20,
        ..inc
    };
    status::save_incidents(&db, &[closed], &[], 100)
        .await
        .unwrap();
    let all = status::incidents(&db, 0).await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(!all[0].open);
    assert!(status::incidents(&db, 30).await.unwrap().is_empty());

    let due = status::outbox_head(&db, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].url, "http://h/1");
    status::outbox_retry(&db, due[0].id, 500, "refused")
        .await
        .unwrap();
    status::outbox_delivered(&db, due[1].id).await.unwrap();
    let again = status::outbox_head(&db, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].attempts, again[0].next_ms), (1, 500));
    assert_eq!(status::outbox_len(&db).await.unwrap(), 1);
}
