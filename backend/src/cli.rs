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
}

/// Where the node is and how to ask it.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The node's base URL (plain HTTP: this is a local call).
    #[arg(
        long,
        env = "SIMMER_ADMIN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The node's `SIMMER_ADMIN_TOKEN`.
    #[arg(long, env = "SIMMER_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Wait until the drain is done (at most the node's shutdown timeout).
    #[arg(long)]
    pub wait: bool,
}

impl DrainArgs {
    /// Asks the node to drain; its answer (status line and body).
    pub async fn run(&self) -> anyhow::Result<String> {
        use anyhow::Context;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let authority = self
            .url
            .strip_prefix("http://")
            .context("the URL must start with http://")?
            .trim_end_matches('/');
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        let query = if self.wait { "?wait=true" } else { "" };
        let request = format!(
            "POST /api/v1/admin/drain{query} HTTP/1.1\r\nHost: {authority}\r\n\
             Authorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.token
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
}

impl Cli {
    /// The command to run, with `serve` as the default.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
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
