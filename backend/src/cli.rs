//! The `simmer` command line.

use clap::{Parser, Subcommand};

use crate::config::ConfigArgs;

/// Simmer: the backend of live cooking streams.
///
/// With no subcommand it serves (like `simmer serve`). With no configuration it
/// runs the embedded default: SQLite in ./simmer.db, migrations applied at
/// start, nothing else to install.
#[derive(Debug, Parser)]
#[command(name = "simmer", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ConfigArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API, the realtime gateway and the web UI (the default).
    Serve(ConfigArgs),
    /// Apply pending database migrations, then exit.
    Migrate(ConfigArgs),
    /// Print the OpenAPI document (JSON) to standard output.
    Openapi,
    /// Drain a running node (as SIGTERM does) through its admin endpoint,
    /// for a Kubernetes `preStop` hook or a script; with `--wait`, return
    /// once the node's clients are gone.
    Drain(DrainArgs),
    /// Probe a running node: exit 0 when it is alive (`--ready`: ready for
    /// new clients), for a container's health check.
    Health(HealthArgs),
}

impl Cli {
    /// The command to run, with `serve` as the default.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

/// Where the node is and how to ask it.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The node's base URL (plain HTTP: this is a local call).
    #[arg(long, env = "SIMMER_ADMIN_URL", default_value = LOCAL_URL)]
    pub url: String,
    /// The node's `SIMMER_ADMIN_TOKEN`.
    #[arg(long, env = "SIMMER_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Wait until the drain is done (at most the node's shutdown timeout).
    #[arg(long)]
    pub wait: bool,
}

/// Which node to probe, and for what.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The node's base URL (plain HTTP: this is a local call).
    #[arg(long, default_value = LOCAL_URL)]
    pub url: String,
    /// Ask `/readyz` (ready for new clients) instead of `/healthz` (alive).
    #[arg(long)]
    pub ready: bool,
}

/// Where a node in the same container or machine listens by default.
const LOCAL_URL: &str = "http://127.0.0.1:8080";

impl DrainArgs {
    /// Asks the node to drain; its answer (status line and body).
    pub async fn run(&self) -> anyhow::Result<String> {
        let query = if self.wait { "?wait=true" } else { "" };
        let path = format!("/api/v1/admin/drain{query}");
        local_call(&self.url, "POST", &path, Some(&self.token)).await
    }
}

impl HealthArgs {
    /// Probes the node (for a container's health check); its answer.
    pub async fn run(&self) -> anyhow::Result<String> {
        let path = if self.ready { "/readyz" } else { "/healthz" };
        local_call(&self.url, "GET", path, None).await
    }
}

/// One HTTP/1.1 request to a node over plain TCP (no client library in the
/// binary for two local calls); the status line and body, or an error
/// unless the status is 200 or 202.
async fn local_call(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<String> {
    use anyhow::Context;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let authority = url
        .strip_prefix("http://")
        .context("the URL must start with http://")?
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    anyhow::ensure!(
        status.contains(" 200 ") || status.contains(" 202 "),
        "the node answered {status}: {body}"
    );
    Ok(format!("{status}\n{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subcommand_means_serve() {
        let cli = Cli::try_parse_from(["simmer", "--bind", "127.0.0.1:0"]).unwrap();
        assert!(matches!(cli.into_command(), Command::Serve(args) if args.bind.is_some()));
        let cli = Cli::try_parse_from(["simmer", "migrate"]).unwrap();
        assert!(matches!(cli.into_command(), Command::Migrate(_)));
        let cli = Cli::try_parse_from(["simmer", "drain", "--token", "t", "--wait"]).unwrap();
        assert!(matches!(cli.into_command(), Command::Drain(args) if args.wait));
    }
}
