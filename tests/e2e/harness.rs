//! The harness's own receiver records requests byte for byte and answers the chosen status.

use std::time::Duration;

use axum::http::StatusCode;

use crate::support::receiver::Receiver;

#[tokio::test]
async fn receiver_records_bytes_headers_and_answers_the_chosen_status() {
    let receiver = Receiver::start().await;
    receiver.respond_with(StatusCode::GONE);
    let client = crate::support::http_client();
    let response = client
        .post(receiver.url("/hooks/a"))
        .header("x-test", "1")
        .body(&b"\x00raw\xffbytes"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 410);
    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/hooks/a");
    assert_eq!(got[0].headers["x-test"], "1");
    assert_eq!(&got[0].body[..], b"\x00raw\xffbytes");
}
