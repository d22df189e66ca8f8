//! The `simmer` binary with no configuration runs the embedded default
//! (SQLite and a generated secret in the working directory), logs JSON when
//! asked, and shuts down gracefully on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Simmer {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Simmer {
    fn start(dir: &std::path::Path) -> Self {
        let mut child = crate::simmer_process::command(dir, &[("SIMMER_WORKERS", "1")])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a JSON log line whose message is `message`.
    fn wait_for(&self, message: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line {message:?}"));
            let json: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("log line is not JSON: {line}"));
            if json["message"] == message {
                return json;
            }
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_for("shutdown complete");
        self.child.wait().unwrap()
    }
}

#[actix_rt::test]
async fn runs_with_no_configuration_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let simmer = Simmer::start(dir.path());
    simmer.wait_for(
        "generated a new token signing secret; set SIMMER_JWT_SECRET to share one between nodes",
    );
    let listening = simmer.wait_for("simmer listening");
    assert_eq!(listening["database"], "sqlite");
    let addr = listening["addr"].as_str().unwrap().to_owned();
    assert!(dir.path().join("simmer.db").exists());
    let secret = dir.path().join("simmer.secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "secret must be private");
    }

    let client = reqwest::Client::new();
    let ready = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let register = client
        .post(format!("http://{addr}/api/v1/auth/register"))
        .json(&serde_json::json!({"username": "anna", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 201);
    let token = register.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let status = simmer.terminate();
    assert!(status.success(), "exit status {status:?}");

    // A second start reuses the database and the secret: the token still works.
    let simmer = Simmer::start(dir.path());
    let listening = simmer.wait_for("simmer listening");
    let addr = listening["addr"].as_str().unwrap().to_owned();
    let me = client
        .get(format!("http://{addr}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert!(simmer.terminate().success());
}

#[test]
fn openapi_subcommand_prints_the_spec() {
    let out = Command::new(env!("CARGO_BIN_EXE_simmer"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(spec["info"]["title"], "Simmer API");
}

#[test]
fn serve_help_documents_every_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_simmer"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "SIMMER_BIND",
        "DATABASE_URL",
        "REDIS_URL",
        "SIMMER_JWT_SECRET",
        "SIMMER_DATA_DIR",
        "SIMMER_MAX_BODY_BYTES",
        "SIMMER_CONFIG",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
}

#[test]
fn a_bad_config_file_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("simmer.toml");
    std::fs::write(&config, "bnid = \"0.0.0.0:1\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_simmer"))
        .current_dir(dir.path())
        .args(["migrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("parsing config file"), "{err}");
    assert!(err.contains("bnid"), "{err}");
}

#[test]
fn migrate_creates_the_schema_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_simmer"))
        .env_clear()
        .env("SIMMER_LOG_FORMAT", "json")
        .args(["migrate", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("migrations applied"));
    assert!(dir.path().join("simmer.db").exists());
    // Migrating again is a no-op.
    let again = Command::new(env!("CARGO_BIN_EXE_simmer"))
        .env_clear()
        .args(["migrate", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(again.status.success());
}
