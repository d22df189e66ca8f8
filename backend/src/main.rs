//! The `simmer` binary: parse the command line, set up logs, run.

use std::io::Write;

use clap::Parser;
use simmer::cli::{Cli, Command};
use simmer::config::ConfigArgs;
use simmer::{db, telemetry, Application, Settings};

fn settings(args: ConfigArgs) -> anyhow::Result<Settings> {
    let settings = Settings::resolve(args.with_file()?)?;
    telemetry::init(settings.log_format);
    Ok(settings)
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().into_command() {
        Command::Serve(args) => {
            let app = Application::build(settings(args)?).await?;
            app.run_until_stopped().await?;
        }
        Command::Migrate(args) => {
            let settings = settings(args)?;
            let conn = db::connect(&settings).await?;
            db::migrate(&conn).await?;
            tracing::info!(database = db::backend_name(&conn), "migrations applied");
        }
        Command::Openapi => {
            let mut out = std::io::stdout().lock();
            out.write_all(simmer::api::openapi::json()?.as_bytes())?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}
