//! What receivers rely on: the verification examples in docs/examples (Rust, Python, Node, shell
//! with openssl) and `hookline verify` accept a real delivery and refuse altered or stale ones.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::outbound::{create_endpoint, outbound_app, send_test};
use crate::support::Backend;
use crate::support::process::{hookline, run};
use crate::support::receiver::{Received, Receiver};

#[path = "../../docs/examples/verify.rs"]
mod rust_example;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples")
}

/// A real delivery, as the receiver got it, with the endpoint's secret.
async fn a_delivery() -> (Received, String) {
    let app = outbound_app(Backend::Sqlite, |_| {}).await;
    let receiver = Receiver::start().await;
    let (endpoint_id, secret) = create_endpoint(&app, &receiver.url("/"), None).await;
    send_test(&app, &endpoint_id).await;
    let request = receiver
        .wait_for(1, Duration::from_secs(30))
        .await
        .remove(0);
    (request, secret)
}

fn header_lines(request: &Received, replace: &[(&str, &str)]) -> String {
    let mut lines = String::new();
    for (name, value) in &request.headers {
        let value = replace
            .iter()
            .find(|(replaced, _)| *replaced == name.as_str())
            .map_or_else(
                || value.to_str().unwrap().to_owned(),
                |(_, with)| (*with).to_owned(),
            );
        lines.push_str(&format!("{name}: {value}\n"));
    }
    lines
}

/// Runs an example program; returns (success, stdout).
fn run_example(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program} (is it installed?): {error}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    )
}

#[tokio::test]
async fn the_documented_verification_examples_accept_real_deliveries_and_refuse_bad_ones() {
    let (request, secret) = a_delivery().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let headers = write("headers.txt", header_lines(&request, &[]).as_bytes());
    let body = write("body.json", &request.body);
    let mut altered_bytes = request.body.to_vec();
    altered_bytes[10] ^= 1;
    let altered = write("altered.json", &altered_bytes);
    let old = (hookline::clock::now_ms() / 1000 - 3_600).to_string();
    let stale = write(
        "stale.txt",
        header_lines(
            &request,
            &[("x-hookline-timestamp", &old), ("webhook-timestamp", &old)],
        )
        .as_bytes(),
    );

    let examples = examples_dir();
    let python = examples.join("verify.py").display().to_string();
    let node = examples.join("verify.js").display().to_string();
    let shell = examples.join("verify.sh").display().to_string();
    let runners: [(&str, Vec<&str>); 3] = [
        ("python3", vec![python.as_str()]),
        ("node", vec![node.as_str()]),
        ("bash", vec![shell.as_str()]),
    ];
    for (program, script) in &runners {
        let with = |headers: &str, body: &str| {
            let mut args = script.clone();
            args.extend([secret.as_str(), headers, body]);
            run_example(program, &args)
        };
        assert_eq!(
            with(&headers, &body),
            (true, "valid".to_owned()),
            "{program}"
        );
        let (ok, said) = with(&headers, &altered);
        assert!(
            !ok && said.starts_with("invalid: signature mismatch"),
            "{program}: {said}"
        );
        let (ok, said) = with(&stale, &body);
        assert!(
            !ok && said.starts_with("invalid: timestamp"),
            "{program}: {said}"
        );
    }

    let now = hookline::clock::now_ms() / 1000;
    let signature = request.header("x-hookline-signature");
    let timestamp = request.header("x-hookline-timestamp");
    assert_eq!(
        rust_example::verify(&secret, signature, timestamp, &request.body, now),
        Ok(())
    );
    assert_eq!(
        rust_example::verify(&secret, signature, timestamp, &altered_bytes, now),
        Err("signature mismatch")
    );
    assert!(rust_example::verify(&secret, signature, timestamp, &request.body, now + 400).is_err());
}

#[tokio::test]
async fn hookline_verify_checks_a_saved_request() {
    let (request, secret) = a_delivery().await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("secret"), format!("{secret}\n")).unwrap();
    std::fs::write(path("headers.txt"), header_lines(&request, &[])).unwrap();
    std::fs::write(path("body.json"), &request.body).unwrap();
    let mut raw = format!(
        "POST / HTTP/1.1\r\n{}\r\n",
        header_lines(&request, &[]).replace('\n', "\r\n")
    )
    .into_bytes();
    raw.extend_from_slice(&request.body);
    std::fs::write(path("request.http"), raw).unwrap();

    let verify = |args: &[&str]| {
        let mut command = hookline(dir.path());
        command
            .arg("verify")
            .args(["--secret-file", &path("secret")])
            .args(args);
        command
    };
    let (ok, stdout, stderr) = run(&mut verify(&[
        "--headers",
        &path("headers.txt"),
        "--body",
        &path("body.json"),
    ]))
    .await;
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("valid: X-Hookline-Signature matches"),
        "{stdout}"
    );
    assert!(
        stdout.contains("valid: webhook-signature (Standard Webhooks) matches"),
        "{stdout}"
    );

    let (ok, stdout, _) = run(&mut verify(&["--request", &path("request.http")])).await;
    assert!(ok, "{stdout}");

    let later = (hookline::clock::now_ms() / 1000 + 600).to_string();
    let (ok, stdout, _) = run(&mut verify(&[
        "--request",
        &path("request.http"),
        "--now",
        &later,
    ]))
    .await;
    assert!(!ok);
    assert!(
        stdout.contains("invalid: X-Hookline-Signature: timestamp"),
        "{stdout}"
    );

    std::fs::write(path("secret"), "whsec_c29tZXRoaW5nIGVsc2U=").unwrap();
    let (ok, stdout, stderr) = run(&mut verify(&["--request", &path("request.http")])).await;
    assert!(!ok);
    assert!(stdout.contains("no signature matches"), "{stdout}");
    assert!(stderr.contains("did not verify"), "{stderr}");

    let (ok, _, stderr) = run(&mut verify(&["--body", &path("body.json")])).await;
    assert!(!ok);
    assert!(stderr.contains("neither"), "{stderr}");
}
