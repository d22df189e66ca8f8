//! `chat`: talk in a session from the terminal. Lines typed are sent;
//! messages are printed as they arrive (resumed after reconnects).

use anyhow::Context;
use mobile_bridge::client::{Client, ClientConfig, Event};
use mobile_bridge::SessionId;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

/// Options of `chat`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The session to join.
    #[arg(long)]
    pub session: uuid::Uuid,
    /// Sign in as this user (with --password); without it, join as a guest.
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long, env = "SIMMER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Name shown for a guest.
    #[arg(long, default_value = "terminal guest")]
    pub name: String,
}

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let token = match (&args.username, &args.password) {
        (Some(u), Some(p)) => {
            let resp: serde_json::Value = http
                .post(format!("{}/api/v1/auth/login", args.url))
                .json(&json!({"username": u, "password": p}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            resp["access_token"]
                .as_str()
                .context("access_token")?
                .to_owned()
        }
        _ => crate::setup::guest_token(&http, &args.url, args.session, &args.name).await?,
    };
    let ws = format!("{}/ws", args.url.replacen("http", "ws", 1));
    let (client, mut events) = Client::connect(ClientConfig::new(ws, token)).await?;
    let session = SessionId(args.session);
    let snapshot = client.join(session).await?;
    eprintln!(
        "joined \"{}\" as {:?}; {} watching. Type a line to send it.",
        snapshot.title, snapshot.role, snapshot.viewer_count
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) if !line.trim().is_empty() => {
                    if let Err(e) = client.send_chat(session, line).await {
                        eprintln!("not sent: {e}");
                    }
                }
                Some(_) => {}
                None => break,
            },
            event = events.recv() => match event {
                Some(Event::Chat(m)) => println!("[{}] {}: {}", m.seq, m.author.name, m.text),
                Some(Event::ChatDeleted { seq, .. }) => println!("[{seq}] (deleted by the host)"),
                Some(Event::Presence { viewer_count, .. }) => eprintln!("({viewer_count} watching)"),
                Some(Event::SessionEnded { .. }) => { eprintln!("the session ended"); break; }
                Some(Event::Reconnecting { attempt }) => eprintln!("(reconnecting, attempt {attempt})"),
                Some(Event::Reconnected) => eprintln!("(reconnected)"),
                Some(Event::Timer { .. }) => {}
                Some(Event::Media { state, .. }) => eprintln!("(video: {state:?})"),
                // This tool has no refresh token to get a fresh one with.
                Some(Event::TokenRefused { status, message, .. }) => {
                    eprintln!("the server refused the token on reconnect ({status}: {message}); sign in again");
                    break;
                }
                None => break,
            }
        }
    }
    client.close().await;
    Ok(())
}
