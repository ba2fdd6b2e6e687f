//! The store's behaviour, identical on SQLite and PostgreSQL.

use hookline::config::{DatabaseConfig, DatabaseUrl};
use hookline::ids::{self, Kind};
use hookline::outbound::publisher::PublishWriter;
use hookline::store::inbound::{self as kept, InboundDelivery};
use hookline::store::outbound as queue;
use hookline::store::record::{self, AnalysisRow, BranchRow, CommitRow, PushRows};
use hookline::store::services::{self, Service};
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
    a_batch_of_pushes_writes_each_delivery_once_or_nothing_at_all,
    published_events_are_written_together_and_a_bad_one_fails_alone,
    the_publish_version_moves_with_what_a_publish_plans_from_and_nothing_else,
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

/// A verified push delivery for `service` and the rows it records: one commit on `main`, with an
/// analysis job.
fn push_delivery(service: &Service, dedupe_key: &str, sha: &str) -> (InboundDelivery, PushRows) {
    let delivery = InboundDelivery {
        id: ids::new(Kind::InboundDelivery),
        tenant_id: Some(service.tenant_id.clone()),
        source: "github".to_owned(),
        targets: format!("[\"{}\"]", service.id),
        delivery_key: Some(dedupe_key.to_owned()),
        dedupe_key: Some(dedupe_key.to_owned()),
        event: "push".to_owned(),
        action: None,
        repository: Some(service.repository.clone()),
        content_type: "application/json".to_owned(),
        headers: "{}".to_owned(),
        body: b"{}".to_vec(),
        body_encoding: kept::BODY_IDENTITY.to_owned(),
        body_size: 2,
        verification: "verified".to_owned(),
        result: "processed".to_owned(),
        error: None,
        summary: "{}".to_owned(),
        received_at: 1,
        duration_ms: 0,
        replays: 0,
    };
    let commit_id = ids::new(Kind::Commit);
    let rows = PushRows {
        delivery_id: delivery.id.clone(),
        commits: vec![CommitRow {
            id: commit_id.clone(),
            tenant_id: service.tenant_id.clone(),
            service_id: service.id.clone(),
            sha: sha.to_owned(),
            message: format!("commit {sha}"),
            author_name: "Jane".to_owned(),
            author_email: "jane@example.com".to_owned(),
            committed_at: Some(1),
            url: format!("https://github.com/acme/api/commit/{sha}"),
            repository: service.repository.clone(),
            added: "[]".to_owned(),
            removed: "[]".to_owned(),
            modified: "[\"src/lib.rs\"]".to_owned(),
            forced: false,
        }],
        branches: vec![BranchRow {
            service_id: service.id.clone(),
            sha: sha.to_owned(),
            branch: "main".to_owned(),
        }],
        analyses: vec![AnalysisRow {
            id: ids::new(Kind::AnalysisJob),
            tenant_id: service.tenant_id.clone(),
            service_id: service.id.clone(),
            commit_id,
        }],
    };
    (delivery, rows)
}

async fn a_batch_of_pushes_writes_each_delivery_once_or_nothing_at_all(backend: Backend) {
    // On SQLite the writer's own connection writes such batches; without it (a database in
    // memory) sqlx does, as on PostgreSQL.
    for own_connection in [true, false] {
        batch_of_pushes(backend, own_connection).await;
    }
}

