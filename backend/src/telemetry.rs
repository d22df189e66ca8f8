//! Structured logs with `tracing`: text for people, JSON for collectors.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, fmt, EnvFilter, Layer};

use crate::config::LogFormat;

/// What is logged when `RUST_LOG` is not set: `info`, with the SQL driver
/// and the WebRTC stack (whose `log` records are forwarded) at `warn`. A
/// directive matches targets by prefix (`webrtc` covers `webrtc_ice`, ...);
/// the DTLS crate is plain `dtls`.
///
/// Two of the stack's targets are at `error`: every browser's peer
/// connection makes them warn about nothing. Measured with Chromium
/// (`scripts/browser/media-interop.mjs` and `e2e.mjs`, default filter): about
/// 30 WARN lines per connection, all but the six or so at its close from
/// these two.
/// - `dtls::handshake`: "Unsupported Extension Type 0 43" (and 45, 51), three
///   lines each time the crate parses Chrome's ClientHello, 8 times per
///   handshake. Chrome offers DTLS 1.3 (`supported_versions`,
///   `psk_key_exchange_modes`, `key_share`); the crate speaks DTLS 1.2 and
///   skips extensions it does not know, as TLS requires. Nothing else in that
///   module warns; a failed handshake still shows ("Failed to start manager
///   dtls", `webrtc::peer_connection`).
/// - `webrtc::mux`: "no endpoint for packet starting with 129", an RTCP
///   packet that arrives as a connection closes, after its SRTP session is
///   gone; dropped, as it should be. The module warns about nothing else.
///
/// Still at `warn`, although a closing connection logs a few lines there
/// too ("Failed to close candidate ...: the agent is closed" once per remote
/// candidate, "Failed to accept RTP SessionSRTP has been closed"): their
/// targets (`webrtc_ice::agent::agent_internal`,
/// `webrtc::peer_connection::peer_connection_internal`) also report ICE
/// traffic that cannot be handled, a track that cannot be received, and
/// SCTP, ICE or DTLS that fail to start.
const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,webrtc=warn,webrtc_ice=warn,\
    dtls=warn,webrtc_srtp=warn,webrtc_sctp=warn,webrtc_util=warn,webrtc_mdns=warn,\
    interceptor=warn,stun=warn,turn=warn,dtls::handshake=error,webrtc::mux=error";

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
