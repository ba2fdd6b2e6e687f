//! Hookline's load tool: starts a release `hookline serve` on a fresh SQLite file or PostgreSQL
//! schema, local receivers, endpoints, then publishes events and measures end-to-end deliveries/s,
//! publish→receipt latency (p50/p95/p99) and the server's peak RSS.
//!
//! Run it with `bench/run` (see bench/README.md). Every loop is bounded by a count or a duration,
//! and all traffic stays on 127.0.0.1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use clap::Parser;
use serde_json::json;
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Parser)]
#[command(about = "Measure Hookline's outbound delivery throughput and latency")]
struct Args {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// PostgreSQL to use with --backend postgres (a fresh schema is created and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1/test")]
    postgres_url: String,
    /// The hookline binary to start.
    #[arg(long, default_value = "target/release/hookline")]
    binary: String,
    /// Endpoints (each with its own receiver) every event fans out to.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Events to publish as fast as possible (ignored with --rate).
    #[arg(long, default_value_t = 2_000)]
    events: u64,
    /// Publish at this many events per second instead, for --seconds.
    #[arg(long)]
    rate: Option<u64>,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent publishers in the as-fast-as-possible mode.
    #[arg(long, default_value_t = 32)]
    publishers: usize,
    /// Queue this many events with the worker stopped, then start it and measure the drain.
    #[arg(long)]
    backlog: Option<u64>,
    /// Measure inbound instead: signed GitHub pushes (2 commits, ~8 KiB) to /api/github/webhook.
    #[arg(long)]
    inbound: bool,
    /// With --inbound: send the same requests to a bare axum handler that only reads the body
    /// (in a process of its own), the ceiling Hookline is compared with.
    #[arg(long)]
    bare: bool,
    /// Pushes to send with --inbound.
    #[arg(long, default_value_t = 10_000)]
    pushes: u64,
    /// After delivering, time the web pages (webhooks list, endpoint with its deliveries, a
    /// delivery) over what was delivered, signed in through the setup link.
    #[arg(long)]
    pages: bool,
    /// With --inbound: relay every push to this many repository hooks (each with its own local
    /// receiver) and measure the relay end to end.
    #[arg(long, default_value_t = 0)]
    hooks: usize,
    /// Requests per page with --pages.
    #[arg(long, default_value_t = 200)]
    page_rounds: usize,
    /// Print what each delivery cost: CPU of Hookline, of the load tool and of PostgreSQL's
    /// processes, and on PostgreSQL the WAL, transactions, rows and (where pg_stat_statements is
    /// loaded) statements per delivery.
    #[arg(long)]
    costs: bool,
    /// Drive a running Svix server (its API base URL, e.g. `http://127.0.0.1:8071`) instead of
    /// Hookline, with the same receivers, publishers and measurements, for a side-by-side
    /// comparison: one application, `--endpoints` endpoints, messages of type `bench.event`.
    /// The server must allow loopback endpoints (`whitelist_subnets`).
    #[arg(long)]
    svix_url: Option<String>,
    /// The Svix API token (a JWT from `svix-server jwt generate`); default: `$SVIX_TOKEN`.
    #[arg(long, env = "SVIX_TOKEN", hide_env_values = true)]
    svix_token: Option<String>,
    /// Internal: run the bare handler and print its address.
    #[arg(long, hide = true)]
    bare_server: bool,
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[derive(Default)]
struct Received {
    count: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

async fn receive(State(received): State<Arc<Received>>, body: Bytes) -> &'static str {
    let now = micros_now();
    let text = std::str::from_utf8(&body).unwrap_or_default();
    if let Some(sent) = text
        .split("\"sent_at_us\":")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse::<u64>().ok())
    {
        received
            .latencies_us
            .lock()
            .unwrap()
            .push(now.saturating_sub(sent));
    }
    received.count.fetch_add(1, Ordering::Relaxed);
    "ok"
}

/// The server process and what it printed.
struct Server {
    child: tokio::process::Child,
    base_url: String,
    token: String,
    /// The code of the first admin's setup link, printed on a first start.
    setup_code: Option<String>,
}

