//! The engineering record in the browser, as a person works with it, on both backends: a push's
//! commits with their risk, a commit's analysis and Re-analyze, a deploy and what it shipped, a
//! monitor's incident with its suspects, Propose revert against the fake GitHub, the merge, the
//! recovery and the timeline of it all; incidents opened by hand; AI fixes approved and
//! rejected. Every page visited is checked (title, labels, console) and fits a 390 px screen;
//! reloading after a form does not repeat it.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::inbound::{GithubDelivery, fixture};
use crate::on_both_backends;
use crate::outbound::outbound_app;
use crate::support::browser::Browser;
use crate::support::fake_github::{FakeGithub, GOOD_TOKEN};
use crate::support::receiver::Receiver;
use crate::support::{Backend, TestApp, eventually, json_of};
use crate::ui::admin_browser;

const SHA_C: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const WAIT: Duration = Duration::from_secs(30);
const PHONE: u32 = 390;

async fn record_app(backend: Backend, github: &FakeGithub) -> TestApp {
    let api_url = github.api_url();
    outbound_app(backend, |config| {
        config.github.api_url = api_url;
        config.monitors.min_interval_seconds = 1;
        config.monitors.tick_ms = 50;
        config.fix_proposals.tick_ms = 50;
        config.fix_proposals.poll_seconds = 3_600;
        config.analysis.poll_interval_ms = 50;
    })
    .await
}

async fn count(app: &TestApp, path: &str) -> usize {
    let (status, page) = json_of(app.get(path).await).await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().len()
}

/// Opens `path`, checks it, and checks it fits a phone.
async fn visit(browser: &Browser, path: &str) {
    browser.open(path).await;
    browser.assert_fits(PHONE).await;
}

on_both_backends!(
    a_push_becomes_commits_a_deploy_and_a_resolved_incident_in_the_browser,
    incidents_opened_by_hand_and_ai_fixes_decided_in_the_browser,
);

