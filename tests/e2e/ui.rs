//! The web UI as a person uses it: headless Chromium against the real server on both backends
//! (sign-in, webhooks, services, tokens), and the form and tenant rules checked over plain HTTP.

use std::time::Duration;

use hookline::outbound::signing;
use hookline::people::{self, Role};
use hookline::store::tenants;
use reqwest::Method;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::inbound::{GithubDelivery, fixture};
use crate::on_both_backends;
use crate::outbound::{create_type, outbound_app, publish};
use crate::support::browser::Browser;
use crate::support::receiver::{Answer, Receiver};
use crate::support::{Backend, TestApp, json_of};

const WAIT: Duration = Duration::from_secs(30);
pub const PASSWORD: &str = "correct horse battery";

on_both_backends!(
    people_sign_in_through_the_setup_link_and_out_again,
    endpoints_are_added_tested_and_managed_from_their_pages,
    a_service_is_connected_to_github_from_its_settings,
    tokens_created_in_the_ui_work_on_the_api_until_revoked,
    forms_without_this_sessions_csrf_token_change_nothing,
    another_tenants_pages_are_not_found,
    failed_sign_ins_are_throttled_and_pages_carry_strict_headers,
    changing_a_password_ends_the_other_sessions,
    repository_hooks_are_managed_from_the_repository_settings,
);

/// Creates the first admin through the setup link; the browser is left signed in.
pub async fn admin_browser(app: &TestApp) -> Browser {
    let browser = Browser::start(&app.base_url).await;
    browser.open(&format!("/setup/{}", app.setup_code)).await;
    assert_eq!(browser.text("h1").await, "Create the first admin");
    browser.fill("#email", "ada@example.com").await;
    browser.fill("#display_name", "Ada Lovelace").await;
    browser.fill("#password", PASSWORD).await;
    browser.fill("#password_confirm", PASSWORD).await;
    browser.submit("main form button[type=submit]").await;
    assert_eq!(browser.path().await, "/services");
    assert!(browser.page_text().await.contains("Welcome, Ada Lovelace"));
    browser
}

async fn people_sign_in_through_the_setup_link_and_out_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let browser = admin_browser(&app).await;
    assert!(
        browser.page_text().await.contains("No services yet"),
        "an empty state says what to do next"
    );

    // The link was single use.
    browser.open(&format!("/setup/{}", app.setup_code)).await;
    assert!(
        browser
            .page_text()
            .await
            .contains("already used or expired")
    );

    browser.open("/services").await;
    browser.submit("header form[action='/logout'] button").await;
    assert_eq!(browser.path().await, "/login");
    assert!(browser.page_text().await.contains("You are signed out."));

    // Pages need a session; sign-in comes back to the page asked for.
    browser.open("/org/webhooks").await;
    assert_eq!(browser.path().await, "/login");
    browser.fill("#email", "ada@example.com").await;
    browser.fill("#password", "wrong horse battery").await;
    browser.submit("main form button[type=submit]").await;
    assert!(
        browser
            .page_text()
            .await
            .contains("Wrong email or password.")
    );
    assert!(browser.cookie("hookline_session").await.is_none());

    browser.fill("#email", "ADA@example.com").await;
    browser.fill("#password", PASSWORD).await;
    browser.submit("main form button[type=submit]").await;
    assert_eq!(browser.path().await, "/org/webhooks");
    assert!(browser.page_text().await.contains("Ada Lovelace"));
    browser.close().await;
}