async fn start_server(args: &Args, database_url: &str, role: &str, master_key: &str) -> Server {
    let mut child = tokio::process::Command::new(&args.binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--role", role])
        .env("HOOKLINE_DATABASE_URL", database_url)
        .env("HOOKLINE_MASTER_KEY", master_key)
        .env("HOOKLINE_DELIVERY__ALLOW_HTTP", "true")
        .env("HOOKLINE_SSRF__ALLOW", "[\"127.0.0.0/8\"]")
        .env("HOOKLINE_LOG__LEVEL", "warn")
        .env("HOOKLINE_DATABASE__MAX_CONNECTIONS", "32")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {} (build it first): {error}", args.binary));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut token = String::new();
    let mut setup_code = None;
    let base_url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line = line.trim();
            if line.starts_with("hkl_") {
                token = line.to_owned();
            }
            if line.starts_with("http") && line.contains("/setup/") {
                setup_code = line.rsplit('/').next().map(str::to_owned);
            }
            if let Some(url) = line.strip_prefix("Hookline listening on ") {
                return url.to_owned();
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("the server started in time");
    Server {
        child,
        base_url,
        token,
        setup_code,
    }
}

/// Relayed pushes: `--pushes` verified GitHub pushes, each relayed to `--hooks` repository hooks
/// in the GitLab format; measures accepted pushes/s at the receiver and hook deliveries/s from
/// the first push to the last delivery received.
async fn run_relay(args: &Args, client: &reqwest::Client, database_url: &str, master_key: &str) {
    let received = Arc::new(Received::default());
    let server = start_server(args, database_url, "all", master_key).await;
    let api = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{}{path}", server.base_url))
            .bearer_auth(&server.token)
            .json(&body)
            .send()
    };
    let service: serde_json::Value = api(
        "/api/services",
        json!({"name": "bench", "repository": BENCH_REPOSITORY}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let service_id = service["id"].as_str().unwrap();
    let secret: serde_json::Value = api(
        &format!("/api/services/{service_id}/webhook-secret"),
        json!({}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let secret = secret["secret"].as_str().unwrap().to_owned();
    for _ in 0..args.hooks {
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let created = api(
            &format!("/api/repos/{BENCH_REPOSITORY}/hooks"),
            json!({"url": url, "token": "bench-token"}),
        )
        .await
        .unwrap();
        assert_eq!(created.status(), 201, "creating a hook");
    }
    let url = format!("{}/api/github/webhook", server.base_url);
    let started = Instant::now();
    let rate = send_pushes(args, client, &url, &secret).await;
    let expected = args.pushes * args.hooks as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.count.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = received.count.load(Ordering::Relaxed);
    println!(
        "target=relay backend={} pushes={} hooks={} accepted_pushes/s={rate:.0} hook_deliveries={delivered}/{expected} hook_deliveries/s={:.0} elapsed={elapsed:.2}s peak_rss={}MiB",
        args.backend,
        args.pushes,
        args.hooks,
        delivered as f64 / elapsed,
        peak_rss_kib(server.child.id().unwrap()).unwrap_or(0) / 1024
    );
    if delivered < expected {
        eprintln!("only {delivered} of {expected} hook deliveries arrived within the time limit");
        std::process::exit(1);
    }
}

/// The server's Prometheus exposition.
async fn metrics_text(client: &reqwest::Client, base_url: &str) -> String {
    client
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Mean server time of GET requests to `route` so far, from the server's own histogram: (sum of
/// seconds, count).
async fn route_time(client: &reqwest::Client, base_url: &str, route: &str) -> (f64, f64) {
    let text = metrics_text(client, base_url).await;
    let value = |suffix: &str| {
        text.lines()
            .filter(|line| {
                line.starts_with(&format!(
                    "hookline_http_request_duration_seconds_{suffix}{{"
                )) && line.contains("method=\"GET\"")
                    && line.contains(&format!("route=\"{route}\""))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    (value("sum"), value("count"))
}

/// Times the main web pages over the deliveries the run made: client-side p50/p95 on loopback,
/// and the mean server time from the server's own request histogram.
async fn measure_pages(server: &Server, rounds: usize) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = &server.base_url;
    let code = server
        .setup_code
        .as_deref()
        .expect("the first start printed a setup link");
    let response = client
        .post(format!("{base}/setup/{code}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=bench%40example.com&display_name=Bench&password=bench-password&password_confirm=bench-password")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "signing in through the setup link");
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("hookline_session="))
        .and_then(|value| value.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let api = |path: String| {
        let client = client.clone();
        let token = server.token.clone();
        async move {
            client
                .get(path)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let endpoints = api(format!("{base}/api/webhooks/endpoints")).await;
    let endpoint = endpoints["data"][0]["id"].as_str().unwrap().to_owned();
    let deliveries = api(format!(
        "{base}/api/webhooks/endpoints/{endpoint}/deliveries?limit=250"
    ))
    .await;
    let newest = deliveries["data"][0]["id"].as_str().unwrap().to_owned();
    let deep = deliveries["data"][199]["id"]
        .as_str()
        .unwrap_or(&newest)
        .to_owned();
    let pages = [
        ("webhooks list", "/org/webhooks".to_owned(), "/org/webhooks"),
        (
            "endpoint, newest 50 deliveries",
            format!("/org/webhooks/{endpoint}"),
            "/org/webhooks/{id}",
        ),
        (
            "endpoint, filtered",
            format!(
                "/org/webhooks/{endpoint}?status=succeeded&event_type=bench.event&since=2020-01-01T00%3A00"
            ),
            "/org/webhooks/{id}",
        ),
        (
            "endpoint, 5th page",
            format!("/org/webhooks/{endpoint}?cursor={deep}"),
            "/org/webhooks/{id}",
        ),
        (
            "delivery with attempts",
            format!("/org/deliveries/{newest}"),
            "/org/deliveries/{id}",
        ),
        (
            "API: newest 50 deliveries (JSON, for comparison)",
            format!("/api/webhooks/endpoints/{endpoint}/deliveries"),
            "/api/webhooks/endpoints/{id}/deliveries",
        ),
    ];
    for (name, path, route) in pages {
        let get = || {
            client
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .bearer_auth(&server.token)
                .send()
        };
        for _ in 0..5 {
            let response = get().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            response.bytes().await.unwrap();
        }
        let (sum_before, count_before) = route_time(&client, base, route).await;
        let mut micros = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            let response = get().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            response.bytes().await.unwrap();
            micros.push(started.elapsed().as_micros() as u64);
        }
        let (sum_after, count_after) = route_time(&client, base, route).await;
        micros.sort_unstable();
        let server_mean_ms = if count_after > count_before {
            (sum_after - sum_before) / (count_after - count_before) * 1000.0
        } else {
            f64::NAN
        };
        println!(
            "page=\"{name}\" rounds={rounds} client_p50={:.2}ms client_p95={:.2}ms server_mean={server_mean_ms:.2}ms",
            percentile(&micros, 0.50),
            percentile(&micros, 0.95),
        );
    }
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
}

fn current_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
}

/// The process's CPU time (user + system) in seconds, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Bytes the process handed to `write` and friends, from `/proc/<pid>/io`.
fn written_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("wchar: "))
        .and_then(|value| value.trim().parse().ok())
}

/// CPU seconds of every PostgreSQL process on this machine, by pid.
fn postgres_cpu() -> std::collections::HashMap<u32, f64> {
    let mut cpu = std::collections::HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return cpu;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let is_postgres = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim() == "postgres");
        if is_postgres && let Some(seconds) = cpu_seconds(pid) {
            cpu.insert(pid, seconds);
        }
    }
    cpu
}

/// Counters read before and after a measured run.
#[derive(Default)]
struct CostSnapshot {
    hookline_cpu: f64,
    own_cpu: f64,
    hookline_written: u64,
    postgres_cpu: std::collections::HashMap<u32, f64>,
    /// Named PostgreSQL counters (WAL, transactions, rows per table).
    counters: std::collections::BTreeMap<String, f64>,
    /// pg_stat_statements: calls, total time (ms) and WAL bytes per statement text.
    statements: std::collections::HashMap<String, (f64, f64, f64)>,
}

async fn cost_snapshot(
    hookline_pid: u32,
    postgres: Option<(&str, &str)>,
    with_postgres_cpu: bool,
) -> CostSnapshot {
    let mut snapshot = CostSnapshot {
        hookline_cpu: cpu_seconds(hookline_pid).unwrap_or(0.0),
        own_cpu: cpu_seconds(std::process::id()).unwrap_or(0.0),
        hookline_written: written_bytes(hookline_pid).unwrap_or(0),
        ..CostSnapshot::default()
    };
    if with_postgres_cpu {
        snapshot.postgres_cpu = postgres_cpu();
    }
    let Some((url, schema)) = postgres else {
        return snapshot;
    };
    let Ok(mut admin) = sqlx::PgConnection::connect(url).await else {
        return snapshot;
    };
    let wal: Option<(i64, i64, f64)> =
        sqlx::query_as("SELECT wal_records, wal_fpi, wal_bytes::float8 FROM pg_stat_wal")
            .fetch_optional(&mut admin)
            .await
            .ok()
            .flatten();
    if let Some((records, fpi, bytes)) = wal {
        snapshot
            .counters
            .insert("wal_records".into(), records as f64);
        snapshot
            .counters
            .insert("wal_full_page_images".into(), fpi as f64);
        snapshot.counters.insert("wal_bytes".into(), bytes);
    }
    if let Ok((commits,)) = sqlx::query_as::<_, (i64,)>(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut admin)
    .await
    {
        snapshot
            .counters
            .insert("transactions".into(), commits as f64);
    }
    let tables: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del \
         FROM pg_stat_user_tables WHERE schemaname = $1",
    )
    .bind(schema)
    .fetch_all(&mut admin)
    .await
    .unwrap_or_default();
    for (table, inserted, updated, hot, deleted) in tables {
        for (what, value) in [
            ("inserted", inserted),
            ("updated", updated),
            ("hot_updated", hot),
            ("deleted", deleted),
        ] {
            if value > 0 {
                snapshot
                    .counters
                    .insert(format!("rows_{what}.{table}"), value as f64);
            }
        }
    }
    let statements: Vec<(String, i64, f64, f64)> = sqlx::query_as(
        "SELECT CASE WHEN toplevel THEN '' ELSE '(nested) ' END || query, calls, \
           total_exec_time + total_plan_time, wal_bytes::float8 FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap_or_default();
    for (query, calls, time, wal) in statements {
        let entry = snapshot.statements.entry(query).or_default();
        entry.0 += calls as f64;
        entry.1 += time;
        entry.2 += wal;
    }
    snapshot
}

/// Prints what one delivery cost between two snapshots.
fn print_costs(before: &CostSnapshot, after: &CostSnapshot, deliveries: u64) {
    let per = |value: f64| value / deliveries.max(1) as f64;
    let postgres_cpu: f64 = after
        .postgres_cpu
        .iter()
        .map(|(pid, seconds)| seconds - before.postgres_cpu.get(pid).copied().unwrap_or(0.0))
        .sum();
    println!(
        "costs per delivery: hookline_cpu={:.1}us load_tool_cpu={:.1}us postgres_cpu={:.1}us hookline_written={:.0}B",
        per(after.hookline_cpu - before.hookline_cpu) * 1e6,
        per(after.own_cpu - before.own_cpu) * 1e6,
        per(postgres_cpu) * 1e6,
        per(after
            .hookline_written
            .saturating_sub(before.hookline_written) as f64),
    );
    for (name, value) in &after.counters {
        let delta = value - before.counters.get(name).copied().unwrap_or(0.0);
        if delta > 0.0 {
            println!("  {name}: {:.3} per delivery", per(delta));
        }
    }
    if after.statements.is_empty() {
        return;
    }
    let mut rows: Vec<(&String, f64, f64, f64)> = after
        .statements
        .iter()
        .map(|(query, (calls, time, wal))| {
            let (calls_before, time_before, wal_before) =
                before.statements.get(query).copied().unwrap_or_default();
            (
                query,
                calls - calls_before,
                time - time_before,
                wal - wal_before,
            )
        })
        .filter(|(_, calls, _, _)| *calls > 0.0)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top_level = || rows.iter().filter(|row| !row.0.starts_with("(nested)"));
    let total_calls: f64 = top_level().map(|row| row.1).sum();
    let total_time: f64 = top_level().map(|row| row.2).sum();
    println!(
        "  statements sent (round trips): {:.3} per delivery, {:.1}us of planning and execution per delivery",
        per(total_calls),
        per(total_time) * 1e3
    );
    println!(
        "    calls      time       WAL   (per delivery; time: planning and execution, with nested statements and lock waits)"
    );
    for (query, calls, time, wal) in rows.iter().take(20) {
        let text: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
        let text: String = text.chars().take(100).collect();
        println!(
            "    {:>6.3} {:>7.1}us {:>7.0}B  {text}",
            per(*calls),
            per(*time) * 1e3,
            per(*wal)
        );
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// Where events are published: Hookline's API, or a Svix server's for comparison.
#[derive(Clone)]
struct Publisher {
    client: reqwest::Client,
    /// The full URL a publish is POSTed to.
    url: String,
    token: String,
    svix: bool,
}

async fn publish_one(publisher: &Publisher, n: u64) {
    let data = json!({"sent_at_us": micros_now(), "n": n});
    let body = if publisher.svix {
        json!({"eventType": "bench.event", "payload": data})
    } else {
        json!({"type": "bench.event", "data": data})
    };
    let response = publisher
        .client
        .post(&publisher.url)
        .bearer_auth(&publisher.token)
        .json(&body)
        .send()
        .await
        .expect("publish request");
    assert_eq!(
        response.status(),
        202,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

/// Publishes `--rate` events per second for `--seconds`, or `--backlog`/`--events` as fast as
/// `--publishers` concurrent publishers go; returns how many and when publishing started.
async fn publish_all(args: &Args, publisher: &Publisher) -> (u64, Instant) {
    if let Some(rate) = args.rate {
        let total = rate * args.seconds;
        let started = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let mut tasks = Vec::with_capacity(total as usize);
        for n in 0..total {
            let due = started + interval.mul_f64(n as f64);
            tokio::time::sleep_until(due.into()).await;
            let publisher = publisher.clone();
            tasks.push(tokio::spawn(
                async move { publish_one(&publisher, n).await },
            ));
        }
        for task in tasks {
            task.await.unwrap();
        }
        return (total, started);
    }
    let total = args.backlog.unwrap_or(args.events);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let publishers: Vec<_> = (0..args.publishers)
        .map(|_| {
            let (publisher, next) = (publisher.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    publish_one(&publisher, n).await;
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    (total, started)
}

/// The same measurement against a Svix server (`--svix-url`): an application, one endpoint per
/// receiver, then messages published and received exactly as Hookline's events are.
async fn run_svix(args: &Args, svix_url: &str, receiver_urls: &[String], received: &Received) {
    let token = args
        .svix_token
        .clone()
        .expect("--svix-token or SVIX_TOKEN (svix-server jwt generate)");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let create = |path: String, body: serde_json::Value| {
        let request = client
            .post(format!("{svix_url}{path}"))
            .bearer_auth(&token)
            .json(&body);
        async move {
            let response = request.send().await.expect("Svix answers");
            let status = response.status();
            let created: serde_json::Value = response.json().await.unwrap_or_default();
            assert!(status.is_success(), "Svix {path}: {status} {created}");
            created
        }
    };
    let app = create(
        "/api/v1/app/".to_owned(),
        json!({"name": format!("bench-{}", uuid::Uuid::new_v4().simple())}),
    )
    .await;
    let app_id = app["id"].as_str().expect("an application id").to_owned();
    for url in receiver_urls {
        create(
            format!("/api/v1/app/{app_id}/endpoint/"),
            json!({"url": url, "version": 1}),
        )
        .await;
    }
    let publisher = Publisher {
        client: client.clone(),
        url: format!("{svix_url}/api/v1/app/{app_id}/msg/"),
        token: token.clone(),
        svix: true,
    };
    let (published, started) = publish_all(args, &publisher).await;
    let expected = published * args.endpoints as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.count.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if report(args, "svix", published, received, expected, elapsed, 0) < expected {
        std::process::exit(1);
    }
}

/// The result line every run prints (`bench/compare-outbound` reads `deliveries/s=`); returns
/// how many deliveries arrived.
fn report(
    args: &Args,
    backend: &str,
    published: u64,
    received: &Received,
    expected: u64,
    elapsed: f64,
    rss_kib: u64,
) -> u64 {
    let delivered = received.count.load(Ordering::Relaxed);
    let mut latencies = received.latencies_us.lock().unwrap().clone();
    latencies.sort_unstable();
    println!(
        "backend={} endpoints={} mode={} events={} delivered={}/{} elapsed={:.2}s deliveries/s={:.0} \
         p50={:.1}ms p95={:.1}ms p99={:.1}ms peak_rss={}MiB",
        backend,
        args.endpoints,
        match (args.rate, args.backlog) {
            (Some(rate), _) => format!("rate{rate}/s"),
            (_, Some(_)) => "backlog-drain".to_owned(),
            _ => "max".to_owned(),
        },
        published,
        delivered,
        expected,
        elapsed,
        delivered as f64 / elapsed,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        rss_kib / 1024,
    );
    if delivered < expected {
        eprintln!("only {delivered} of {expected} deliveries arrived within the time limit");
    }
    delivered
}

/// The bare ceiling: an axum handler that reads the body and answers 200.
async fn run_bare_server() {
    let app = axum::Router::new().fallback(|body: Bytes| async move {
        std::hint::black_box(body.len());
        "{\"processed\":true}"
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!(
        "Hookline listening on http://{}",
        listener.local_addr().unwrap()
    );
    axum::serve(listener, app).await.unwrap();
}

const BENCH_REPOSITORY: &str = "bench/checkout";

/// GitHub's push payload (the test fixture: full repository, sender and organization objects, two
/// commits), as GitHub sends it: compact JSON.
static PUSH_TEMPLATE: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
    let mut push: serde_json::Value = serde_json::from_str(include_str!(
        "../tests/e2e/fixtures/github/push_new_branch.json"
    ))
    .expect("the push fixture is JSON");
    push["repository"]["full_name"] = json!(BENCH_REPOSITORY);
    push
});

/// A push with two fresh commits (SHAs derived from `n`), about 8 KiB.
fn push_payload(n: u64) -> Vec<u8> {
    let mut push = PUSH_TEMPLATE.clone();
    let mut last = String::new();
    for (k, commit) in push["commits"]
        .as_array_mut()
        .expect("commits")
        .iter_mut()
        .enumerate()
    {
        let sha = format!("{:040x}", n * 2 + k as u64 + 1);
        commit["url"] = json!(format!(
            "https://github.com/{BENCH_REPOSITORY}/commit/{sha}"
        ));
        commit["id"] = json!(sha);
        last = sha;
    }
    push["head_commit"]["id"] = json!(last);
    push["after"] = json!(last);
    serde_json::to_vec(&push).unwrap()
}

/// Sends `args.pushes` signed pushes with `args.publishers` concurrent senders; returns pushes/s.
async fn send_pushes(args: &Args, client: &reqwest::Client, url: &str, secret: &str) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let total = args.pushes;
    let started = Instant::now();
    let senders: Vec<_> = (0..args.publishers)
        .map(|_| {
            let (client, url, secret, next) = (
                client.clone(),
                url.to_owned(),
                secret.to_owned(),
                next.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    let body = push_payload(n);
                    let signature = hookline::inbound::hub_signature(secret.as_bytes(), &body);
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-github-event", "push")
                        .header("x-github-delivery", format!("bench-{n}"))
                        .header("x-hub-signature-256", signature)
                        .body(body)
                        .send()
                        .await
                        .expect("push request");
                    assert_eq!(response.status(), 200, "{:?}", response.text().await);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn run_inbound(args: &Args, database_url: &str, master_key: &str) {
    hookline::outbound::client::install_crypto_provider();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let payload_bytes = push_payload(0).len();
    if args.bare {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .arg("--bare-server")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the bare server's address");
        let base = line
            .strip_prefix("Hookline listening on ")
            .unwrap()
            .to_owned();
        let pid = child.id().unwrap();
        let cpu_before = cpu_seconds(pid);
        let rate = send_pushes(args, &client, &format!("{base}/api/github/webhook"), "s").await;
        let cpu_per_request_us = cpu_seconds(pid)
            .zip(cpu_before)
            .map(|(after, before)| (after - before) * 1e6 / args.pushes as f64)
            .unwrap_or(0.0);
        println!(
            "target=bare-axum pushes={} payload={payload_bytes}B concurrency={} requests/s={rate:.0} server_cpu_per_request={cpu_per_request_us:.0}us peak_rss={}MiB",
            args.pushes,
            args.publishers,
            peak_rss_kib(pid).unwrap_or(0) / 1024
        );
        let _ = child.start_kill();
        return;
    }
    if args.hooks > 0 {
        run_relay(args, &client, database_url, master_key).await;
        return;
    }
    let server = start_server(args, database_url, "api", master_key).await;
    let service: serde_json::Value = client
        .post(format!("{}/api/services", server.base_url))
        .bearer_auth(&server.token)
        .json(&json!({"name": "bench", "repository": BENCH_REPOSITORY}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let service_id = service["id"].as_str().unwrap();
    let secret: serde_json::Value = client
        .post(format!(
            "{}/api/services/{service_id}/webhook-secret",
            server.base_url
        ))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = secret["secret"].as_str().unwrap();
    let url = format!("{}/api/github/webhook", server.base_url);
    let pid = server.child.id().unwrap();
    let (cpu_before, written_before) = (cpu_seconds(pid), written_bytes(pid));
    let rate = send_pushes(args, &client, &url, secret).await;
    let cpu_per_push_us = cpu_seconds(pid)
        .zip(cpu_before)
        .map(|(after, before)| (after - before) * 1e6 / args.pushes as f64)
        .unwrap_or(0.0);
    let written_per_push = written_bytes(pid)
        .zip(written_before)
        .map(|(after, before)| (after - before) / args.pushes)
        .unwrap_or(0);
    let stored: serde_json::Value = client
        .get(format!(
            "{}/api/services/{service_id}/commits?limit=1",
            server.base_url
        ))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        stored["data"][0]["sha"].is_string(),
        "commits were recorded: {stored}"
    );
    let metrics = metrics_text(&client, &server.base_url).await;
    let metric = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let batches = metric("hookline_inbound_write_batch_size_count").max(1.0);
    let batch_size = metric("hookline_inbound_write_batch_size_sum") / batches;
    let batch_ms = metric("hookline_inbound_write_batch_seconds_sum") * 1e3 / batches;
    println!(
        "target=hookline backend={} pushes={} payload={payload_bytes}B concurrency={} verified_pushes/s={rate:.0} server_cpu_per_push={cpu_per_push_us:.0}us server_written_per_push={written_per_push}B mean_write_batch={batch_size:.1} mean_batch_time={batch_ms:.2}ms peak_rss={}MiB",
        args.backend,
        args.pushes,
        args.publishers,
        peak_rss_kib(server.child.id().unwrap()).unwrap_or(0) / 1024
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.bare_server {
        run_bare_server().await;
        return;
    }
    let master_key = hookline::crypto::generate_key();
    let dir = tempfile::tempdir().unwrap();
    if let Ok(keep) = std::env::var("BENCH_KEEP_DB") {
        std::fs::create_dir_all(&keep).unwrap();
        eprintln!("keeping the SQLite database in {keep}");
    }
    let dir_path = std::env::var("BENCH_KEEP_DB")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().to_owned());
    let (database_url, schema) = match args.backend.as_str() {
        "sqlite" => (
            format!("sqlite://{}", dir_path.join("bench.db").display()),
            None,
        ),
        "postgres" => {
            let schema = format!("hl_bench_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(&args.postgres_url)
                .await
                .expect("PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&mut admin)
                .await
                .unwrap();
            let separator = if args.postgres_url.contains('?') {
                '&'
            } else {
                '?'
            };
            (
                format!(
                    "{}{separator}options[search_path]={schema}",
                    args.postgres_url
                ),
                Some(schema),
            )
        }
        other => panic!("unknown backend {other}"),
    };

    if args.inbound {
        run_inbound(&args, &database_url, &master_key).await;
        if let Some(schema) = schema
            && let Ok(mut admin) = sqlx::PgConnection::connect(&args.postgres_url).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut admin)
                .await;
        }
        return;
    }

    let received = Arc::new(Received::default());
    let mut receiver_urls = Vec::new();
    for _ in 0..args.endpoints {
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        receiver_urls.push(format!("http://{}/hook", listener.local_addr().unwrap()));
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    hookline::outbound::client::install_crypto_provider();
    if let Some(svix_url) = &args.svix_url {
        assert!(args.backlog.is_none(), "--backlog is Hookline's alone");
        run_svix(&args, svix_url, &receiver_urls, &received).await;
        return;
    }
    let first_role = if args.backlog.is_some() { "api" } else { "all" };
    let mut server = start_server(&args, &database_url, first_role, &master_key).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let setup = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{}{path}", server.base_url))
            .bearer_auth(&server.token)
            .json(&body)
            .send()
    };
    let created = setup("/api/event-types", json!({"name": "bench.event"}))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for url in &receiver_urls {
        let created = setup(
            "/api/webhooks/endpoints",
            json!({"url": url, "name": "bench"}),
        )
        .await
        .unwrap();
        assert_eq!(created.status(), 201);
    }

    let endpoints = args.endpoints as u64;
    let postgres_stats = schema
        .as_deref()
        .map(|schema| (args.postgres_url.as_str(), schema));
    let mut costs_before = if args.costs && args.backlog.is_none() {
        Some(cost_snapshot(server.child.id().unwrap(), postgres_stats, true).await)
    } else {
        None
    };
    let publisher = Publisher {
        client: client.clone(),
        url: format!("{}/api/events", server.base_url),
        token: server.token.clone(),
        svix: false,
    };
    let (published, started) = publish_all(&args, &publisher).await;
    let publish_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "published {published} events in {publish_secs:.2} s ({:.0}/s)",
        published as f64 / publish_secs
    );

    let mut drain_rss = Vec::new();
    let started = if args.backlog.is_some() {
        let _ = server.child.start_kill();
        let _ = server.child.wait().await;
        received.latencies_us.lock().unwrap().clear();
        let worker = start_server(&args, &database_url, "all", &master_key).await;
        server = worker;
        if args.costs {
            costs_before =
                Some(cost_snapshot(server.child.id().unwrap(), postgres_stats, true).await);
        }
        Instant::now()
    } else {
        started
    };

    let expected = published * endpoints;
    let deadline = Instant::now() + Duration::from_secs(600);
    let pid = server.child.id().unwrap();
    let mut last_sample = Instant::now();
    while received.count.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if args.backlog.is_some() && last_sample.elapsed() >= Duration::from_secs(5) {
            last_sample = Instant::now();
            let done = received.count.load(Ordering::Relaxed);
            if let Some(rss) = current_rss_kib(pid) {
                drain_rss.push(rss);
                eprintln!("  {done} delivered, RSS {} MiB", rss / 1024);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss = peak_rss_kib(pid).unwrap_or(0);
    let delivered = report(
        &args,
        &args.backend,
        published,
        &received,
        expected,
        elapsed,
        rss,
    );
    if !drain_rss.is_empty() {
        println!(
            "drain RSS samples (MiB): {:?}",
            drain_rss.iter().map(|kib| kib / 1024).collect::<Vec<_>>()
        );
    }
    if args.pages && delivered == expected {
        measure_pages(&server, args.page_rounds).await;
    }
    if args.costs {
        let text = metrics_text(&reqwest::Client::new(), &server.base_url).await;
        // `+ 0.0`: the empty sum is -0.0.
        let handed_off = text
            .lines()
            .filter(|line| line.starts_with("hookline_deliveries_handed_off_total"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            + 0.0;
        println!(
            "handed to the publishing node's worker (no claim): {handed_off:.0} of {delivered} deliveries"
        );
    }
    // CPU is read while the processes live; PostgreSQL's counters once the server's connections
    // closed (a backend reports its statistics when it ends).
    let costs_cpu = match costs_before {
        Some(_) => Some(cost_snapshot(pid, None, true).await),
        None => None,
    };
    let _ = server.child.start_kill();
    let _ = server.child.wait().await;
    if let (Some(before), Some(mut after)) = (costs_before, costs_cpu) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let database = cost_snapshot(pid, postgres_stats, false).await;
        after.counters = database.counters;
        after.statements = database.statements;
        print_costs(&before, &after, delivered);
    }
    if let Some(schema) = &schema
        && std::env::var("BENCH_KEEP_DB").is_err()
        && let Ok(mut admin) = sqlx::PgConnection::connect(&args.postgres_url).await
    {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut admin)
            .await;
    } else if let Some(schema) = schema {
        eprintln!("kept the PostgreSQL schema {schema}");
    }
    if delivered < expected {
        std::process::exit(1);
    }
}
