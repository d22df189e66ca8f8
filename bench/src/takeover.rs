//! `takeover`: how long a live session is away after its owner is killed
//! with SIGKILL. Makes a live session on the node at `--url` (so that node
//! owns it), checks a chat send through `--probe-url` (another node), kills
//! the owner's process (`--kill-pid`), then sends through the probe node
//! every 20 ms until one is acknowledged: the time from the kill to that
//! acknowledgement. One trial per run; `scripts/bench-cluster.sh` repeats it.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::setup;

/// Options of the `takeover` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct TakeoverArgs {
    /// The node the session goes live on (its owner).
    #[arg(long)]
    pub url: String,
    /// Another node, through which messages are sent.
    #[arg(long)]
    pub probe_url: String,
    /// The owner's process id: killed with SIGKILL.
    #[arg(long)]
    pub kill_pid: u32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// Posts a chat message through `base`; whether it was acknowledged.
async fn send(
    http: &reqwest::Client,
    base: &str,
    session: uuid::Uuid,
    token: &str,
    n: u64,
) -> bool {
    let resp = http
        .post(format!("{base}/api/v1/sessions/{session}/messages"))
        .bearer_auth(token)
        .json(&json!({"text": format!("probe {n}"), "client_msg_id": format!("p{n}")}))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    matches!(resp, Ok(r) if r.status().as_u16() == 201)
}

pub async fn run(args: TakeoverArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let scene = setup::live_session(&http, &args.url).await?;
    let session = scene.session_id;
    anyhow::ensure!(
        send(&http, &args.probe_url, session, &scene.host_token, 0).await,
        "the probe node does not reach the session"
    );
    let status = std::process::Command::new("kill")
        .args(["-KILL", &args.kill_pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -9 {} failed", args.kill_pid);
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(args.timeout);
    let mut n = 1;
    loop {
        if send(&http, &args.probe_url, session, &scene.host_token, n).await {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the session did not come back");
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "takeover_ms {} (after {n} tries)",
        killed.elapsed().as_millis()
    );
    Ok(())
}
