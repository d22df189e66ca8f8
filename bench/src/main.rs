//! `simmer-bench`: load scenarios for Simmer's realtime gateway, and a
//! command-line chat, through the client SDK (or, for many viewers, raw
//! sockets). Every scenario is bounded in time and stops by itself. Use it
//! against a server on loopback only. `floor` is a minimal reference
//! server (not Simmer) that `fanout` and `idle` measure Simmer against.

// A command-line tool: its output is the point.
#![allow(clippy::print_stdout)]

mod chat;
mod drain;
mod fanout;
mod floor;
mod idle;
mod media;
mod members;
mod raw;
mod rooms;
mod setup;
mod stats;
mod takeover;
mod watch;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "simmer-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N viewers in one session, a sender at R msgs/s for T seconds.
    Fanout(fanout::FanoutArgs),
    /// S sessions, a sender in each at R msgs/s: the time to each
    /// sender's ack while every session writes its chat.
    Rooms(rooms::RoomsArgs),
    /// Hold N joined connections; report server memory per connection.
    Idle(idle::IdleArgs),
    /// Chat in a session from the terminal.
    Chat(chat::ChatArgs),
    /// W paired watches over S sessions with running timers: tick delivery
    /// after the whole second, displayed-countdown accuracy with skewed
    /// clocks, server CPU.
    Watch(watch::WatchArgs),
    /// The reference watch: pair it with a code, then see what it shows.
    WatchFollow(watch::FollowArgs),
    /// One WHIP publisher to N WHEP subscribers: loss, one-way frame delay,
    /// time to first keyframe, server CPU and memory; or, with `--churn N`,
    /// N viewers who come and go and the server's memory and open files
    /// along the way (run it in a network namespace: scripts/bench-media.sh).
    Media(media::MediaArgs),
    /// kill -9 of a session's owner node: time until the session answers
    /// through another node (one trial; scripts/bench-cluster.sh repeats it).
    Takeover(takeover::TakeoverArgs),
    /// SIGTERM to a node holding M members in S sessions, reached through a
    /// balancer: hand-over time per session, the reconnect storm, SIGTERM to
    /// exit, and no message lost (scripts/bench-cluster.sh drain).
    Drain(drain::DrainArgs),
    /// The floor: a minimal WebSocket broadcast server (NOT Simmer: no
    /// auth, no storage, one session) that `fanout --floor` and `idle
    /// --floor` measure, so Simmer's numbers can be given as a ratio to it.
    Floor(floor::FloorArgs),
}

fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => eprintln!("open file limit: {n}"),
        Err(e) => eprintln!("could not raise the open file limit: {e}"),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Fanout(args) => {
                raise_file_limit();
                fanout::run(args).await
            }
            Command::Idle(args) => {
                raise_file_limit();
                idle::run(args).await
            }
            Command::Chat(args) => chat::run(args).await,
            Command::Watch(args) => {
                raise_file_limit();
                watch::run(args).await
            }
            Command::Rooms(args) => {
                raise_file_limit();
                rooms::run(args).await
            }
            Command::WatchFollow(args) => watch::follow(args).await,
            Command::Takeover(args) => takeover::run(args).await,
            Command::Drain(args) => {
                raise_file_limit();
                drain::run(args).await
            }
            Command::Media(args) => {
                raise_file_limit();
                media::run(args).await
            }
            Command::Floor(args) => {
                raise_file_limit();
                floor::run(args).await
            }
        }
    })
}
