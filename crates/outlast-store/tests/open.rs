//! The store opens, migrates and survives reopening; PostgreSQL is used for real when the
//! machine runs it (CI starts it).

// Test crate: helpers panic on purpose, a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use outlast_store::Db;

#[tokio::test]
async fn sqlite_file_is_created_and_migrated_idempotently() {
    let dir = std::env::temp_dir().join(format!("outlast-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for _ in 0..2 {
        let Db::Sqlite(pool) = Db::open_sqlite(&dir).await.unwrap() else {
            panic!("sqlite")
        };
        let v: (String,) = sqlx::query_as("SELECT value FROM outlast_meta WHERE key = 'schema'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(v.0, "outlast");
        pool.close().await;
    }
    assert!(dir.join("outlast.db").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// PostgreSQL at 127.0.0.1:5432, database `test`, in a schema of this test's own that is
/// dropped afterwards. `scripts/services` starts PostgreSQL; set OUTLAST_TEST_PG_URL to use
/// another server.
#[tokio::test]
async fn postgres_is_migrated_in_a_schema_of_its_own() {
    let base = std::env::var("OUTLAST_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("outlast_test_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&base)
        .await
        .expect("PostgreSQL must be running (scripts/services starts it)");
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{base}?options=-csearch_path%3D{schema}");
    let result = async {
        let Db::Postgres(pool) = Db::open_postgres(&url).await.unwrap() else {
            panic!("postgres")
        };
        let v: (String,) = sqlx::query_as("SELECT value FROM outlast_meta WHERE key = 'schema'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        v.0
    }
    .await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    assert_eq!(result, "outlast");
}
