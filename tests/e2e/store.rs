//! The store's behaviour, identical on SQLite and PostgreSQL.

use hookline::config::{DatabaseConfig, DatabaseUrl};
use hookline::store::{Store, StoreError, settings, tenants};
use hookline::tenancy;

use crate::on_both_backends;
use crate::support::{Backend, TestDb};

async fn fresh_store(backend: Backend) -> (Store, TestDb) {
    let db = TestDb::create(backend).await;
    let store = Store::connect(&DatabaseUrl::new(db.url()), &DatabaseConfig::default())
        .await
        .expect("store connects");
    let applied = store.migrate().await.expect("migrations apply");
    assert!(applied >= 1);
    assert_eq!(
        store.migrate().await.unwrap(),
        0,
        "migrating again applies nothing"
    );
    (store, db)
}

on_both_backends!(
    tenant_names_are_unique,
    a_rolled_back_transaction_leaves_nothing,
    bootstrap_happens_once_even_when_nodes_race,
    tokens_are_found_by_hash_and_revoked_per_tenant,
    settings_keep_the_first_value_written,
);

async fn tenant_names_are_unique(backend: Backend) {
    let (store, _db) = fresh_store(backend).await;
    let mut tx = store.begin().await.unwrap();
    let acme = tenants::create_tenant(&mut tx, "acme").await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let error = tenants::create_tenant(&mut tx, "acme").await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Conflict(message) if message.contains("acme")),
        "{error:?}"
    );
    drop(tx);

    assert_eq!(tenants::find_tenant(&store, "acme").await.unwrap(), acme);
    assert_eq!(tenants::find_tenant(&store, &acme.id).await.unwrap(), acme);
    assert!(matches!(
        tenants::find_tenant(&store, "nobody").await,
        Err(StoreError::NotFound)
    ));
}

async fn a_rolled_back_transaction_leaves_nothing(backend: Backend) {
    let (store, _db) = fresh_store(backend).await;
    let mut tx = store.begin().await.unwrap();
    let tenant = tenants::create_tenant(&mut tx, "ghost").await.unwrap();
    let issued = tenancy::issue_token(&mut tx, &tenant.id, "ghost-token")
        .await
        .unwrap();
    drop(tx);
    assert!(tenants::list_tenants(&store).await.unwrap().is_empty());
    let hash = hookline::crypto::sha256_hex(&issued.secret);
    assert_eq!(
        tenants::find_token_by_hash(&store, &hash).await.unwrap(),
        None
    );
}

async fn bootstrap_happens_once_even_when_nodes_race(backend: Backend) {
    let (store, _db) = fresh_store(backend).await;
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { tenancy::bootstrap(&store).await })
        })
        .collect();
    let mut created = 0;
    for racer in racers {
        if racer
            .await
            .unwrap()
            .expect("bootstrap does not fail")
            .is_some()
        {
            created += 1;
        }
    }
    assert_eq!(created, 1, "exactly one node reports a fresh install");
    let all = tenants::list_tenants(&store).await.unwrap();
    assert_eq!(all.len(), 1);
    let tokens = tenants::list_tokens(&store, &all[0].id, None, 10)
        .await
        .unwrap();
    assert_eq!(tokens.len(), 1, "one admin token: {tokens:?}");
    assert!(tenancy::bootstrap(&store).await.unwrap().is_none());
}

async fn tokens_are_found_by_hash_and_revoked_per_tenant(backend: Backend) {
    let (store, _db) = fresh_store(backend).await;
    let mut tx = store.begin().await.unwrap();
    let a = tenants::create_tenant(&mut tx, "a").await.unwrap();
    let b = tenants::create_tenant(&mut tx, "b").await.unwrap();
    let issued = tenancy::issue_token(&mut tx, &a.id, "deploys")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let principal = tenancy::authenticate(&store, &issued.secret).await.unwrap();
    assert_eq!(principal.map(|p| p.tenant_id), Some(a.id.clone()));
    let touched = tenants::get_token(&store, &a.id, &issued.token.id)
        .await
        .unwrap();
    assert!(touched.last_used_at.is_some());

    assert!(matches!(
        tenants::revoke_token(&store, &b.id, &issued.token.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        tenancy::authenticate(&store, &issued.secret)
            .await
            .unwrap()
            .is_some()
    );

    let revoked = tenants::revoke_token(&store, &a.id, &issued.token.id)
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(
        tenancy::authenticate(&store, &issued.secret)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        tenancy::authenticate(&store, "hkl_guess")
            .await
            .unwrap()
            .is_none()
    );
}

async fn settings_keep_the_first_value_written(backend: Backend) {
    let (store, _db) = fresh_store(backend).await;
    assert_eq!(settings::get(&store, "k").await.unwrap(), None);
    assert_eq!(
        settings::insert_if_absent(&store, "k", b"first")
            .await
            .unwrap(),
        b"first"
    );
    assert_eq!(
        settings::insert_if_absent(&store, "k", b"second")
            .await
            .unwrap(),
        b"first"
    );
    assert_eq!(
        settings::get(&store, "k").await.unwrap(),
        Some(b"first".to_vec())
    );
}