async fn endpoints_are_added_tested_and_managed_from_their_pages(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let browser = admin_browser(&app).await;

    browser.open("/org/webhooks").await;
    assert!(browser.page_text().await.contains("No endpoints yet"));
    browser.submit("main a[href='/org/webhooks/new']").await;

    // A refused URL is explained beside its field, in the API's words.
    let name = "<script>alert(1)</script>";
    browser.fill("#url", "ftp://example.com/hook").await;
    browser.fill("#name", name).await;
    browser.submit("main form button[type=submit]").await;
    assert!(
        browser
            .text("#url-error")
            .await
            .contains("url must use https://, not ftp://")
    );
    assert_eq!(browser.value("#name").await, name);

    browser.fill("#url", &receiver.url("/hook")).await;
    browser.submit("main form button[type=submit]").await;
    assert!(
        browser
            .page_text()
            .await
            .contains("will not be shown again")
    );
    let secret = browser.value("#signing-secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");

    // The name is text, never markup.
    assert!(browser.page_text().await.contains(name));
    let injected = browser
        .execute(
            "return Array.from(document.scripts).some(s => s.textContent.includes('alert(1)'))",
        )
        .await;
    assert_eq!(injected, json!(false));

    browser.submit("main a.button.primary").await;
    assert!(browser.path().await.starts_with("/org/webhooks/wh_"));
    let endpoint_id = browser.path().await.rsplit('/').next().unwrap().to_owned();

    // Send test: the attempt's result appears without a reload.
    browser.click("form[action$='/test'] button").await;
    browser.wait_for_text("HTTP 200").await;
    let received = receiver.wait_for(1, WAIT).await;
    let ping = &received[0];
    assert_eq!(ping.header("x-hookline-event"), "test.ping");
    assert_signed_by(ping, &secret);
    assert_eq!(ping.json()["data"]["endpoint_id"], endpoint_id);

    // A failing receiver: every failed attempt's answer is on the delivery page.
    receiver.answer_with(Answer::status(500).with_body("the receiver says no"));
    create_type(&app, "invoice.paid").await;
    publish(
        &app,
        "invoice.paid",
        json!({"invoice_id": "inv_1", "amount": 5}),
    )
    .await;
    browser
        .open(&format!("/org/webhooks/{endpoint_id}?status=failed"))
        .await;
    browser
        .reload_until_present("main table a[href^='/org/deliveries/']")
        .await;
    browser
        .submit("main table a[href^='/org/deliveries/']")
        .await;
    assert!(browser.page_text().await.contains("invoice.paid"));
    let attempts = browser
        .execute("return document.querySelectorAll('details.attempt').length")
        .await;
    assert_eq!(attempts, json!(6), "the first attempt and five retries");
    let bodies = browser
        .execute(
            "return Array.from(document.querySelectorAll('details.attempt pre'))\
             .map(p => p.textContent).filter(t => t.includes('the receiver says no')).length",
        )
        .await;
    assert_eq!(bodies, json!(6));

    receiver.respond_with(axum::http::StatusCode::OK);
    browser.submit("form[action$='/redeliver'] button").await;
    assert!(
        browser
            .page_text()
            .await
            .contains("Queued for delivery again.")
    );
    browser.reload_until("succeeded").await;

    // Rotate: the new secret is shown once and both sign until the old one expires.
    browser.open(&format!("/org/webhooks/{endpoint_id}")).await;
    browser.submit("form[action$='/rotate'] button").await;
    let rotated = browser.value("#signing-secret").await;
    assert!(rotated.starts_with("whsec_") && rotated != secret);
    assert!(
        browser
            .page_text()
            .await
            .contains("keeps signing beside this one until")
    );
    let before = receiver.received().len();
    browser.open(&format!("/org/webhooks/{endpoint_id}")).await;
    browser.click("form[action$='/test'] button").await;
    browser.wait_for_text("HTTP 200").await;
    let received = receiver.wait_for(before + 1, WAIT).await;
    let ping = received.last().unwrap();
    assert_eq!(
        ping.header("x-hookline-signature").split(' ').count(),
        2,
        "both secrets sign during the overlap"
    );
    assert_signed_by(ping, &rotated);
    assert_signed_by(ping, &secret);

    // A rate limit set on the page is the endpoint's, as the API reads it.
    browser.open(&format!("/org/webhooks/{endpoint_id}")).await;
    browser.fill("#rate_limit_per_second", "12").await;
    browser
        .submit(&format!(
            "form[method=post][action='/org/webhooks/{endpoint_id}'] button[type=submit]"
        ))
        .await;
    let text = browser.page_text().await;
    assert!(text.contains("12 per second"), "{text}");
    let (_, shown) = json_of(
        app.get(&format!("/api/webhooks/endpoints/{endpoint_id}"))
            .await,
    )
    .await;
    assert_eq!(shown["rate_limit_per_second"], 12);

    // Deactivate, then delete behind its confirmation.
    browser.submit("form[action$='/deactivate'] button").await;
    assert!(browser.page_text().await.contains("Endpoint deactivated"));
    assert_eq!(browser.text(".title-row .badge").await, "inactive");
    let disabled = browser
        .execute("return document.querySelector(\"form[action$='/test'] button\").disabled")
        .await;
    assert_eq!(disabled, json!(true));
    browser.submit("main a.button.danger").await;
    assert!(browser.page_text().await.contains("cannot be undone"));
    browser.submit("main form button.danger").await;
    assert_eq!(browser.path().await, "/org/webhooks");
    assert!(
        browser
            .page_text()
            .await
            .contains("deleted with its deliveries")
    );
    let response = app
        .get(&format!("/api/webhooks/endpoints/{endpoint_id}"))
        .await;
    assert_eq!(response.status(), 404);
    browser.close().await;
}

