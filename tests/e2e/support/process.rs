//! Running the `hookline` binary as an operator does: one-shot commands, and `serve` processes
//! that tests stop with SIGTERM or kill with SIGKILL.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

pub const DEADLINE: Duration = Duration::from_secs(60);

/// The binary with a clean environment: no HOOKLINE_* from the caller, run in `dir`.
pub fn hookline(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookline"));
    for (key, _) in std::env::vars() {
        if key.starts_with("HOOKLINE_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.current_dir(dir).kill_on_drop(true);
    command
}

pub async fn run(command: &mut Command) -> (bool, String, String) {
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("command finished in time")
        .expect("command ran");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running `hookline serve`, its admin token and its address.
pub struct Served {
    child: Child,
    pub token: Option<String>,
    pub base_url: String,
    /// The one-time link to create the first admin, printed on a first start.
    pub setup_link: Option<String>,
    stderr: tokio::task::JoinHandle<String>,
}

pub async fn serve(mut command: Command) -> Served {
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("hookline serve starts");
    let stderr = tokio::spawn(read_all(child.stderr.take().unwrap()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut token = None;
    let mut setup_link = None;
    let base_url = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line = line.trim();
            if line.starts_with("hkl_") {
                token = Some(line.to_owned());
            }
            if line.starts_with("http") && line.contains("/setup/") {
                setup_link = Some(line.to_owned());
            }
            if let Some(url) = line.strip_prefix("Hookline listening on ") {
                return url.to_owned();
            }
        }
        panic!("hookline serve exited before listening");
    })
    .await
    .expect("hookline serve listened in time");
    Served {
        child,
        token,
        setup_link,
        base_url,
        stderr,
    }
}

async fn read_all(stream: impl AsyncRead + Unpin) -> String {
    let mut text = String::new();
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

impl Served {
    /// Sends SIGTERM and returns whether the process exited successfully, with its log.
    pub async fn terminate(mut self) -> (bool, String) {
        let pid = self.child.id().expect("still running").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("exited in time after SIGTERM")
            .unwrap();
        (status.success(), self.stderr.await.unwrap())
    }
}

pub async fn status_with(client: &reqwest::Client, url: &str, token: &str) -> u16 {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

impl Served {
    /// Kills the process with SIGKILL: no shutdown, no cleanup, like a crash.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL sent");
        let _ = self.child.wait().await;
    }
}
