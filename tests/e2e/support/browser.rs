//! Headless Chromium driven through chromedriver (W3C WebDriver, by fantoccini), for the tests
//! that use Hookline as a person does. Each browser gets its own chromedriver on a free loopback
//! port and its own empty profile, and both end with the test.
//!
//! `scripts/test` installs Debian's `chromium` and `chromium-driver` when they are missing;
//! `HOOKLINE_TEST_CHROMEDRIVER` names another driver binary.

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

pub struct Browser {
    pub client: Client,
    pub base_url: String,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// Chromedriver's own command for the browser's console (not part of W3C WebDriver).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

impl Browser {
    pub async fn start(base_url: &str) -> Browser {
        let driver_path = std::env::var("HOOKLINE_TEST_CHROMEDRIVER")
            .unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());
        assert!(
            std::path::Path::new(&driver_path).exists(),
            "{driver_path} is missing: run ./scripts/test (it installs chromium and \
             chromium-driver) or apt-get install chromium chromium-driver"
        );
        let port = free_port();
        let driver = tokio::process::Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": std::env::var("HOOKLINE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        capabilities.insert("goog:loggingPrefs".to_owned(), json!({"browser": "ALL"}));
        let webdriver = format!("http://127.0.0.1:{port}");
        let started = tokio::time::Instant::now();
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => break client,
                Err(error) if started.elapsed() < WAIT => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("no WebDriver session from chromedriver: {error}"),
            }
        };
        Browser {
            client,
            base_url: base_url.to_owned(),
            driver,
            _profile: profile,
        }
    }

    /// Opens a page of the server and checks it as every page is checked.
    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base_url))
            .await
            .unwrap();
        self.check_page().await;
    }

    /// Every page: a title, a label for every field a person fills in, no console errors.
    pub async fn check_page(&self) {
        let title = self.client.title().await.unwrap();
        let url = self.client.current_url().await.unwrap();
        assert!(!title.trim().is_empty(), "{url} has no <title>");
        let unlabelled = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll(\
                   'input:not([type=hidden]), select, textarea'))\
                 .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))\
                 .map(e => e.outerHTML)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(unlabelled, json!([]), "{url} has fields without a label");
        let errors = self.console_errors().await;
        assert!(errors.is_empty(), "{url}: console errors {errors:#?}");
    }

    /// The console's errors since the last call. A page answered with an error status on
    /// purpose (a refused form) is logged by Chromium as a failed load: that one is expected.
    pub async fn console_errors(&self) -> Vec<String> {
        let log = self.client.issue_cmd(BrowserLog).await.unwrap();
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .filter_map(|entry| entry["message"].as_str().map(str::to_owned))
            .filter(|message| !message.contains("the server responded with a status of 4"))
            .collect()
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no element `{css}`: {error}"))
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Clicks and, when the click loads a page, checks that page.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Clicks a submit button and waits for the next page, then checks it.
    pub async fn submit(&self, css: &str) {
        let before = self.find("html").await;
        self.click(css).await;
        let started = tokio::time::Instant::now();
        // The old document's root goes stale once the next page has loaded.
        while before.tag_name().await.is_ok() {
            assert!(
                started.elapsed() < WAIT,
                "no page loaded after clicking `{css}`"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.find("body").await;
        self.check_page().await;
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    pub async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Waits until the page's text contains `needle` (htmx updates, no reloads).
    pub async fn wait_for_text(&self, needle: &str) {
        let started = tokio::time::Instant::now();
        loop {
            if self.page_text().await.contains(needle) {
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "the page never showed `{needle}`: {}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reloads until the page shows `needle` (work done in the background, seen by reloading).
    pub async fn reload_until(&self, needle: &str) {
        let started = tokio::time::Instant::now();
        loop {
            self.client.refresh().await.unwrap();
            if self.page_text().await.contains(needle) {
                self.check_page().await;
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "the page never showed `{needle}`: {}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reloads until an element matching `css` is on the page.
    pub async fn reload_until_present(&self, css: &str) {
        let started = tokio::time::Instant::now();
        loop {
            self.client.refresh().await.unwrap();
            if self.client.find(Locator::Css(css)).await.is_ok() {
                self.check_page().await;
                return;
            }
            assert!(started.elapsed() < WAIT, "`{css}` never appeared");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of a cookie of this browser.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        self.client
            .get_named_cookie(name)
            .await
            .ok()
            .map(|cookie| cookie.value().to_owned())
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }

    /// Reopens the current page `width` pixels wide and checks nothing on it is wider than the
    /// screen (tables scroll inside their own box), then restores the desktop width.
    pub async fn assert_fits(&self, width: u32) {
        self.client.set_window_size(width, 900).await.unwrap();
        let overflow = self
            .execute(
                "return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) \
                 - document.documentElement.clientWidth",
            )
            .await;
        let url = self.client.current_url().await.unwrap();
        // The outermost elements that stick out, to say what to mend.
        let culprits = self
            .execute(
                "const w = document.documentElement.clientWidth; \
                 return Array.from(document.querySelectorAll('body *')) \
                   .filter(e => e.getBoundingClientRect().right > w + 1 && \
                     !(e.parentElement && e.parentElement.getBoundingClientRect().right > w + 1)) \
                   .slice(0, 5).map(e => e.outerHTML.slice(0, 160))",
            )
            .await;
        self.client.set_window_size(1280, 900).await.unwrap();
        assert!(
            overflow.as_i64().unwrap_or(i64::MAX) <= 0,
            "{url} is {overflow} px wider than a {width} px screen: {culprits:#}"
        );
    }

    pub async fn execute(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }
}