/// Every signature scheme on `received` verifies with `secret`.
fn assert_signed_by(received: &crate::support::receiver::Received, secret: &str) {
    let headers: Vec<(String, String)> = received
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    let now = hookline::clock::now_ms() / 1000;
    let checks = signing::verify_request(secret, &headers, &received.body, now, 300);
    assert!(!checks.is_empty());
    for (scheme, verdict) in checks {
        assert!(verdict.is_ok(), "{scheme:?} did not verify: {verdict:?}");
    }
}

async fn a_service_is_connected_to_github_from_its_settings(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let browser = admin_browser(&app).await;
    browser.submit("main a[href='/services/new']").await;
    browser.fill("#name", "checkout").await;
    browser.fill("#repository", "not a repository").await;
    browser.submit("main form button[type=submit]").await;
    assert!(
        browser
            .text("#repository-error")
            .await
            .contains("must look like owner/name")
    );
    browser.fill("#repository", "acme/checkout").await;
    browser.submit("main form button[type=submit]").await;
    assert!(browser.page_text().await.contains("Service created."));
    let service_path = browser.path().await;
    let service_id = service_path.rsplit('/').next().unwrap().to_owned();

    let payload_url = browser.value("#payload-url").await;
    assert_eq!(payload_url, format!("{}/api/github/webhook", app.base_url));
    browser.submit("form[action$='/secret'] button").await;
    let secret = browser.value("#push-secret").await;
    assert_eq!(secret.len(), 64, "{secret}");

    let push = GithubDelivery::new(
        "push",
        "ui-push-1",
        fixture("github/push_main.json"),
        &secret,
    );
    let (status, body, _) = push.send(&app, "/api/github/webhook").await;
    assert_eq!(status, 200, "{body}");

    browser.open(&service_path).await;
    browser.submit("main table a[href^='/inbound/']").await;
    let text = browser.page_text().await;
    assert!(
        text.contains("processed") && text.contains("ui-push-1"),
        "{text}"
    );
    assert!(text.contains("acme/checkout"));
    assert!(
        !text.contains(&secret),
        "the inbound page never shows the secret"
    );

    // Rotate with no grace: the old secret stops at once.
    browser.open(&service_path).await;
    browser
        .submit("form[action$='/secret/rotate'] button")
        .await;
    let rotated = browser.value("#push-secret").await;
    assert_ne!(rotated, secret);
    let old = GithubDelivery::new(
        "push",
        "ui-push-2",
        fixture("github/push_main.json"),
        &secret,
    );
    assert_eq!(old.send(&app, "/api/github/webhook").await.0, 401);
    let new = GithubDelivery::new(
        "push",
        "ui-push-3",
        fixture("github/push_main.json"),
        &rotated,
    );
    assert_eq!(new.send(&app, "/api/github/webhook").await.0, 200);

    // The auto-analyze box is the API's field, saved with the rest of the settings (one Save).
    browser.open(&service_path).await;
    assert_eq!(
        browser
            .execute("return document.querySelectorAll('main button[type=submit]').length")
            .await,
        json!(2),
        "Rotate secret and the settings' one Save: {}",
        browser.page_text().await
    );
    browser.click("#auto_analyze").await;
    browser
        .submit(&format!(
            "main form.card[action='/services/{service_id}'] button[type=submit]"
        ))
        .await;
    assert!(browser.page_text().await.contains("Service saved."));
    let (_, service) = json_of(app.get(&format!("/api/services/{service_id}")).await).await;
    assert_eq!(service["auto_analyze"], true);
    browser.close().await;
}

async fn tokens_created_in_the_ui_work_on_the_api_until_revoked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let browser = admin_browser(&app).await;
    browser.open("/org/tokens").await;
    browser.fill("#token-name", "ci-deploys").await;
    browser.submit("main form button[type=submit]").await;
    let token = browser.value("#token-secret").await;
    assert!(token.starts_with("hkl_"), "{token}");
    let status = |token: String| {
        let app = &app;
        async move {
            app.request_as(&token, Method::GET, "/api/tenant")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(token.clone()).await, 200);

    browser.open("/org/tokens").await;
    assert!(browser.page_text().await.contains("ci-deploys"));
    browser.click("details.confirm summary").await;
    browser.submit("form[action$='/revoke'] button").await;
    assert!(browser.page_text().await.contains("revoked"));
    assert_eq!(status(token).await, 401);
    browser.close().await;
}

// ---- plain HTTP: the rules every form and page keeps ------------------------------------------

