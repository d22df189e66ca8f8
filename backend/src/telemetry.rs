//! Structured logs with `tracing`: text for people, JSON for collectors.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, fmt, EnvFilter, Layer};

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
    let layer = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // A drain closes the listening socket under actix's accept loop, which
    // then reports the socket as an error once: expected, not worth an
    // ERROR line (before the drain, accept errors such as EMFILE are kept).
    let not_draining_accept = filter::filter_fn(|meta| {
        !(meta.target() == "actix_server::accept" && crate::shutdown::stopping())
    });
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(layer.with_filter(not_draining_accept))
        .try_init();
    // A subscriber may already be installed (tests); keep that one.
    drop(result);
}
