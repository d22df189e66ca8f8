//! Creating the scene over REST: a host, a recipe, a live session, and guest
//! tokens for viewers (cheap: no password hashing per viewer).

use anyhow::{bail, Context};
use serde_json::{json, Value};
use uuid::Uuid;

/// A live session ready for load.
pub struct Scene {
    pub session_id: Uuid,
    pub host_token: String,
}

/// POSTs JSON; the answer's JSON, or an error naming the status.
pub async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut req = client.post(&url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {url}: {status} {body}");
    }
    Ok(body)
}

/// Registers a host and starts a session.
pub async fn live_session(http: &reqwest::Client, base: &str) -> anyhow::Result<Scene> {
    let name = format!("bench{}", &Uuid::new_v4().simple().to_string()[..10]);
    let user = post(
        http,
        format!("{base}/api/v1/auth/register"),
        None,
        json!({"username": name, "password": "bench-password"}),
    )
    .await?;
    let token = user["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned();
    let recipe = post(
        http,
        format!("{base}/api/v1/recipes"),
        Some(&token),
        json!({"title": "Bench soup", "steps": [{"text": "Stir", "duration_s": 60}]}),
    )
    .await?;
    let recipe_id = recipe["id"].as_str().context("recipe id")?;
    let session = post(
        http,
        format!("{base}/api/v1/sessions"),
        Some(&token),
        json!({"recipe_id": recipe_id, "title": "Bench"}),
    )
    .await?;
    let session_id: Uuid = session["id"].as_str().context("session id")?.parse()?;
    post(
        http,
        format!("{base}/api/v1/sessions/{session_id}/start"),
        Some(&token),
        json!({}),
    )
    .await?;
    Ok(Scene {
        session_id,
        host_token: token,
    })
}

/// A guest token for one viewer, shown as `name`.
pub async fn guest_token(
    http: &reqwest::Client,
    base: &str,
    session: Uuid,
    name: &str,
) -> anyhow::Result<String> {
    let body = post(
        http,
        format!("{base}/api/v1/sessions/{session}/guest-tokens"),
        None,
        json!({"display_name": name}),
    )
    .await?;
    Ok(body["access_token"]
        .as_str()
        .context("guest token")?
        .to_owned())
}

/// Resident memory of a process, in KiB (Linux `/proc`).
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// A line of `/proc/PID/status` given in KiB: `VmRSS`, `RssAnon`, ...
pub fn status_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let pid = pid?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| {
            l.strip_prefix(field)
                .is_some_and(|rest| rest.starts_with(':'))
        })?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// How many files (sockets included) a process has open.
pub fn open_fds(pid: Option<u32>) -> Option<usize> {
    Some(
        std::fs::read_dir(format!("/proc/{}/fd", pid?))
            .ok()?
            .count(),
    )
}

/// Wall-clock time in microseconds since the Unix epoch (load tool and
/// server share the machine's clock, so send and receive stamps compare).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// CPU seconds a process has used (user + system), from `/proc`.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s (USER_HZ).
    Some((utime + stime) / 100.0)
}

/// CPU used by the load tool and the server over a stretch of wall time:
/// the tool must use less than the server for the numbers to be the
/// server's.
#[derive(Debug, Clone, Copy)]
pub struct CpuWindow {
    wall: std::time::Instant,
    tool: Option<f64>,
    server: Option<f64>,
    server_pid: Option<u32>,
}

impl CpuWindow {
    pub fn start(server_pid: Option<u32>) -> Self {
        Self {
            wall: std::time::Instant::now(),
            tool: cpu_seconds(Some(std::process::id())),
            server: cpu_seconds(server_pid),
            server_pid,
        }
    }

    /// "load tool 1.2 s CPU in 10.0 s = 12% of a core; server 5.0 s = 50%
    /// of a core" (user + system time).
    pub fn report(&self) -> String {
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        let used = |before: Option<f64>, pid: Option<u32>| Some(cpu_seconds(pid)? - before?);
        let mut out = match used(self.tool, Some(std::process::id())) {
            Some(s) => format!(
                "load tool {s:.2} s CPU in {wall:.1} s = {:.0}% of a core",
                100.0 * s / wall
            ),
            None => format!("load tool CPU unknown in {wall:.1} s"),
        };
        if let Some(s) = used(self.server, self.server_pid) {
            out += &format!("; server {s:.2} s = {:.0}% of a core", 100.0 * s / wall);
        }
        out
    }
}
