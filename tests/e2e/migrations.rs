//! The SQLite and PostgreSQL migration sets must not drift apart.

use std::collections::BTreeMap;

use hookline::config::{Backend as DbBackend, DatabaseConfig, DatabaseUrl};
use hookline::store::Store;

use crate::support::{Backend, TestDb};

#[test]
fn both_backends_have_the_same_migration_versions_and_names() {
    let sqlite = Store::migrations(DbBackend::Sqlite);
    let postgres = Store::migrations(DbBackend::Postgres);
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres);
}

/// Every table with its columns, as the database itself reports them.
async fn schema_of(store: &Store) -> BTreeMap<String, Vec<String>> {
    let rows: Vec<(String, String)> = match store {
        Store::Sqlite(sqlite) => sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations' \
             ORDER BY m.name, p.cid",
        )
        .fetch_all(&sqlite.reader)
        .await
        .unwrap(),
        Store::Postgres(pool) => sqlx::query_as(
            "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c \
             JOIN information_schema.tables t ON t.table_schema = c.table_schema \
               AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE' \
             WHERE c.table_schema = current_schema() AND c.table_name <> '_sqlx_migrations' \
             ORDER BY c.table_name, c.ordinal_position",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
    };
    let mut schema: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, column) in rows {
        schema.entry(table).or_default().push(column);
    }
    schema
}

#[tokio::test]
async fn both_backends_end_with_the_same_tables_and_columns() {
    let Some(postgres_backend) = Backend::postgres_or_skip().await else {
        return;
    };
    let mut schemas = Vec::new();
    for backend in [Backend::Sqlite, postgres_backend] {
        let db = TestDb::create(backend).await;
        let store = Store::connect(&DatabaseUrl::new(db.url()), &DatabaseConfig::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        schemas.push(schema_of(&store).await);
        store.close().await;
    }
    assert!(schemas[0].contains_key("api_tokens"), "{:?}", schemas[0]);
    let [mut sqlite, mut postgres] = <[_; 2]>::try_from(schemas).unwrap();
    // The one difference on purpose: PostgreSQL keeps the queue state in a table of its own, so
    // a result is a HOT update of the delivery (see src/store/outbound.rs); SQLite keeps it in
    // `deliveries`. Exactly these columns, nothing else.
    let queue_columns = ["next_attempt_at", "lease_owner", "lease_until"];
    assert_eq!(
        postgres.remove("delivery_queue").unwrap(),
        [
            "delivery_id",
            "endpoint_id",
            "next_attempt_at",
            "lease_owner",
            "lease_until",
            "created_at"
        ]
    );
    let deliveries = sqlite.get_mut("deliveries").unwrap();
    for column in queue_columns {
        let at = deliveries.iter().position(|c| c == column).unwrap();
        deliveries.remove(at);
    }
    assert_eq!(sqlite, postgres, "SQLite and PostgreSQL schemas differ");
}
