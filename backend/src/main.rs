//! The `simmer` binary: parse the command line, set up logs, run.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use simmer::cli::{Cli, Command};
use simmer::config::ConfigArgs;
use simmer::{db, shutdown, telemetry, Application, Settings};

fn settings(args: ConfigArgs) -> anyhow::Result<Settings> {
    let settings = Settings::resolve(args.with_file()?)?;
    telemetry::init(settings.log_format);
    Ok(settings)
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let app = Application::build(settings(args)?).await?;
            app.run_until_stopped().await?;
        }
        Command::Migrate(args) => {
            let settings = settings(args)?;
            let conn = db::connect(&settings).await?;
            db::migrate(&conn).await?;
            tracing::info!(database = db::backend_name(&conn), "migrations applied");
            conn.close().await?;
        }
        Command::Drain(args) => {
            let answer = args.run().await?;
            let mut out = std::io::stdout().lock();
            out.write_all(answer.as_bytes())?;
            out.write_all(b"\n")?;
        }
        Command::Health(args) => {
            let answer = args.run().await?;
            let mut out = std::io::stdout().lock();
            out.write_all(answer.as_bytes())?;
            out.write_all(b"\n")?;
        }
        Command::Openapi => {
            let mut out = std::io::stdout().lock();
            out.write_all(simmer::api::openapi::json()?.as_bytes())?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    shutdown::install_panic_hook();
    let command = Cli::parse().into_command();
    // The runtime (and every thread it started) is gone once `block_on`
    // returns and the system is dropped: a panic while stopping has happened
    // by then, or not at all.
    let system = actix_web::rt::System::new();
    let result = system.block_on(run(command));
    drop(system);
    if let Err(e) = result {
        eprintln!("Error: {e:#}");
        return ExitCode::FAILURE;
    }
    if shutdown::panicked_while_stopping() {
        eprintln!("Error: a panic happened while stopping; work in flight may be lost");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
