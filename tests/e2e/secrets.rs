//! The master key: generated beside a zero-config SQLite database, required to match the database,
//! rotatable with retired keys.

use hookline::config::{DatabaseUrl, Secret};
use hookline::{Application, Config};

use crate::on_both_backends;
use crate::support::{Backend, TestDb, test_config};

fn error_text(result: anyhow::Result<Application>) -> String {
    match result {
        Ok(_) => panic!("the application built"),
        Err(error) => format!("{error:#}"),
    }
}

on_both_backends!(a_database_refuses_another_master_key_and_accepts_a_rotation);

async fn a_database_refuses_another_master_key_and_accepts_a_rotation(backend: Backend) {
    let db = TestDb::create(backend).await;
    let original = test_config(&db);
    drop(
        Application::build(original.clone())
            .await
            .expect("first start"),
    );

    let stranger = hookline::crypto::generate_key();
    let mut wrong = original.clone();
    wrong.master_key = Some(Secret::new(stranger.clone()));
    let error = error_text(Application::build(wrong).await);
    assert!(error.contains("does not match this database"), "{error}");
    assert!(
        !error.contains(&stranger),
        "the key is never echoed: {error}"
    );
    assert!(
        !error.contains(db.master_key()),
        "the key is never echoed: {error}"
    );

    let mut rotated = original.clone();
    rotated.master_key = Some(Secret::new(stranger));
    rotated.previous_master_keys = vec![Secret::new(db.master_key())];
    let app = Application::build(rotated)
        .await
        .expect("a retired key still opens old secrets");
    assert!(
        app.bootstrap().is_none(),
        "the second start creates no tenant"
    );
}

#[tokio::test]
async fn zero_config_sqlite_generates_a_private_key_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("data").join("hookline.db");
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: DatabaseUrl::new(format!("sqlite://{}", db_path.display())),
        ..Config::default()
    };
    let app = Application::build(config.clone())
        .await
        .expect("zero-config start");
    assert!(app.bootstrap().is_some());
    drop(app);
    let key_path = dir.path().join("data").join("hookline.db.key");
    let key = std::fs::read_to_string(&key_path).expect("key file beside the database");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let again = Application::build(config.clone())
        .await
        .expect("restart reuses the key");
    assert!(again.bootstrap().is_none());
    drop(again);
    assert_eq!(
        std::fs::read_to_string(&key_path).unwrap(),
        key,
        "the key is not replaced"
    );

    std::fs::write(&key_path, hookline::crypto::generate_key()).unwrap();
    let error = error_text(Application::build(config).await);
    assert!(error.contains("does not match this database"), "{error}");
}
