//! The `simmer` binary: parse the command line, set up logs, run.

use std::io::Write;
use std::process::ExitCode;

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
        Command::Drain(args) => print(&args.run().await?)?,
        Command::Health(args) => print(&args.run().await?)?,
        Command::Openapi => print(&simmer::api::openapi::json()?)?,
    }
    Ok(())
}

/// Writes `text` and a newline to standard output. A reader that has seen
/// enough closes the pipe early (`simmer openapi | head`): that ends the
/// output, it is not a failure. (Rust ignores SIGPIPE, so the write fails
/// with `BrokenPipe` instead of killing the process.)
fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn main() -> ExitCode {
    shutdown::install_panic_hook();
    let command = Cli::parse_naming_sources().into_command();
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
