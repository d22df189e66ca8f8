//! `idle`: hold N joined connections for a while and report the server's
//! memory per connection, and what holding them costs the server and the
//! tool in CPU.

use std::time::Duration;

use mobile_bridge::SessionId;

use crate::members::{connect_viewers, scene, LoadArgs, Viewer};
use crate::setup::{self, CpuWindow};
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
    let whole_run = CpuWindow::start(args.load.server_pid);
    let http = reqwest::Client::new();
    let scene = scene(&args.load, &http).await?;
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
    let holding = CpuWindow::start(args.load.server_pid);
    // Raw members answer the server's pings only while they read.
    let (stops, holders): (Vec<_>, Vec<_>) = viewers
        .into_iter()
        .map(|joined| {
            let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
            let holder = tokio::spawn(async move {
                let mut viewer = joined.viewer;
                if let Viewer::Raw(member) = &mut viewer {
                    let mut ignore = |_: &[u8]| {};
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            open = member.read(&mut ignore) => if !matches!(open, Ok(true)) { break },
                        }
                    }
                }
                viewer
            });
            (stop, holder)
        })
        .unzip();
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let held = setup::rss_kib(args.load.server_pid);
    println!("CPU while holding: {}", holding.report());
    for stop in stops {
        let _ = stop.send(());
    }
    let count = holders.len();
    if let (Some(before), Some(held)) = (before, held) {
        println!(
            "server RSS {before} KiB before, {held} KiB holding {count} connections: {:.2} KiB per connection",
            held.saturating_sub(before) as f64 / count.max(1) as f64
        );
    }
    for holder in holders {
        if let Ok(viewer) = holder.await {
            viewer.close().await;
        }
    }
    println!("CPU over the whole run: {}", whole_run.report());
    Ok(())
}