async fn batch_of_pushes(backend: Backend, own_connection: bool) {
    let (store, _db) = fresh_store(backend).await;
    let mut direct = store.open_direct().unwrap().filter(|_| own_connection);
    assert_eq!(
        direct.is_some(),
        own_connection && backend == Backend::Sqlite,
        "a SQLite file opens a direct connection; PostgreSQL none"
    );
    let mut tx = store.begin().await.unwrap();
    let tenant = tenants::create_tenant(&mut tx, "acme").await.unwrap();
    tx.commit().await.unwrap();
    let service = Service {
        id: ids::new(Kind::Service),
        tenant_id: tenant.id.clone(),
        name: "api".to_owned(),
        repository: "acme/api".to_owned(),
        repository_key: "acme/api".to_owned(),
        github_token: None,
        auto_analyze: true,
        webhook_secret: None,
        webhook_secret_created_at: None,
        previous_webhook_secret: None,
        previous_secret_until: None,
        created_at: 1,
        updated_at: 1,
    };
    services::insert(&store, &service).await.unwrap();
    let sha = |n: u8| format!("{n:0>40}");
    let commit_of = |sha: String| {
        let (store, tenant_id, service_id) = (&store, &tenant.id, &service.id);
        async move { record::get_commit(store, tenant_id, service_id, &sha).await }
    };
    let mut held = store.hold_writer().await.unwrap();

    // A repeat in the same batch (same dedupe key, another body) writes nothing, not even its
    // commit; the first delivery writes its commit, branch and one analysis job.
    let (first, first_rows) = push_delivery(&service, "guid-1", &sha(1));
    let (repeat, repeat_rows) = push_delivery(&service, "guid-1", &sha(2));
    let written = kept::insert_many_alone(
        &mut held,
        direct.as_mut(),
        &[&first, &repeat],
        &[&first_rows, &repeat_rows],
    )
    .await
    .unwrap();
    assert_eq!(written, vec![first.id.clone()]);
    let commit = commit_of(sha(1)).await.unwrap();
    assert_eq!(commit.id, first_rows.commits[0].id);
    assert!(matches!(commit_of(sha(2)).await, Err(StoreError::NotFound)));
    let branches = record::branches_of(&store, std::slice::from_ref(&commit.id))
        .await
        .unwrap();
    assert_eq!(branches, vec![(commit.id.clone(), "main".to_owned())]);
    assert_eq!(
        record::analysis_jobs_of(&store, &commit.id).await.unwrap(),
        1
    );

    // The same commit pushed again by a new delivery, to another branch, keeps its id, gets
    // the branch and no second job.
    let (again, mut again_rows) = push_delivery(&service, "guid-2", &sha(1));
    again_rows.branches[0].branch = "release".to_owned();
    let written = kept::insert_many_alone(&mut held, direct.as_mut(), &[&again], &[&again_rows])
        .await
        .unwrap();
    assert_eq!(written, vec![again.id.clone()]);
    assert_eq!(commit_of(sha(1)).await.unwrap().id, commit.id);
    let mut branches = record::branches_of(&store, std::slice::from_ref(&commit.id))
        .await
        .unwrap();
    branches.sort();
    assert_eq!(
        branches,
        vec![
            (commit.id.clone(), "main".to_owned()),
            (commit.id.clone(), "release".to_owned())
        ]
    );
    assert_eq!(
        record::analysis_jobs_of(&store, &commit.id).await.unwrap(),
        1
    );

    // One bad row fails the whole batch, which leaves nothing behind...
    let (good, good_rows) = push_delivery(&service, "guid-3", &sha(3));
    let (mut orphan, orphan_rows) = push_delivery(&service, "guid-4", &sha(4));
    orphan.tenant_id = Some("tn_00000000000000000000000000000000".to_owned());
    let failed = kept::insert_many_alone(
        &mut held,
        direct.as_mut(),
        &[&good, &orphan],
        &[&good_rows, &orphan_rows],
    )
    .await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(direct.as_ref().is_none_or(|direct| direct.is_idle()));
    assert!(matches!(
        kept::get(&store, &tenant.id, &good.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(commit_of(sha(3)).await, Err(StoreError::NotFound)));
    // ...and the held connection writes the next batch.
    let written = kept::insert_many_alone(&mut held, direct.as_mut(), &[&good], &[&good_rows])
        .await
        .unwrap();
    assert_eq!(written, vec![good.id.clone()]);
    drop(held);
    assert!(commit_of(sha(3)).await.is_ok());
    // Other writers get the connection back.
    let mut tx = store.begin().await.unwrap();
    tenants::create_tenant(&mut tx, "other").await.unwrap();
    tx.commit().await.unwrap();
}

fn webhook_endpoint(tenant_id: &str) -> queue::Endpoint {
    queue::Endpoint {
        id: ids::new(Kind::Endpoint),
        tenant_id: tenant_id.to_owned(),
        url: "http://127.0.0.1:9/hook".to_owned(),
        name: "receiver".to_owned(),
        description: String::new(),
        event_types: None,
        active: true,
        secret: vec![1, 2, 3],
        previous_secret: None,
        previous_secret_until: None,
        consecutive_failures: 0,
        disabled_reason: None,
        disabled_at: None,
        created_at: 1,
        updated_at: 1,
        kind: queue::KIND_WEBHOOK.to_owned(),
        repository_key: None,
        payload_format: None,
        disabled_until: None,
        rate_limit_per_second: None,
    }
}

/// A fresh PostgreSQL store (and its pool) with tenant "acme" and one webhook endpoint.
struct PostgresWithAnEndpoint {
    store: Store,
    pool: sqlx::PgPool,
    db: TestDb,
    tenant: tenants::Tenant,
    endpoint: queue::Endpoint,
}

/// [`PostgresWithAnEndpoint`]; `None` where the PostgreSQL tests are skipped.
async fn postgres_with_an_endpoint() -> Option<PostgresWithAnEndpoint> {
    let backend = Backend::postgres_or_skip().await?;
    let (store, db) = fresh_store(backend).await;
    let mut tx = store.begin().await.unwrap();
    let tenant = tenants::create_tenant(&mut tx, "acme").await.unwrap();
    tx.commit().await.unwrap();
    let endpoint = webhook_endpoint(&tenant.id);
    queue::insert_endpoint(&store, &endpoint).await.unwrap();
    let Store::Postgres(pool) = &store else {
        unreachable!("a PostgreSQL store")
    };
    Some(PostgresWithAnEndpoint {
        pool: pool.clone(),
        store,
        db,
        tenant,
        endpoint,
    })
}

/// The tenant's publish version now, as a publish would plan at.
async fn plan_version(store: &Store, tenant_id: &str) -> i64 {
    queue::publish_plan(store, tenant_id, "order.paid")
        .await
        .unwrap()
        .version
}

/// An event to the endpoints, planned at `plan_version`.
fn event_to(tenant_id: &str, plan_version: i64, endpoint_ids: &[&str]) -> queue::EventToPublish {
    let id = format!("evt_{}", uuid::Uuid::now_v7());
    queue::EventToPublish {
        plan_version,
        payload: format!(r#"{{"id":"{id}"}}"#),
        id,
        tenant_id: tenant_id.to_owned(),
        event_type: "order.paid".to_owned(),
        created_at: 1_000,
        deliveries: endpoint_ids
            .iter()
            .map(|endpoint_id| queue::DeliveryToQueue {
                id: ids::new(Kind::Delivery),
                endpoint_id: (*endpoint_id).to_owned(),
                paused: false,
                lease: None,
            })
            .collect(),
    }
}

async fn queued_events(store: &Store, tenant_id: &str, endpoint_id: &str) -> Vec<String> {
    let filter = queue::DeliveryFilter::default();
    let mut events: Vec<String> =
        queue::list_deliveries(store, tenant_id, endpoint_id, &filter, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|delivery| delivery.event_id)
            .collect();
    events.sort();
    events
}

async fn published_events_are_written_together_and_a_bad_one_fails_alone(backend: Backend) {
    let (store, _db) = fresh_store(backend).await;
    let mut tx = store.begin().await.unwrap();
    let tenant = tenants::create_tenant(&mut tx, "acme").await.unwrap();
    tx.commit().await.unwrap();
    let (first, second) = (webhook_endpoint(&tenant.id), webhook_endpoint(&tenant.id));
    queue::insert_endpoint(&store, &first).await.unwrap();
    queue::insert_endpoint(&store, &second).await.unwrap();
    let deleted = webhook_endpoint(&tenant.id);
    queue::insert_endpoint(&store, &deleted).await.unwrap();
    let before = plan_version(&store, &tenant.id).await;
    queue::delete_endpoint(&store, &tenant.id, &deleted.id)
        .await
        .unwrap();
    let version = plan_version(&store, &tenant.id).await;
    assert!(version > before, "a deletion moves the version on");

    // Several events in one write: every event and delivery, or (one planned before an
    // endpoint was deleted) none at all.
    let both = event_to(&tenant.id, version, &[&first.id, &second.id]);
    let one = event_to(&tenant.id, version, &[&second.id]);
    let none = event_to(&tenant.id, version, &[]);
    let gone = event_to(&tenant.id, before, &[&deleted.id]);
    let error = queue::insert_events_with_deliveries(&store, &[&both, &gone, &one], false)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert!(
        queued_events(&store, &tenant.id, &second.id)
            .await
            .is_empty()
    );
    assert!(
        queue::event_payloads(&store, std::slice::from_ref(&both.id))
            .await
            .unwrap()
            .is_empty()
    );
    queue::insert_events_with_deliveries(&store, &[&both, &one, &none], true)
        .await
        .unwrap();
    assert_eq!(
        queued_events(&store, &tenant.id, &first.id).await,
        vec![both.id.clone()]
    );
    let mut expected = vec![both.id.clone(), one.id.clone()];
    expected.sort();
    assert_eq!(
        queued_events(&store, &tenant.id, &second.id).await,
        expected
    );
    let payloads = queue::event_payloads(&store, std::slice::from_ref(&none.id))
        .await
        .unwrap();
    assert_eq!(payloads, vec![(none.id.clone(), none.payload.clone())]);

    // Through the writer, at the same moment: the publish planned before the deletion is
    // refused (to be planned again), the others are written whether they shared its batch or not.
    let writer = PublishWriter::start(store.clone()).unwrap();
    let events: Vec<_> = (0..8)
        .map(|n| match n {
            3 => event_to(&tenant.id, before, &[&deleted.id]),
            _ => event_to(&tenant.id, version, &[&first.id]),
        })
        .collect();
    let answers = futures_util::future::join_all(
        events
            .iter()
            .map(|event| writer.write(event.clone(), false, None)),
    )
    .await;
    for (n, answer) in answers.iter().enumerate() {
        match n {
            3 => assert!(matches!(answer, Err(StoreError::Conflict(_))), "{answer:?}"),
            _ => assert!(answer.is_ok(), "{n}: {answer:?}"),
        }
    }
    let mut expected: Vec<String> = events
        .iter()
        .enumerate()
        .filter(|(n, _)| *n != 3)
        .map(|(_, event)| event.id.clone())
        .chain([both.id.clone()])
        .collect();
    expected.sort();
    assert_eq!(queued_events(&store, &tenant.id, &first.id).await, expected);
}

/// Runs one statement that writes, on the backend's writer.
async fn execute(store: &Store, sql: &'static str, id: &str) {
    match store {
        Store::Sqlite(sqlite) => {
            sqlx::query(sql)
                .bind(id)
                .execute(&sqlite.writer)
                .await
                .unwrap();
        }
        Store::Postgres(pool) => {
            sqlx::query(sql).bind(id).execute(pool).await.unwrap();
        }
    }
}

/// Every change to a tenant's webhook endpoints or event types moves its publish version on
/// (triggers, migration 0017), so a kept plan is refused after any of them; the failure count a
/// result batch keeps, a change that changes nothing and repository hooks do not.
async fn the_publish_version_moves_with_what_a_publish_plans_from_and_nothing_else(
    backend: Backend,
) {
    let (store, _db) = fresh_store(backend).await;
    let mut tx = store.begin().await.unwrap();
    let tenant = tenants::create_tenant(&mut tx, "acme").await.unwrap();
    let other = tenants::create_tenant(&mut tx, "other").await.unwrap();
    tx.commit().await.unwrap();
    let mut version = plan_version(&store, &tenant.id).await;
    let other_version = plan_version(&store, &other.id).await;
    let moved = |before: i64| {
        let store = store.clone();
        let tenant_id = tenant.id.clone();
        async move {
            let now = plan_version(&store, &tenant_id).await;
            assert!(now >= before, "{now} < {before}");
            (now > before, now)
        }
    };

    let mut endpoint = webhook_endpoint(&tenant.id);
    queue::insert_endpoint(&store, &endpoint).await.unwrap();
    let (changed, now) = moved(version).await;
    assert!(changed, "an endpoint created");
    version = now;

    queue::update_endpoint(&store, &endpoint).await.unwrap();
    let (changed, now) = moved(version).await;
    assert!(!changed, "an update that changes nothing a publish uses");
    endpoint.event_types = Some(r#"["order.paid"]"#.to_owned());
    queue::update_endpoint(&store, &endpoint).await.unwrap();
    let (changed, now) = moved(now).await;
    assert!(changed, "a filter changed");
    version = now;

    execute(
        &store,
        "UPDATE endpoints SET consecutive_failures = consecutive_failures + 3 WHERE id = $1",
        &endpoint.id,
    )
    .await;
    let (changed, now) = moved(version).await;
    assert!(!changed, "a failure counted");
    execute(
        &store,
        "UPDATE endpoints SET disabled_until = 99 WHERE id = $1",
        &endpoint.id,
    )
    .await;
    let (changed, now) = moved(now).await;
    assert!(changed, "disabled for a while");
    queue::set_endpoint_active(&store, &tenant.id, &endpoint.id, false)
        .await
        .unwrap();
    let (changed, now) = moved(now).await;
    assert!(changed, "deactivated");
    version = now;

    let mut hook = webhook_endpoint(&tenant.id);
    hook.kind = queue::KIND_REPOSITORY_HOOK.to_owned();
    hook.repository_key = Some("acme/shop".to_owned());
    queue::insert_endpoint(&store, &hook).await.unwrap();
    execute(
        &store,
        "UPDATE endpoints SET url = 'http://127.0.0.1:9/other' WHERE id = $1",
        &hook.id,
    )
    .await;
    let (changed, now) = moved(version).await;
    assert!(!changed, "a repository hook is no part of a publish's plan");

    queue::insert_event_type(&store, &tenant.id, "order.paid", "", "{}")
        .await
        .unwrap();
    let (changed, now) = moved(now).await;
    assert!(changed, "an event type registered");
    assert!(
        queue::delete_event_type(&store, &tenant.id, "order.paid")
            .await
            .unwrap()
    );
    let (changed, now) = moved(now).await;
    assert!(changed, "an event type deleted");
    queue::delete_endpoint(&store, &tenant.id, &endpoint.id)
        .await
        .unwrap();
    let (changed, _) = moved(now).await;
    assert!(changed, "an endpoint deleted");

    assert_eq!(
        plan_version(&store, &other.id).await,
        other_version,
        "another tenant's version stays"
    );
}

/// The queue statements that find deliveries by id (lease renewal, release, results) read the
/// queue by primary key even when PostgreSQL's statistics were taken before a backlog, when
/// nothing was pending: with the queue state in `deliveries` and a plain `status = 'pending'`, the
/// planner preferred the partial index of pending rows and read all of them in every statement.
/// Counted by the indexes' own statistics, which a backend adds to the shared counters when it
/// ends. (The claim's choice of candidates still reads every due row in this state: see
/// bench/README.md, session 12.)
#[tokio::test]
async fn queue_statements_by_id_hold_when_statistics_predate_a_backlog() {
    let Some(PostgresWithAnEndpoint {
        store,
        pool,
        db,
        tenant,
        endpoint,
    }) = postgres_with_an_endpoint().await
    else {
        return;
    };
    let pool = &pool;
    let now = hookline::clock::now_ms();
    let backlog = 5_000;
    let mut conn = pool.acquire().await.unwrap();
    // History without events (foreign keys off for this session), analysed with the queue empty;
    // then the backlog.
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    for (first, count, status) in [(0, 20_000, "succeeded"), (100_000, backlog, "pending")] {
        sqlx::query(
            "INSERT INTO deliveries (id, tenant_id, endpoint_id, event_id, event_type, status, \
             attempt_count, round_attempts, created_at, updated_at, completed_at) \
             SELECT 'dlv_' || lpad(g::text, 32, '0'), $1, $2, 'evt_' || g, 'x', $3, 0, 0, \
               $4, $4, CASE WHEN $3 = 'pending' THEN NULL ELSE $4 END \
             FROM generate_series($5::bigint, $5::bigint + $6 - 1) g",
        )
        .bind(&tenant.id)
        .bind(&endpoint.id)
        .bind(status)
        .bind(now)
        .bind(first)
        .bind(count)
        .execute(&mut *conn)
        .await
        .unwrap();
        if status == "succeeded" {
            sqlx::query("ANALYZE deliveries, delivery_queue")
                .execute(&mut *conn)
                .await
                .unwrap();
        } else {
            sqlx::query(
                "INSERT INTO delivery_queue (delivery_id, endpoint_id, next_attempt_at, \
                 created_at) \
                 SELECT 'dlv_' || lpad(g::text, 32, '0'), $1, $2 - 1000000 + g, $2 \
                 FROM generate_series($3::bigint, $3::bigint + $4 - 1) g",
            )
            .bind(&endpoint.id)
            .bind(now)
            .bind(first)
            .bind(count)
            .execute(&mut *conn)
            .await
            .unwrap();
        }
    }
    drop(conn);
    store.close().await;
    let url = DatabaseUrl::new(db.url());
    let reader = Store::connect(&url, &DatabaseConfig::default())
        .await
        .unwrap();
    let Store::Postgres(reader_pool) = &reader else {
        unreachable!("a PostgreSQL test")
    };
    let read_by = |index: &'static str| {
        let pool = reader_pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT idx_tup_read FROM pg_stat_user_indexes \
                 WHERE schemaname = current_schema() AND indexrelname = $1",
            )
            .bind(index)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let scans_of_the_queue = || async {
        read_by("delivery_queue_due").await + read_by("delivery_queue_by_endpoint").await
    };
    let store = Store::connect(&url, &DatabaseConfig::default())
        .await
        .unwrap();
    let owner = "node-a".to_owned();
    let claim = queue::Claim {
        now,
        lease_until: now + 10_000,
        owner: &owner,
        limit: 100,
        per_endpoint: 16,
        window: 800,
    };
    let claimed = queue::claim_due(&store, claim, &[]).await.unwrap();
    assert_eq!(claimed.len(), 100);
    store.close().await;
    // The claim's lock step reads its 100 rows by primary key: once those are counted, so is the
    // rest of the claim.
    crate::support::eventually(
        std::time::Duration::from_secs(30),
        "the claim's index reads counted",
        || async { (read_by("delivery_queue_pkey").await >= 100).then_some(()) },
    )
    .await;
    let by_primary_key_before = read_by("delivery_queue_pkey").await;
    let scans_before = scans_of_the_queue().await;

    let store = Store::connect(&url, &DatabaseConfig::default())
        .await
        .unwrap();
    let ids: Vec<String> = claimed.iter().map(|c| c.id.clone()).collect();
    let renewed = queue::renew_leases(&store, &ids, std::slice::from_ref(&owner), now + 20_000)
        .await
        .unwrap();
    assert_eq!(renewed, 100);
    assert_eq!(
        queue::release(&store, &ids[50..], &owner, 0).await.unwrap(),
        50
    );
    let results: Vec<queue::AttemptResult> = claimed[..50]
        .iter()
        .map(|claimed| queue::AttemptResult {
            claimed: claimed.clone(),
            lease_owner: owner.clone(),
            attempt: queue::Attempt {
                id: ids::new(Kind::Attempt),
                delivery_id: claimed.id.clone(),
                attempt_number: 1,
                started_at: now,
                duration_ms: 1,
                url: endpoint.url.clone(),
                request_headers: "{}".to_owned(),
                response_status: Some(200),
                response_headers: None,
                response_body: None,
                error_kind: None,
                error_message: None,
                succeeded: true,
            },
            next: queue::Next::Succeeded,
        })
        .collect();
    let recorded = queue::record_results(&store, &results, 10).await.unwrap();
    assert_eq!(recorded.written, 50);
    store.close().await;
    // Renewal and release alone read 150 queue rows by primary key: once those are counted, so
    // is everything else.
    crate::support::eventually(
        std::time::Duration::from_secs(30),
        "the statements' index reads counted",
        || async {
            (read_by("delivery_queue_pkey").await >= by_primary_key_before + 150).then_some(())
        },
    )
    .await;
    let scanned = scans_of_the_queue().await - scans_before;
    assert!(
        scanned < 1_000,
        "the queue's other indexes were read {scanned} times by statements by id (a backlog of \
         {backlog}): a statement walked the queue"
    );
    reader.close().await;
}

/// PostgreSQL checks a publish's plan (its tenant's publish version, which the deletion of an
/// endpoint moves on) in the publish statement instead of its endpoints by a foreign key (whose
/// share lock on the endpoint's row made every publish to one endpoint queue on it): a publish
/// that runs while the endpoint's deletion is committing still writes its deliveries, without
/// waiting for it. No claim takes them, a publish planned before the deletion and written after
/// it is refused, and pruning deletes them.
#[tokio::test]
async fn deliveries_written_while_their_endpoint_is_deleted_are_never_claimed_and_get_pruned() {
    let Some(PostgresWithAnEndpoint {
        store,
        pool,
        db: _db,
        tenant,
        endpoint,
    }) = postgres_with_an_endpoint().await
    else {
        return;
    };
    let pool = &pool;
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };

    let version = plan_version(&store, &tenant.id).await;
    let mut deleting = pool.begin().await.unwrap();
    sqlx::query("DELETE FROM endpoints WHERE id = $1")
        .bind(&endpoint.id)
        .execute(&mut *deleting)
        .await
        .unwrap();
    let raced = event_to(&tenant.id, version, &[&endpoint.id]);
    let publishing = {
        let store = store.clone();
        tokio::spawn(
            async move { queue::insert_events_with_deliveries(&store, &[&raced], false).await },
        )
    };
    // A foreign key would make the publish wait for the deletion's lock, then fail.
    let published = tokio::time::timeout(std::time::Duration::from_secs(10), publishing)
        .await
        .expect("the publish did not wait for the deletion")
        .unwrap();
    published.expect("written: the deletion has not committed");
    deleting.commit().await.unwrap();
    assert_eq!(count("SELECT count(*) FROM delivery_queue").await, 1);

    let now = hookline::clock::now_ms() + 1_000;
    let claim = queue::Claim {
        now,
        lease_until: now + 10_000,
        owner: "node-a",
        limit: 10,
        per_endpoint: 10,
        window: 100,
    };
    assert!(
        queue::claim_due(&store, claim, &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        queue::claim_due(&store, claim, &["wh_other".to_owned()])
            .await
            .unwrap()
            .is_empty(),
        "the endpoint-by-endpoint pass"
    );
    let late = event_to(&tenant.id, version, &[&endpoint.id]);
    let refused = queue::insert_events_with_deliveries(&store, &[&late], false).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );

    assert_eq!(queue::prune(&store, 0).await.unwrap(), 1);
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 0);
    assert_eq!(count("SELECT count(*) FROM delivery_queue").await, 0);
}

/// Deleting an endpoint takes the endpoint's row before its deliveries, in the order a result
/// batch takes them (the endpoint, then the deliveries' queue rows): a deletion that began with
/// the deliveries deadlocked with a batch recording one of them, and PostgreSQL failed one of
/// the two (a 500 for the deletion, or a lost batch of results).
#[tokio::test]
async fn deleting_an_endpoint_waits_for_a_result_batch_instead_of_deadlocking_with_it() {
    let Some(PostgresWithAnEndpoint {
        store,
        pool,
        db: _db,
        tenant,
        endpoint,
    }) = postgres_with_an_endpoint().await
    else {
        return;
    };
    let pool = &pool;
    let event = event_to(
        &tenant.id,
        plan_version(&store, &tenant.id).await,
        &[&endpoint.id],
    );
    queue::insert_events_with_deliveries(&store, &[&event], false)
        .await
        .unwrap();
    let delivery_id = event.deliveries[0].id.clone();

    // A result batch, between its two steps: the endpoint locked, the queue row not yet.
    let mut recording = pool.begin().await.unwrap();
    let recorder: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *recording)
        .await
        .unwrap();
    sqlx::query("SELECT id FROM endpoints WHERE id = $1 FOR NO KEY UPDATE")
        .bind(&endpoint.id)
        .execute(&mut *recording)
        .await
        .unwrap();
    let deleting = {
        let (store, tenant_id, endpoint_id) =
            (store.clone(), tenant.id.clone(), endpoint.id.clone());
        tokio::spawn(async move { queue::delete_endpoint(&store, &tenant_id, &endpoint_id).await })
    };
    crate::support::eventually(
        std::time::Duration::from_secs(30),
        "the deletion waiting for the result batch",
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            )
            .bind(recorder)
            .fetch_one(pool)
            .await
            .unwrap();
            (waiting > 0).then_some(())
        },
    )
    .await;
    // The batch goes on to the queue row: nothing of the deletion holds it.
    sqlx::query("SET LOCAL lock_timeout = '10s'")
        .execute(&mut *recording)
        .await
        .unwrap();
    let finished = sqlx::query("DELETE FROM delivery_queue WHERE delivery_id = $1")
        .bind(&delivery_id)
        .execute(&mut *recording)
        .await
        .unwrap();
    assert_eq!(finished.rows_affected(), 1);
    recording.commit().await.unwrap();
    deleting
        .await
        .unwrap()
        .expect("the deletion goes through after the batch");
    assert!(matches!(
        queue::get_endpoint(&store, &tenant.id, &endpoint.id).await,
        Err(StoreError::NotFound)
    ));
}