/// A person's session over plain HTTP (no redirects followed, cookies by hand).
struct Session {
    cookie: String,
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| {
            let pair = value.split(';').next()?;
            let (name, value) = pair.split_once('=')?;
            (name == "hookline_session" && !value.is_empty()).then(|| value.to_owned())
        })
}

/// Uses a one-time link and returns the session it starts.
async fn through_link(app: &TestApp, code: &str, email: &str) -> Session {
    let response = no_redirects()
        .post(app.url(&format!("/setup/{code}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("email", email),
            ("display_name", "Someone"),
            ("password", PASSWORD),
            ("password_confirm", PASSWORD),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: no Secure flag");
    Session {
        cookie: format!(
            "hookline_session={}",
            session_cookie(response.headers()).expect("a session cookie")
        ),
    }
}

impl Session {
    async fn get(&self, app: &TestApp, path: &str) -> (u16, String) {
        let response = no_redirects()
            .get(app.url(path))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn csrf(&self, app: &TestApp) -> String {
        let (status, html) = self.get(app, "/org/webhooks/new").await;
        assert_eq!(status, 200);
        let start = html.find("name=\"csrf\" value=\"").unwrap() + 19;
        html[start..start + 64].to_owned()
    }

    async fn post(
        &self,
        app: &TestApp,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (u16, String) {
        let mut request = no_redirects()
            .post(app.url(path))
            .header(COOKIE, &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Posts a form and follows its redirect once as a browser would, with the cookies the
    /// answer set (a one-time value among them): the post's status, the page it led to, and
    /// that page fetched a second time (a reload).
    async fn post_and_follow(
        &self,
        app: &TestApp,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, String, String) {
        let response = no_redirects()
            .post(app.url(path))
            .header(COOKIE, &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
        let mut cookies = vec![self.cookie.clone()];
        for value in response.headers().get_all(SET_COOKIE) {
            let pair = value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            if !pair.ends_with('=') {
                cookies.push(pair);
            }
        }
        let page = no_redirects()
            .get(app.url(&location))
            .header(COOKIE, cookies.join("; "))
            .send()
            .await
            .unwrap();
        let cleared = page
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .any(|value| value.to_str().unwrap().starts_with("hookline_once=;"));
        let html = page.text().await.unwrap();
        assert!(
            cleared || !html.contains("secret-once"),
            "a page showing a one-time value clears it"
        );
        let (_, again) = self.get(app, &location).await;
        (status, html, again)
    }
}

async fn endpoint_count(app: &TestApp) -> usize {
    let (_, page) = json_of(app.get("/api/webhooks/endpoints").await).await;
    page["data"].as_array().unwrap().len()
}

async fn forms_without_this_sessions_csrf_token_change_nothing(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let ada = through_link(&app, &app.setup_code, "ada@example.com").await;
    let (_, invite) = people::invite(&app.store, &app.tenant_id, "bob@example.com", Role::Member)
        .await
        .unwrap();
    let bob = through_link(&app, &invite.code, "").await;
    let url = receiver.url("/hook");

    let ada_csrf = ada.csrf(&app).await;
    let bob_csrf = bob.csrf(&app).await;
    assert_ne!(ada_csrf, bob_csrf, "each session has its own token");
    let origin = app.base_url.clone();
    for (csrf, origin, why) in [
        ("", Some(origin.as_str()), "no token"),
        (
            bob_csrf.as_str(),
            Some(origin.as_str()),
            "another session's token",
        ),
        (
            ada_csrf.as_str(),
            Some("http://evil.example"),
            "another site",
        ),
    ] {
        let (status, html) = ada
            .post(
                &app,
                "/org/webhooks",
                &[("csrf", csrf), ("name", "hook"), ("url", &url)],
                origin,
            )
            .await;
        assert_eq!(status, 403, "{why}: {html}");
        assert!(html.contains("<title>Forbidden"), "{why}: a page, not JSON");
        assert_eq!(endpoint_count(&app).await, 0, "{why} changed something");
    }
    let (status, created, reloaded) = ada
        .post_and_follow(
            &app,
            "/org/webhooks",
            &[("csrf", &ada_csrf), ("name", "hook"), ("url", &url)],
        )
        .await;
    assert_eq!(status, 303, "the same form with this session's token works");
    assert!(
        created.contains("whsec_"),
        "the secret shows once: {created}"
    );
    assert!(
        !reloaded.contains("whsec_") && reloaded.contains("shown once"),
        "and never again: {reloaded}"
    );
    assert_eq!(endpoint_count(&app).await, 1, "reloading created nothing");

    // A rotate form sent twice (a reload, a double click) rotates once.
    let (_, page) = json_of(app.get("/api/webhooks/endpoints").await).await;
    let endpoint_id = page["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, html) = ada.get(&app, &format!("/org/webhooks/{endpoint_id}")).await;
    let start = html.find("name=\"replacing\" value=\"").unwrap() + 24;
    let replacing = html[start..start + 16].to_owned();
    let (status, html, reloaded) = ada
        .post_and_follow(
            &app,
            &format!("/org/webhooks/{endpoint_id}/rotate"),
            &[("csrf", &ada_csrf), ("replacing", &replacing)],
        )
        .await;
    assert_eq!(status, 303);
    assert!(
        html.contains("whsec_") && html.contains("keeps signing"),
        "{html}"
    );
    assert!(!reloaded.contains("whsec_"), "{reloaded}");
    let (status, _) = ada
        .post(
            &app,
            &format!("/org/webhooks/{endpoint_id}/rotate"),
            &[("csrf", &ada_csrf), ("replacing", &replacing)],
            None,
        )
        .await;
    assert_eq!(
        status, 303,
        "the second send shows the endpoint again, rotating nothing"
    );

    // Members do not manage tokens or users.
    assert_eq!(bob.get(&app, "/org/tokens").await.0, 403);
    let (status, _) = bob
        .post(
            &app,
            "/org/tokens",
            &[("csrf", &bob_csrf), ("name", "x")],
            None,
        )
        .await;
    assert_eq!(status, 403);
}

async fn another_tenants_pages_are_not_found(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let (endpoint_id, _) =
        crate::outbound::create_endpoint(&app, &receiver.url("/hook"), None).await;
    let (_, service) = json_of(
        app.post_json(
            "/api/services",
            &json!({"name": "checkout", "repository": "acme/checkout"}),
        )
        .await,
    )
    .await;
    let service_id = service["id"].as_str().unwrap().to_owned();
    let (_, test) = json_of(
        app.post_json(
            &format!("/api/webhooks/endpoints/{endpoint_id}/test"),
            &json!({}),
        )
        .await,
    )
    .await;
    let delivery_id = test["delivery_id"].as_str().unwrap().to_owned();

    let mut tx = app.store.begin().await.unwrap();
    let other = tenants::create_tenant(&mut tx, "other").await.unwrap();
    tx.commit().await.unwrap();
    let (_, link) = people::invite(&app.store, &other.id, "eve@example.com", Role::Admin)
        .await
        .unwrap();
    let eve = through_link(&app, &link.code, "").await;
    for path in [
        format!("/org/webhooks/{endpoint_id}"),
        format!("/org/webhooks/{endpoint_id}/delete"),
        format!("/org/deliveries/{delivery_id}"),
        format!("/services/{service_id}"),
    ] {
        let (status, html) = eve.get(&app, &path).await;
        assert_eq!(status, 404, "{path}: {html}");
    }
    let csrf = eve.csrf(&app).await;
    let (status, _) = eve
        .post(
            &app,
            &format!("/org/webhooks/{endpoint_id}/delete"),
            &[("csrf", &csrf), ("confirm", "delete")],
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        app.get(&format!("/api/webhooks/endpoints/{endpoint_id}"))
            .await
            .status(),
        200,
        "the first tenant's endpoint is still there"
    );
    let (status, html) = eve.get(&app, "/org/webhooks").await;
    assert_eq!(status, 200);
    assert!(!html.contains(&endpoint_id));
}

async fn failed_sign_ins_are_throttled_and_pages_carry_strict_headers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    through_link(&app, &app.setup_code, "ada@example.com").await;
    let client = no_redirects();
    let sign_in = |email: &'static str, password: &'static str| {
        let client = client.clone();
        let url = app.url("/login");
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form_body(&[("email", email), ("password", password)]))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            let cookie = session_cookie(response.headers());
            let html = response.text().await.unwrap();
            (status, retry_after, cookie, html)
        }
    };

    // An unknown email and a wrong password get the same answer.
    let unknown = sign_in("nobody@example.com", "whatever-password").await;
    let wrong = sign_in("ada@example.com", "wrong-password!").await;
    assert_eq!((unknown.0, wrong.0), (401, 401));
    assert_eq!(
        unknown.3,
        wrong.3.replace("ada@example.com", "nobody@example.com")
    );

    // Guesses sent all at once are counted one by one: four more are checked, the rest refused.
    let guesses = futures_util::future::join_all(
        (0..8).map(|_| sign_in("ada@example.com", "wrong-password!")),
    )
    .await;
    let mut statuses: Vec<u16> = guesses.iter().map(|guess| guess.0).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429, 429, 429]);
    let (status, retry_after, cookie, html) = sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(
        status, 429,
        "five failures close the email for a while: {html}"
    );
    assert!(retry_after.is_some() && cookie.is_none());
    let (status, _, cookie, _) = sign_in("ADA@example.com", PASSWORD).await;
    assert_eq!(status, 429, "whatever the case of the address");
    assert!(cookie.is_none());

    let response = client.get(app.url("/login")).send().await.unwrap();
    let headers = response.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert_eq!(headers["cache-control"], "no-store");

    // Pages without a session go to sign-in, and back afterwards.
    let response = client.get(app.url("/org/webhooks")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()[LOCATION],
        "/login?next=%2Forg%2Fwebhooks"
    );
    let html = client
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let css = html
        .split("href=\"/static/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let asset = client
        .get(app.url(&format!("/static/{css}")))
        .send()
        .await
        .unwrap();
    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    // The JSON API keeps answering JSON for unknown routes.
    let (status, body) = json_of(app.get("/api/nope").await).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}

/// Visits every main page over realistic data, checking each as every page is checked (title,
/// labels, console). With `HOOKLINE_SCREENSHOTS=DIR` (see `scripts/screenshots`) it also saves
/// a PNG of each into DIR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_main_page_renders_over_realistic_data() {
    let app = outbound_app(Backend::Sqlite, |_| {}).await;
    let receiver = Receiver::start().await;
    let flaky = Receiver::start().await;
    flaky.answer_with(Answer::status(503).with_body("{\"error\":\"maintenance\"}"));
    let browser = admin_browser(&app).await;

    create_type(&app, "invoice.paid").await;
    let (billing, _) = crate::outbound::create_endpoint(
        &app,
        &receiver.url("/billing"),
        Some(vec!["invoice.paid"]),
    )
    .await;
    let (crm, _) = crate::outbound::create_endpoint(&app, &flaky.url("/crm"), None).await;
    for (id, name) in [(&billing, "Billing service"), (&crm, "CRM sync")] {
        let response = app
            .request(Method::PATCH, &format!("/api/webhooks/endpoints/{id}"))
            .json(&json!({"name": name, "description": "Receives invoices"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for n in 0..6 {
        publish(
            &app,
            "invoice.paid",
            json!({"invoice_id": format!("inv_{n}"), "amount": 1200 + n}),
        )
        .await;
    }
    receiver.wait_for(6, WAIT).await;
    crate::support::eventually(
        WAIT,
        "the failing endpoint's deliveries to give up",
        || async {
            let (_, page) = json_of(
                app.get(&format!(
                    "/api/webhooks/endpoints/{crm}/deliveries?status=failed"
                ))
                .await,
            )
            .await;
            (page["data"].as_array().unwrap().len() == 6).then_some(())
        },
    )
    .await;
    let (service_id, secret) =
        crate::inbound::service_with_secret(&app, "checkout", "acme/checkout", true).await;
    let (status, hook) = json_of(
        app.post_json(
            "/api/repos/acme/checkout/hooks",
            &json!({"url": receiver.url("/ci"), "token": "ci-token", "events": ["push", "merge_request"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    for (n, name) in ["push_main", "push_new_branch"].iter().enumerate() {
        let push = GithubDelivery::new(
            "push",
            ["demo-1", "demo-2"][n],
            fixture(&format!("github/{name}.json")),
            &secret,
        );
        assert_eq!(push.send(&app, "/api/github/webhook").await.0, 200);
    }
    receiver.wait_for(8, WAIT).await;
    people::invite(
        &app.store,
        &app.tenant_id,
        "grace@example.com",
        Role::Member,
    )
    .await
    .unwrap();
    crate::support::json_of(
        app.post_json("/api/tokens", &json!({"name": "ci-deploys"}))
            .await,
    )
    .await;

    let (_, deliveries) = json_of(
        app.get(&format!("/api/webhooks/endpoints/{crm}/deliveries"))
            .await,
    )
    .await;
    let failed_delivery = deliveries["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, inbound) = json_of(app.get("/api/inbound-deliveries").await).await;
    let inbound_id = inbound["data"][0]["id"].as_str().unwrap().to_owned();

    // The engineering record: analysed commits, a deploy, a pull request, an incident with its
    // suspects and an AI fix waiting for a decision.
    const SHA_C: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    crate::support::eventually(WAIT, "the pushed commits analysed", || async {
        let (_, commits) = json_of(
            app.get(&format!("/api/services/{service_id}/commits"))
                .await,
        )
        .await;
        let commits = commits["data"].as_array().unwrap().clone();
        (!commits.is_empty()
            && commits
                .iter()
                .all(|commit| commit["analysis_status"] == "done"))
        .then_some(())
    })
    .await;
    let (status, deploy) = json_of(
        app.post_json(
            "/api/deploys",
            &json!({"service_id": service_id, "commit_sha": SHA_C, "branch": "main",
                    "environment": "production", "deployed_by": "jane"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{deploy}");
    let deploy_id = deploy["id"].as_str().unwrap().to_owned();
    let pr = GithubDelivery::new(
        "pull_request",
        "demo-3",
        fixture("github/pull_request_opened.json"),
        &secret,
    );
    assert_eq!(pr.send(&app, "/api/github/webhook").await.0, 200);
    let (status, incident) = json_of(
        app.post_json(
            "/api/incidents",
            &json!({"title": "Checkout returns 502 for card payments", "severity": "critical",
                    "type": "availability", "service_id": service_id}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{incident}");
    let incident_id = incident["id"].as_str().unwrap().to_owned();
    let (status, fix) = json_of(
        app.post_json(
            &format!("/api/incidents/{incident_id}/fix-proposals"),
            &json!({"fix_type": "ai_fix", "summary": "Retry the card gateway once on a 502",
                    "patch": "--- a/src/pay.rs\n+++ b/src/pay.rs\n@@ -1,3 +1,4 @@\n fn charge(card: &Card) -> Result<()> {\n-    gateway.charge(card)\n+    gateway.charge(card)\n+        .or_else(|_| gateway.charge(card))\n }\n",
                    "confidence_score": 72, "risk_assessment": "low"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{fix}");
    let fix_id = fix["id"].as_str().unwrap().to_owned();

    let shots = std::env::var_os("HOOKLINE_SCREENSHOTS").map(std::path::PathBuf::from);
    for (path, file) in [
        ("/org/webhooks".to_owned(), "webhooks.png"),
        ("/org/webhooks/new".to_owned(), "webhook-new.png"),
        (format!("/org/webhooks/{crm}"), "webhook-endpoint.png"),
        (format!("/org/deliveries/{failed_delivery}"), "delivery.png"),
        ("/org/event-types".to_owned(), "event-types.png"),
        ("/services".to_owned(), "services.png"),
        (format!("/services/{service_id}"), "service.png"),
        (format!("/inbound/{inbound_id}"), "inbound-delivery.png"),
        (
            "/acme/checkout/-/settings/hooks".to_owned(),
            "repository-hooks.png",
        ),
        (
            format!("/acme/checkout/-/settings/hooks/{hook_id}"),
            "repository-hook.png",
        ),
        (format!("/services/{service_id}/commits"), "commits.png"),
        (
            format!("/services/{service_id}/commits/{SHA_C}"),
            "commit.png",
        ),
        (format!("/services/{service_id}/deploys"), "deploys.png"),
        (format!("/deploys/{deploy_id}"), "deploy.png"),
        (
            format!("/services/{service_id}/pull-requests"),
            "pull-requests.png",
        ),
        ("/incidents".to_owned(), "incidents.png"),
        (format!("/incidents/{incident_id}"), "incident.png"),
        ("/incidents/new".to_owned(), "incident-new.png"),
        ("/fix-proposals".to_owned(), "fix-proposals.png"),
        (format!("/fix-proposals/{fix_id}"), "fix-proposal.png"),
        ("/org/tokens".to_owned(), "tokens.png"),
        ("/org/users".to_owned(), "users.png"),
        ("/account".to_owned(), "account.png"),
        ("/nope".to_owned(), "not-found.png"),
    ] {
        browser.open(&path).await;
        if let Some(dir) = &shots {
            browser.screenshot(&dir.join(file)).await;
        }
        browser.assert_fits(390).await;
    }
    let text = browser.page_text().await;
    assert!(text.contains("Not found"), "{text}");
    if let Some(dir) = &shots {
        // The two pages the README shows, as a phone shows them.
        for (path, file) in [
            (
                format!("/services/{service_id}/commits/{SHA_C}"),
                "commit-phone.png",
            ),
            (format!("/incidents/{incident_id}"), "incident-phone.png"),
        ] {
            browser.client.set_window_size(390, 1400).await.unwrap();
            browser.open(&path).await;
            browser.screenshot(&dir.join(file)).await;
        }
        browser.client.set_window_size(1280, 900).await.unwrap();
    }
    browser.open(&format!("/org/webhooks/{crm}")).await;
    assert!(browser.page_text().await.contains("CRM sync"));
    browser.open("/org/webhooks").await;
    let sparklines = browser
        .execute("return document.querySelectorAll('svg.sparkline rect').length")
        .await;
    assert_eq!(sparklines, json!(48), "24 hourly bars per endpoint");
    let text = browser.page_text().await;
    assert!(
        text.contains("failed (503)"),
        "the last result of each endpoint: {text}"
    );
    assert!(text.contains("succeeded (200)"), "{text}");
    browser.close().await;
    if let Some(dir) = &shots {
        let anonymous = Browser::start(&app.base_url).await;
        anonymous.open("/login").await;
        anonymous.screenshot(&dir.join("login.png")).await;
        anonymous.close().await;
    }
}

async fn changing_a_password_ends_the_other_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let laptop = through_link(&app, &app.setup_code, "ada@example.com").await;
    let response = no_redirects()
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("email", "ada@example.com"),
            ("password", PASSWORD),
        ]))
        .send()
        .await
        .unwrap();
    let phone = Session {
        cookie: format!(
            "hookline_session={}",
            session_cookie(response.headers()).expect("signed in")
        ),
    };
    assert_eq!(phone.get(&app, "/account").await.0, 200);

    let csrf = laptop.csrf(&app).await;
    let (status, html) = laptop
        .post(
            &app,
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current_password", "not my password"),
                ("new_password", "a new long password"),
            ],
            None,
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        html.contains("current_password is not your current password"),
        "{html}"
    );
    assert_eq!(
        phone.get(&app, "/account").await.0,
        200,
        "a refused change ends nothing"
    );

    let (status, _) = laptop
        .post(
            &app,
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current_password", PASSWORD),
                ("new_password", "a new long password"),
            ],
            None,
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(
        laptop.get(&app, "/account").await.0,
        200,
        "this session stays"
    );
    let (status, _) = phone.get(&app, "/account").await;
    assert_eq!(status, 303, "the other session was signed out");

    // The sign-out form ends this one too.
    let (status, _) = laptop.post(&app, "/logout", &[("csrf", &csrf)], None).await;
    assert_eq!(status, 303);
    assert_eq!(laptop.get(&app, "/account").await.0, 303);
}

async fn repository_hooks_are_managed_from_the_repository_settings(backend: Backend) {
    let app = outbound_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    crate::inbound::service_with_secret(&app, "checkout", "Acme/Checkout", false).await;
    let browser = admin_browser(&app).await;
    browser.submit("main table a[href^='/services/svc_']").await;
    browser
        .submit("main a[href='/acme/checkout/-/settings/hooks']")
        .await;
    assert!(browser.page_text().await.contains("No hooks yet"));

    browser.fill("#url", "ftp://example.com/x").await;
    browser.submit("main form button[type=submit]").await;
    assert!(browser.text("#url-error").await.starts_with("url"));
    browser.fill("#url", &receiver.url("/ci")).await;
    browser.fill("#token", "hook-token-1").await;
    browser.click("#event-note").await;
    browser.submit("main form button[type=submit]").await;
    assert!(browser.page_text().await.contains("Webhook added."));
    let hook_path = browser.path().await;
    assert!(
        hook_path.starts_with("/acme/checkout/-/settings/hooks/hook_"),
        "{hook_path}"
    );
    assert!(
        !browser.page_text().await.contains("hook-token-1"),
        "the token is never shown"
    );

    browser.submit("form[action$='/test'] button").await;
    assert!(browser.page_text().await.contains("sample push was queued"));
    let received = receiver.wait_for(1, WAIT).await;
    assert_eq!(received[0].header("x-gitlab-event"), "Push Hook");
    assert_eq!(received[0].header("x-gitlab-token"), "hook-token-1");
    browser
        .reload_until_present("main table a[href^='/org/deliveries/']")
        .await;
    browser
        .submit("main table a[href^='/org/deliveries/']")
        .await;
    let text = browser.page_text().await;
    assert!(
        text.contains("Push Hook") && text.contains("acme/checkout"),
        "{text}"
    );
    browser.submit("p.crumbs a").await;
    assert_eq!(browser.path().await, hook_path);
    browser.submit("form[action$='/redeliver'] button").await;
    receiver.wait_for(2, WAIT).await;

    browser.open(&hook_path).await;
    browser.submit("form[action$='/disable'] button").await;
    assert_eq!(browser.text(".title-row .badge").await, "disabled");
    browser.click("details.confirm summary").await;
    browser.submit("form[action$='/delete'] button").await;
    assert_eq!(browser.path().await, "/acme/checkout/-/settings/hooks");
    assert!(browser.page_text().await.contains("No hooks yet"));
    browser.close().await;
}
