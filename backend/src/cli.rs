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
    }
}
