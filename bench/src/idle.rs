//! `idle`: hold N joined connections for a while and report the server's
//! memory per connection.

use std::time::Duration;

use mobile_bridge::SessionId;

use crate::fanout::{connect_viewers, LoadArgs};
use crate::setup;
use crate::stats::ms;

/// Options of the `idle` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Seconds to hold the connections after they joined.
    #[arg(long, default_value_t = 10)]
    pub hold: u64,
}

pub async fn run(args: IdleArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let scene = setup::live_session(&http, &args.load.url).await?;
    let session = SessionId(scene.session_id);
    let before = setup::rss_kib(args.load.server_pid);
    let (viewers, connect, ramp) = connect_viewers(&args.load, &http, session).await?;
    println!(
        "connected and joined {} viewers in {:.1} s (per viewer p50 {}, p99 {})",
        viewers.len(),
        ramp.as_secs_f64(),
        ms(connect.pct(50.0)),
        ms(connect.pct(99.0))
    );
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let held = setup::rss_kib(args.load.server_pid);
    if let (Some(before), Some(held)) = (before, held) {
        println!(
            "server RSS {before} KiB before, {held} KiB holding {} connections: {:.2} KiB per connection",
            viewers.len(),
            held.saturating_sub(before) as f64 / viewers.len().max(1) as f64
        );
    }
    for (client, _) in viewers {
        client.close().await;
    }
    Ok(())
}