async fn a_push_becomes_commits_a_deploy_and_a_resolved_incident_in_the_browser(backend: Backend) {
    let github = FakeGithub::start().await;
    let app = record_app(backend, &github).await;
    let browser = admin_browser(&app).await;

    // A service with a token, and its secret, as a person makes them.
    browser.open("/services/new").await;
    browser.fill("#name", "Payments API").await;
    browser.fill("#repository", "acme/checkout").await;
    browser.fill("#github_token", GOOD_TOKEN).await;
    browser.submit("main form button[type=submit]").await;
    let service_path = browser.path().await;
    let service = service_path.rsplit('/').next().unwrap().to_owned();
    browser.submit("form[action$='/secret'] button").await;
    let secret = browser.value("#push-secret").await;
    // The secret shows once: a reload of the page the form led to shows it no more.
    browser.client.refresh().await.unwrap();
    browser.check_page().await;
    assert!(!browser.page_text().await.contains(&secret));
    let (status, body, _) = GithubDelivery::new(
        "push",
        "record-ui-push",
        fixture("github/push_main.json"),
        &secret,
    )
    .send(&app, "/api/github/webhook")
    .await;
    assert_eq!(status, 200, "{body}");

    // The commits list shows the push, each commit not analysed yet (auto-analyze is off).
    visit(&browser, &service_path).await;
    browser.submit("nav.tabs a[href$='/commits']").await;
    let text = browser.page_text().await;
    assert!(text.contains("a1b2c3d"), "{text}");
    assert!(text.contains("not analysed"), "{text}");
    browser.assert_fits(PHONE).await;
    // Filters narrow it and say so when nothing matches.
    visit(
        &browser,
        &format!("/services/{service}/commits?branch=nowhere&risk=high"),
    )
    .await;
    assert!(browser.page_text().await.contains("No commits match"));
    visit(&browser, &format!("/services/{service}/commits?since=soon")).await;
    assert!(
        browser
            .text("#since-error")
            .await
            .contains("must be an RFC 3339 time"),
        "a bad filter is named beside its field"
    );

    // The commit's page: files by class before any analysis, then Analyze in place (htmx).
    visit(&browser, &format!("/services/{service}/commits")).await;
    browser
        .submit(&format!("main table a[href$='/commits/{SHA_C}']"))
        .await;
    // Before an analysis: the push's file list, classified.
    let text = browser.page_text().await;
    assert!(text.contains("Files by class"), "{text}");
    assert!(
        text.contains("CHANGELOG.md") && text.contains("DOCS"),
        "{text}"
    );
    assert_eq!(browser.text("#analysis-status").await, "not analysed");
    browser.click("#analysis form button[type=submit]").await;
    browser.wait_for_text("What could go wrong").await;
    assert_eq!(browser.text("#analysis-status").await, "done");
    let level = browser.text("#risk-level").await;
    assert!(
        ["medium", "high", "critical"].contains(&level.as_str()),
        "a migration touching auth is risky: {level}"
    );
    // The analysis read the commit's diff from GitHub (the service has a token).
    let text = browser.page_text().await;
    assert!(
        text.contains("Factors") && text.contains("migration"),
        "{text}"
    );
    assert!(text.contains("migrations/0009_sessions.sql"), "{text}");
    assert!(text.contains("What to check"), "{text}");
    browser.assert_fits(PHONE).await;
    // Re-analyze queues another job and swaps the section in place again.
    browser
        .execute("document.querySelector('#analysis').setAttribute('data-before', '1')")
        .await;
    browser.click("#analysis form button[type=submit]").await;
    eventually(WAIT, "the re-analysed section swapped in", || async {
        let swapped = browser
            .execute(
                "const s = document.querySelector('#analysis'); \
                 return !s.hasAttribute('data-before') && \
                   document.querySelector('#analysis-status').textContent === 'done'",
            )
            .await;
        (swapped == json!(true)).then_some(())
    })
    .await;
    // Without JavaScript the same button is a plain form: it redirects to the commit's page.
    let (status, page) = browser_post(
        &browser,
        &format!("/services/{service}/commits/{SHA_C}/analyze"),
    )
    .await;
    assert_eq!(status, 303, "{page}");
    visit(&browser, &format!("/services/{service}/commits")).await;
    assert!(browser.page_text().await.contains(&level));

    // A deploy through the API: the deploy page lists the commit it shipped, with its risk.
    let (status, deploy) = json_of(
        app.post_json(
            "/api/deploys",
            &json!({"service_id": service, "commit_sha": SHA_C, "branch": "main",
                    "environment": "production", "deployed_by": "jane"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{deploy}");
    visit(&browser, &format!("/services/{service}/deploys")).await;
    assert!(browser.page_text().await.contains("production"));
    browser.submit("ol.timeline a").await;
    let text = browser.page_text().await;
    assert!(
        text.contains("Release 1.2.0") && text.contains(&level),
        "{text}"
    );
    assert!(text.contains("by jane"), "{text}");
    browser.assert_fits(PHONE).await;

    // A monitor against a failing receiver opens an incident: the deployed commit is suspect 1.
    let target = Receiver::start().await;
    target.respond_with(StatusCode::SERVICE_UNAVAILABLE);
    let (status, monitor) = json_of(
        app.post_json(
            "/api/monitors",
            &json!({"service_id": service, "name": "Health Check", "url": target.url("/health"),
                    "interval_seconds": 1, "timeout_ms": 500}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{monitor}");
    let monitor_id = monitor["id"].as_str().unwrap().to_owned();
    let incident = eventually(WAIT, "the monitor's incident", || async {
        json_of(app.get(&format!("/api/monitors/{monitor_id}")).await)
            .await
            .1["open_incident_id"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    visit(&browser, "/incidents").await;
    browser
        .submit(&format!("main table a[href='/incidents/{incident}']"))
        .await;
    assert_eq!(browser.text("#incident-status").await, "open");
    let first = browser.find("ol.suspects li h3 a").await;
    assert_eq!(
        first.attr("href").await.unwrap().unwrap(),
        format!("/services/{service}/commits/{SHA_C}")
    );
    browser.assert_fits(PHONE).await;

    // Propose revert: the pull request opens on the fake GitHub; a reload repeats nothing.
    browser
        .submit("ol.suspects li:first-child form[action$='/revert'] button")
        .await;
    assert!(browser.path().await.starts_with("/fix-proposals/fp_"));
    assert!(browser.page_text().await.contains("Revert proposed"));
    assert_eq!(browser.text("#fix-status").await, "pr_created");
    let proposal_path = browser.path().await;
    browser.client.refresh().await.unwrap();
    browser.check_page().await;
    assert_eq!(
        count(&app, &format!("/api/fix-proposals?incident_id={incident}")).await,
        1
    );
    let (_, proposal) = json_of(app.get(&format!("/api/{}", &proposal_path[1..])).await).await;
    let number = proposal["pr_number"].as_i64().unwrap();
    browser.assert_fits(PHONE).await;

    // GitHub reports the pull request merged.
    let merged = String::from_utf8(fixture("github/pull_request_merged.json"))
        .unwrap()
        .replace("\"number\": 42", &format!("\"number\": {number}"))
        .replace(
            "2026-03-03T09:30:00Z",
            &hookline::clock::rfc3339_ms(hookline::clock::now_ms()),
        );
    let (status, body, _) = GithubDelivery::new(
        "pull_request",
        "record-ui-merged",
        merged.into_bytes(),
        &secret,
    )
    .send(&app, "/api/github/webhook")
    .await;
    assert_eq!(status, 200, "{body}");
    browser.reload_until("merged").await;
    assert_eq!(browser.text("#fix-status").await, "merged");

    // Three passing checks resolve it; the timeline shows every step in order.
    target.respond_with(StatusCode::OK);
    visit(&browser, &format!("/incidents/{incident}")).await;
    browser.reload_until("Resolved after").await;
    assert_eq!(browser.text("#incident-status").await, "resolved");
    let steps: Vec<String> = browser
        .execute(
            "return Array.from(document.querySelectorAll('#timeline li')).map(li => li.textContent)",
        )
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step.as_str().unwrap().to_owned())
        .collect();
    let position = |needle: &str| {
        steps
            .iter()
            .position(|step| step.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in the timeline {steps:#?}"))
    };
    assert!(position("Opened by monitor Health Check") < position("monitor check(s) failed"));
    assert!(position("Revert proposed") < position(&format!("Pull request #{number} merged")));
    assert!(position("monitor check(s) passed") < position("Resolved after"));
    assert_eq!(position("Resolved after"), steps.len() - 1);
    // A resolved incident offers no more transitions.
    assert!(!browser.page_text().await.contains("Acknowledge"));
    browser.assert_fits(PHONE).await;

    // Pull requests of the service, by state.
    visit(
        &browser,
        &format!("/services/{service}/pull-requests?state=merged"),
    )
    .await;
    assert!(browser.page_text().await.contains(&format!("{number}")));
    visit(
        &browser,
        &format!("/services/{service}/pull-requests?state=open"),
    )
    .await;
    assert!(browser.page_text().await.contains("No pull requests open"));
    visit(&browser, &format!("/services/{service}/issues")).await;
    visit(&browser, "/fix-proposals?status=merged").await;
    assert!(browser.page_text().await.contains("Revert a1b2c3d"));
    browser.close().await;
}

/// Posts a page's form as JavaScript-less browser would (its CSRF token, its cookies), without
/// following the redirect: the status and the `Location`.
async fn browser_post(browser: &Browser, path: &str) -> (u16, String) {
    let answer = browser
        .execute(&format!(
            "const csrf = document.querySelector('input[name=csrf]').value; \
             return fetch('{path}', {{method: 'POST', redirect: 'manual', \
               headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, \
               body: 'csrf=' + encodeURIComponent(csrf)}}) \
             .then(r => [r.type === 'opaqueredirect' ? 303 : r.status, r.url])"
        ))
        .await;
    (
        answer[0].as_u64().unwrap() as u16,
        answer[1].as_str().unwrap_or("").to_owned(),
    )
}

const PATCH: &str = "--- a/src/pay.rs
+++ b/src/pay.rs
@@ -1,4 +1,4 @@
 fn charge(amount: Option<u64>) {
-    let amount = amount.unwrap();
+    let Some(amount) = amount else { return };
     send(amount);
 }
";

async fn ai_fix(app: &TestApp, incident: &str, summary: &str) -> String {
    let (status, fix) = json_of(
        app.post_json(
            &format!("/api/incidents/{incident}/fix-proposals"),
            &json!({"fix_type": "ai_fix", "summary": summary, "patch": PATCH,
                    "confidence_score": 80, "risk_assessment": "low"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{fix}");
    fix["id"].as_str().unwrap().to_owned()
}

async fn incidents_opened_by_hand_and_ai_fixes_decided_in_the_browser(backend: Backend) {
    let github = FakeGithub::start().await;
    let app = record_app(backend, &github).await;
    let (status, service) = json_of(
        app.post_json(
            "/api/services",
            &json!({"name": "Checkout <b>web</b>", "repository": "acme/checkout",
                    "github_token": GOOD_TOKEN}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{service}");
    let service = service["id"].as_str().unwrap().to_owned();
    let browser = admin_browser(&app).await;

    // Every field's error at once, beside its field; nothing is opened.
    visit(&browser, "/incidents").await;
    assert!(browser.page_text().await.contains("No open incidents"));
    browser.submit("main a[href='/incidents/new']").await;
    browser
        .execute(
            "document.querySelectorAll('[required]').forEach(e => e.removeAttribute('required'))",
        )
        .await;
    browser.fill("#started_at", "").await;
    browser.submit("main form button[type=submit]").await;
    assert!(!browser.text("#title-error").await.is_empty());
    assert!(!browser.text("#service_id-error").await.is_empty());
    assert_eq!(count(&app, "/api/incidents?status=open").await, 0);

    // A title with markup is shown as text; a reload after the redirect opens nothing more.
    let title = "<img src=x onerror=alert(1)> Payments down";
    browser.fill("#title", title).await;
    browser
        .execute(&format!(
            "document.querySelector('#service_id').value = '{service}'"
        ))
        .await;
    browser.submit("main form button[type=submit]").await;
    assert!(browser.path().await.starts_with("/incidents/inc_"));
    assert_eq!(browser.text("h1").await, title);
    assert!(browser.page_text().await.contains("Checkout <b>web</b>"));
    browser.client.refresh().await.unwrap();
    browser.check_page().await;
    assert_eq!(count(&app, "/api/incidents?status=open").await, 1);
    let incident = browser.path().await.rsplit('/').next().unwrap().to_owned();
    browser.assert_fits(PHONE).await;

    // Acknowledged elsewhere meanwhile: the stale button says why nothing changed.
    let (status, _) = json_of(
        app.post_json(
            &format!("/api/incidents/{incident}/acknowledge"),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    browser.submit("form[action$='/acknowledge'] button").await;
    assert_eq!(browser.path().await, format!("/incidents/{incident}"));
    assert!(
        browser
            .page_text()
            .await
            .contains("Nothing changed: cannot acknowledge an incident that is acknowledged."),
        "{}",
        browser.page_text().await
    );
    assert_eq!(browser.text("#incident-status").await, "acknowledged");

    // AI fixes wait, ready: one approved, one rejected with a reason.
    let approved = ai_fix(&app, &incident, "Handle a missing amount").await;
    let rejected = ai_fix(&app, &incident, "Return early on a missing amount").await;
    visit(&browser, "/fix-proposals?status=ready").await;
    assert!(
        browser
            .page_text()
            .await
            .contains("Handle a missing amount")
    );
    visit(&browser, &format!("/fix-proposals/{approved}")).await;
    let diff = browser.text(".diff").await;
    assert!(
        diff.contains("−") && diff.contains("let amount = amount.unwrap();"),
        "{diff}"
    );
    assert!(
        diff.contains("+") && diff.contains("let Some(amount) = amount else"),
        "{diff}"
    );
    browser.submit("form[action$='/approve'] button").await;
    assert!(browser.page_text().await.contains("Approved"));
    eventually(WAIT, "the approved fix's pull request", || async {
        let (_, fix) = json_of(app.get(&format!("/api/fix-proposals/{approved}")).await).await;
        (fix["status"] == "pr_created").then_some(())
    })
    .await;
    browser.reload_until("pr_created").await;

    visit(&browser, &format!("/fix-proposals/{rejected}")).await;
    browser
        .fill("#reason", "Hides the bug instead of <fixing> it")
        .await;
    browser.submit("form[action$='/reject'] button").await;
    assert_eq!(browser.text("#fix-status").await, "rejected");
    assert!(
        browser
            .page_text()
            .await
            .contains("Hides the bug instead of <fixing> it")
    );
    browser.client.refresh().await.unwrap();
    let (_, fix) = json_of(app.get(&format!("/api/fix-proposals/{rejected}")).await).await;
    assert_eq!(
        fix["rejection_reason"],
        "Hides the bug instead of <fixing> it"
    );
    // Both decided: the incident lists them; resolving it ends its buttons.
    visit(&browser, &format!("/incidents/{incident}")).await;
    let text = browser.page_text().await;
    assert!(
        text.contains("Handle a missing amount") && text.contains("rejected"),
        "{text}"
    );
    browser.submit("form[action$='/resolve'] button").await;
    assert_eq!(browser.text("#incident-status").await, "resolved");
    let (_, state) = json_of(app.get(&format!("/api/incidents/{incident}")).await).await;
    assert_eq!(state["status"], "resolved");

    // Malformed or foreign ids are the navigation's 404 page.
    for path in [
        "/incidents/inc_nope",
        "/fix-proposals/fp_123",
        "/deploys/dep_zz",
        &format!("/services/{service}/commits/nothex"),
    ] {
        browser
            .client
            .goto(&format!("{}{path}", app.base_url))
            .await
            .unwrap();
        assert_eq!(browser.text("h1").await, "Not found", "{path}");
        assert!(
            browser.text("header nav").await.contains("Incidents"),
            "{path}: the error page keeps the navigation"
        );
    }
    // A form's address opened as a page leads back to the page the form was on.
    for (address, page) in [
        (
            format!("/incidents/{incident}/acknowledge"),
            format!("/incidents/{incident}"),
        ),
        (
            format!("/services/{service}/secret/rotate"),
            format!("/services/{service}"),
        ),
    ] {
        browser.open(&address).await;
        assert_eq!(browser.path().await, page);
    }
    let _: Value = browser.execute("return 1").await;
    browser.close().await;
}
