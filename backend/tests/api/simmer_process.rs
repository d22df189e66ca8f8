//! A real `simmer` process, for what only a process shows: signals, exit
//! codes, stderr and file modes. Started under a normal umask (022) in its own
//! data directory, with JSON logs; plus the few REST calls its tests need.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{recipe_body, username};

/// How long a test waits for a log line or an exit.
const WAIT: Duration = Duration::from_secs(30);

/// Settings that let a test's sender post as fast as it is acknowledged.
pub const UNTHROTTLED_CHAT: [(&str, &str); 2] = [
    ("SIMMER_CHAT_RATE_PER_S", "100000"),
    ("SIMMER_CHAT_BURST", "100000"),
];

pub struct Simmer {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// `http://127.0.0.1:PORT`
    pub address: String,
}

/// The binary's command, run by `sh` under umask 022 with these variables.
pub fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 022 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_simmer"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SIMMER_BIND", "127.0.0.1:0")
        .env("SIMMER_LOG_FORMAT", "json")
        .env("SIMMER_WORKERS", "2")
        .env("RUST_LOG", "info")
        // A panic in the server prints where it happened.
        .env("RUST_BACKTRACE", "1");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd
}

impl Simmer {
    /// Starts `simmer serve` in `dir` and waits until it listens.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = command(dir, env)
            .arg("serve")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let keep = all.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut simmer = Self {
            child,
            lines,
            stderr: all,
            address: String::new(),
        };
        let listening = simmer.wait_for("simmer listening");
        simmer.address = format!("http://{}", listening["addr"].as_str().unwrap());
        simmer
    }

    /// Waits for a JSON log line whose message is `message`.
    pub fn wait_for(&self, message: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line {message:?}; stderr:\n{}", self.stderr()));
            if let Ok(json) = serde_json::from_str::<Value>(&line) {
                if json["message"] == message {
                    return json;
                }
            }
        }
    }

    /// Sends a signal (`TERM`, `INT`) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (killing it after `within`); its status
    /// and how long it took.
    pub async fn wait_exit(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "simmer did not exit within {within:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The REST client of this process.
    pub fn rest(&self) -> Rest {
        Rest {
            address: self.address.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }
}

/// Lines of a process's log shown when a test fails with it running.
const LOG_TAIL: usize = 60;

impl Drop for Simmer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A failing test shows what the process said last: a flake in CI
        // then explains itself from the CI log alone.
        if std::thread::panicking() {
            if let Ok(lines) = self.stderr.lock() {
                let from = lines.len().saturating_sub(LOG_TAIL);
                eprintln!(
                    "--- the last {} lines of simmer at {}:\n{}",
                    lines.len() - from,
                    self.address,
                    lines[from..].join("\n")
                );
            }
        }
    }
}

/// Just the REST calls these tests need.
pub struct Rest {
    pub address: String,
    pub client: reqwest::Client,
}

impl Rest {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// Registers a user; its access token.
    pub async fn register(&self) -> String {
        let body = json!({"username": username(), "password": "correct horse battery"});
        let reply = self.post("/api/v1/auth/register", None, body).await;
        reply["access_token"].as_str().unwrap().to_owned()
    }

    /// A live session hosted by the token's user.
    pub async fn live_session(&self, host: &str) -> Uuid {
        let recipe = self
            .post("/api/v1/recipes", Some(host), recipe_body("Soup", 3))
            .await;
        let session = self
            .post(
                "/api/v1/sessions",
                Some(host),
                json!({"recipe_id": recipe["id"], "title": "Cooking live"}),
            )
            .await;
        let id: Uuid = session["id"].as_str().unwrap().parse().unwrap();
        self.post(
            &format!("/api/v1/sessions/{id}/start"),
            Some(host),
            json!({}),
        )
        .await;
        id
    }

    /// Pairs a watch to `session`; its device token.
    pub async fn pair_watch(&self, user: &str, session: Uuid) -> String {
        let pairing = self
            .post(
                "/api/v1/watch/pairings",
                None,
                json!({"device_name": "Test watch"}),
            )
            .await;
        self.post(
            "/api/v1/watch/pairings/claim",
            Some(user),
            json!({"code": pairing["code"], "session_id": session}),
        )
        .await;
        let polled = self
            .client
            .get(format!(
                "{}/api/v1/watch/pairings/{}",
                self.address,
                pairing["pairing_id"].as_str().unwrap()
            ))
            .header("X-Poll-Secret", pairing["poll_secret"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        polled["device_token"].as_str().unwrap().to_owned()
    }
}
