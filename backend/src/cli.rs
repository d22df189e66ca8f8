//! The `simmer` command line.

use std::ffi::{OsStr, OsString};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};

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

    /// Parses the process's arguments and environment like
    /// [`Parser::parse`] (on an error: the message, then exit 2), except
    /// that a bad value from an environment variable is reported as the
    /// variable's, not as the flag's (see [`name_the_source`]).
    pub fn parse_naming_sources() -> Self {
        Self::try_parse().unwrap_or_else(|e| {
            let argv: Vec<OsString> = std::env::args_os().collect();
            name_the_source(e, &argv, |var| std::env::var_os(var)).exit()
        })
    }
}

/// clap reports a bad value as the flag's ("invalid value 'abc' for
/// '--page-size-max <PAGE_SIZE_MAX>'") even when it came from the flag's
/// environment variable, which sends people looking for a flag they never
/// typed. When the flag is not on the command line (`argv`) and its variable
/// is set (`env`), the value was the variable's: the error then begins with
/// it ("environment variable SIMMER_PAGE_SIZE_MAX=abc: invalid value ...").
/// A value from the command line keeps clap's message, which names the flag;
/// one from the TOML file is reported when the file is read
/// ([`ConfigArgs::with_file`]), with its key. The kind, hence the exit code
/// (2, a usage error), stays clap's.
pub fn name_the_source(
    mut error: clap::Error,
    argv: &[OsString],
    env: impl Fn(&OsStr) -> Option<OsString>,
) -> clap::Error {
    if !matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return error;
    }
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    // `--page-size-max <PAGE_SIZE_MAX>`: every setting has a long flag.
    let Some(long) = shown
        .split(' ')
        .next()
        .and_then(|flag| flag.strip_prefix("--"))
    else {
        return error;
    };
    let command = Cli::command();
    let Some(arg) = find_arg(&command, long) else {
        return error;
    };
    let Some(var) = arg.get_env() else {
        return error;
    };
    let flag = format!("--{long}");
    let with_value = format!("{flag}=");
    let on_command_line = argv
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str())
        .any(|a| a == flag || a.starts_with(&with_value));
    if on_command_line {
        return error;
    }
    let Some(value) = env(var) else {
        return error;
    };
    let value = if arg.is_hide_env_values_set() {
        // A secret's value is not printed, not even a wrong one.
        let hidden = "[hidden]".to_owned();
        error.insert(
            ContextKind::InvalidValue,
            ContextValue::String(hidden.clone()),
        );
        hidden
    } else {
        value.to_string_lossy().into_owned()
    };
    // clap's own text (reason, possible values, the pointer to --help),
    // after the variable that held the value.
    let rendered = error.render().to_string();
    let detail = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    let var = var.to_string_lossy();
    clap::Error::raw(
        error.kind(),
        format!("environment variable {var}={value}: {detail}"),
    )
}

/// The argument with this long flag, in `command` or its subcommands.
fn find_arg<'a>(command: &'a clap::Command, long: &str) -> Option<&'a clap::Arg> {
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|sub| find_arg(sub, long))
        })
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

    /// clap's error for `--page-size-max abc` given on the command line.
    fn bad_page_size() -> clap::Error {
        Cli::try_parse_from(["simmer", "serve", "--page-size-max", "abc"]).unwrap_err()
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&OsStr) -> Option<OsString> {
        let pairs: Vec<(OsString, OsString)> =
            pairs.iter().map(|(k, v)| (k.into(), v.into())).collect();
        move |var| pairs.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_bad_value_from_the_environment_names_the_variable() {
        let argv: Vec<OsString> = vec!["simmer".into(), "serve".into()];
        let error = name_the_source(
            bad_page_size(),
            &argv,
            env_of(&[("SIMMER_PAGE_SIZE_MAX", "abc")]),
        );
        let text = error.render().to_string();
        assert!(
            text.starts_with(
                "error: environment variable SIMMER_PAGE_SIZE_MAX=abc: invalid value 'abc'"
            ),
            "{text}"
        );
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn a_bad_value_on_the_command_line_keeps_the_flag() {
        for flag in [&["--page-size-max", "abc"][..], &["--page-size-max=abc"]] {
            let mut argv: Vec<OsString> = vec!["simmer".into(), "serve".into()];
            argv.extend(flag.iter().map(OsString::from));
            // The variable is set too, but the flag wins, as in clap.
            let error = name_the_source(
                bad_page_size(),
                &argv,
                env_of(&[("SIMMER_PAGE_SIZE_MAX", "7")]),
            );
            let text = error.render().to_string();
            assert!(
                text.starts_with("error: invalid value 'abc' for '--page-size-max"),
                "{text}"
            );
        }
    }
}
