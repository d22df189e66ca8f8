//! Structured logs with `tracing`: text for people, JSON for collectors.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// What is logged when `RUST_LOG` is not set: `info`, with the SQL driver
/// and the WebRTC stack (whose `log` records are forwarded) at `warn`.
const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,webrtc=warn,webrtc_ice=warn,\
    webrtc_dtls=warn,webrtc_srtp=warn,webrtc_sctp=warn,webrtc_util=warn,webrtc_mdns=warn,\
    interceptor=warn,stun=warn,turn=warn";

/// Installs the global subscriber (which also takes the `log` records of
/// crates that use `log`, like the WebRTC stack). Levels come from
/// `RUST_LOG`, else [`DEFAULT_FILTER`].
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    // A subscriber may already be installed (tests); keep that one.
    drop(result);
}
