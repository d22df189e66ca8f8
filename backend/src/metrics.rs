//! Prometheus metrics, one registry per app (so tests can run several apps in
//! one process), served as text at `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The counters and gauges Simmer exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub live_sessions: IntGauge,
    pub session_actor_restarts: IntCounterVec,
    pub chat_messages: IntCounter,
    /// Sends refused while the session's fan-out on this node was behind.
    pub chat_refused_busy: IntCounter,
    /// From a chat message's acceptance to its batch committed.
    pub chat_durable: prometheus::Histogram,
    /// From a sampled chat message's publication to its first and to its
    /// last member's socket on this node (`edge`: `first`, `last`).
    pub chat_fanout: HistogramVec,
    pub ws_connections: IntGauge,
    /// Chat replayed to a member from history, by cause (`lagged`: it fell
    /// more than the fan-out's buffer behind; `gap`: a gap in the sequence;
    /// `resync`: events may have been lost between nodes).
    pub ws_chat_replays: IntCounterVec,
    /// Holes in the chat a session's fan-out on one worker filled from
    /// history once for all its members there (`lagged`: it fell behind
    /// the session's ring; `gap`: a message never reached it; `resync`: the
    /// bus said events may have been lost).
    pub fanout_refills: IntCounterVec,
    pub watch_connections: IntGauge,
    pub watch_ticks: IntCounter,
    pub media_packets_in: IntCounter,
    pub media_packets_out: IntCounter,
    pub media_bytes_in: IntCounter,
    pub media_bytes_out: IntCounter,
    pub media_publishers: IntGauge,
    pub media_subscribers: IntGauge,
    pub media_keyframe_requests: IntCounterVec,
    pub media_packets_lost: IntCounterVec,
    pub media_nack_packets: IntCounter,
    pub cluster: ClusterMetrics,
}

/// What a cluster node counts (all zero on a single node).
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    /// Session leases this node holds now.
    pub leases_held: IntGauge,
    /// Sessions this node took over, by reason: `handed_over` (a draining
    /// node let them go and said so) or `orphaned` (found with no holder by
    /// the periodic sweep: its node died or stalled and the lease ran out,
    /// or the hand-over's message was missed).
    pub takeovers: IntCounterVec,
    /// Holds this node lost (lease lapsed or taken, or a write fenced).
    pub leases_lost: IntCounter,
    /// Commands sent to the node that runs the session, by outcome.
    pub forwarded: IntCounterVec,
    /// Commands other nodes sent here, by outcome.
    pub served: IntCounterVec,
    /// Bus events sent to Redis.
    pub bus_published: IntCounter,
    /// Bus events not sent, by reason (`queue_full`, `redis`).
    pub bus_dropped: IntCounterVec,
    /// Bus events received from other nodes.
    pub bus_received: IntCounter,
    /// From publishing on one node to delivery on another.
    pub bus_lag: prometheus::Histogram,
}

impl ClusterMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            leases_held: IntGauge::new(
                "cluster_leases_held",
                "Live-session leases this node holds",
            )?,
            takeovers: IntCounterVec::new(
                Opts::new(
                    "cluster_takeovers_total",
                    "Live sessions this node took over, by reason (handed_over, orphaned)",
                ),
                &["reason"],
            )?,
            leases_lost: IntCounter::new(
                "cluster_leases_lost_total",
                "Live-session holds this node lost (lapsed, taken, or fenced)",
            )?,
            forwarded: IntCounterVec::new(
                Opts::new(
                    "cluster_forwarded_total",
                    "Commands forwarded to the session's owner node, by outcome",
                ),
                &["outcome"],
            )?,
            served: IntCounterVec::new(
                Opts::new(
                    "cluster_served_total",
                    "Commands served for other nodes, by outcome",
                ),
                &["outcome"],
            )?,
            bus_published: IntCounter::new(
                "cluster_bus_published_total",
                "Session events sent to the other nodes",
            )?,
            bus_dropped: IntCounterVec::new(
                Opts::new(
                    "cluster_bus_dropped_total",
                    "Session events not sent to the other nodes, by reason",
                ),
                &["reason"],
            )?,
            bus_received: IntCounter::new(
                "cluster_bus_received_total",
                "Session events received from the other nodes",
            )?,
            bus_lag: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "cluster_bus_lag_seconds",
                    "From publishing on the owner to delivery on this node",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )?,
        };
        registry.register(Box::new(m.leases_held.clone()))?;
        registry.register(Box::new(m.takeovers.clone()))?;
        registry.register(Box::new(m.leases_lost.clone()))?;
        registry.register(Box::new(m.forwarded.clone()))?;
        registry.register(Box::new(m.served.clone()))?;
        registry.register(Box::new(m.bus_published.clone()))?;
        registry.register(Box::new(m.bus_dropped.clone()))?;
        registry.register(Box::new(m.bus_received.clone()))?;
        registry.register(Box::new(m.bus_lag.clone()))?;
        // Both reasons are scraped from the start, at 0.
        for reason in ["handed_over", "orphaned"] {
            m.takeovers.with_label_values(&[reason]);
        }
        Ok(m)
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("simmer".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )?;
        let live_sessions = IntGauge::new("live_sessions", "Live sessions owned by this node")?;
        let session_actor_restarts = IntCounterVec::new(
            Opts::new(
                "session_actor_restarts_total",
                "Session actors restarted after a crash, by cause",
            ),
            &["cause"],
        )?;
        let chat_messages = IntCounter::new("chat_messages_total", "Chat messages made durable")?;
        let chat_refused_busy = IntCounter::new(
            "chat_refused_busy_total",
            "Chat sends refused (rate_limited) while the session's fan-out on this node had \
             SIMMER_CHAT_MAX_FANOUT_QUEUE events or more waiting",
        )?;
        let latency_buckets = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
            0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
        ];
        let chat_durable = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "chat_durable_seconds",
                "From a chat message's acceptance to its batch committed to the database",
            )
            .buckets(latency_buckets.clone()),
        )?;
        let chat_fanout = HistogramVec::new(
            HistogramOpts::new(
                "chat_fanout_seconds",
                "From a sampled chat message's publication to its first (edge=first) and last \
                 (edge=last) member's socket on this node",
            )
            .buckets(latency_buckets),
            &["edge"],
        )?;
        let ws_connections =
            IntGauge::new("ws_connections", "Open realtime WebSocket connections")?;
        let ws_chat_replays = IntCounterVec::new(
            Opts::new(
                "ws_chat_replays_total",
                "Chat replayed to a member from history: lagged (it fell more than \
                 SIMMER_FANOUT_BUFFER events behind), gap, resync (between nodes)",
            ),
            &["cause"],
        )?;
        let fanout_refills = IntCounterVec::new(
            Opts::new(
                "fanout_refills_total",
                "Chat a session's fan-out on one worker missed and read from history \
                 once for all its members there: lagged (it fell more than \
                 SIMMER_FANOUT_BUFFER events behind), gap, resync (events may have \
                 been lost between nodes)",
            ),
            &["cause"],
        )?;
        let watch_connections =
            IntGauge::new("watch_connections", "Open watch feeds (WebSocket and SSE)")?;
        let watch_ticks = IntCounter::new(
            "watch_ticks_total",
            "Tick frames published (one per running session per second)",
        )?;
        let media_packets_in = IntCounter::new(
            "media_packets_in_total",
            "RTP packets received from publishers",
        )?;
        let media_packets_out =
            IntCounter::new("media_packets_out_total", "RTP packets relayed to viewers")?;
        let media_bytes_in =
            IntCounter::new("media_bytes_in_total", "RTP bytes received from publishers")?;
        let media_bytes_out =
            IntCounter::new("media_bytes_out_total", "RTP bytes relayed to viewers")?;
        let media_publishers = IntGauge::new(
            "media_publishers",
            "Rooms whose host is publishing (connected) now",
        )?;
        let media_subscribers =
            IntGauge::new("media_subscribers", "WHEP viewers connected to rooms now")?;
        let media_keyframe_requests = IntCounterVec::new(
            Opts::new(
                "media_keyframe_requests_total",
                "Keyframe requests from viewers: received, and forwarded to hosts",
            ),
            &["outcome"],
        )?;
        let media_packets_lost = IntCounterVec::new(
            Opts::new(
                "media_packets_lost_total",
                "RTP packets lost: `in` from hosts (sequence gaps), `out` as viewers report, \
                 `dropped` by the relay (waited too long for a lane)",
            ),
            &["direction"],
        )?;
        let media_nack_packets = IntCounter::new(
            "media_nack_packets_total",
            "RTP packets viewers asked to be sent again (NACK)",
        )?;
        registry.register(Box::new(media_packets_lost.clone()))?;
        registry.register(Box::new(media_nack_packets.clone()))?;
        registry.register(Box::new(media_bytes_in.clone()))?;
        registry.register(Box::new(media_bytes_out.clone()))?;
        registry.register(Box::new(media_publishers.clone()))?;
        registry.register(Box::new(media_subscribers.clone()))?;
        registry.register(Box::new(media_keyframe_requests.clone()))?;
        registry.register(Box::new(media_packets_in.clone()))?;
        registry.register(Box::new(media_packets_out.clone()))?;
        registry.register(Box::new(watch_connections.clone()))?;
        registry.register(Box::new(watch_ticks.clone()))?;
        registry.register(Box::new(chat_messages.clone()))?;
        registry.register(Box::new(chat_refused_busy.clone()))?;
        registry.register(Box::new(chat_durable.clone()))?;
        registry.register(Box::new(chat_fanout.clone()))?;
        registry.register(Box::new(ws_connections.clone()))?;
        registry.register(Box::new(ws_chat_replays.clone()))?;
        registry.register(Box::new(fanout_refills.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(live_sessions.clone()))?;
        registry.register(Box::new(session_actor_restarts.clone()))?;
        let cluster = ClusterMetrics::new(&registry)?;
        Ok(Self {
            cluster,
            registry,
            http_requests,
            http_duration,
            live_sessions,
            session_actor_restarts,
            chat_messages,
            chat_refused_busy,
            chat_durable,
            chat_fanout,
            ws_connections,
            ws_chat_replays,
            fanout_refills,
            watch_connections,
            watch_ticks,
            media_packets_in,
            media_packets_out,
            media_bytes_in,
            media_bytes_out,
            media_publishers,
            media_subscribers,
            media_keyframe_requests,
            media_packets_lost,
            media_nack_packets,
        })
    }

    /// Counts and logs a session actor that went down: `cause` is `stopped`
    /// (restarted by its supervisor) or `panic` (re-created by the registry).
    pub fn actor_restarted(&self, cause: &str, actor: &str, session_id: uuid::Uuid) {
        self.session_actor_restarts
            .with_label_values(&[cause])
            .inc();
        tracing::warn!(%session_id, actor, cause, "session actor went down; bringing it back");
    }

    /// The exposition text.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// One in this many chat messages carries a [`FanoutClock`]: enough for the
/// fan-out histogram, and the shared counters it touches on every member's
/// write stay off the other messages' path.
pub const FANOUT_SAMPLE_EVERY: u64 = 8;

/// When one chat message reached its first and its last member's socket on
/// this node, counted from its publication; observed into
/// `chat_fanout_seconds` once every subscriber that was there at publication
/// (the gateway's fan-out of the session on each worker) is done with it,
/// or else when the last copy of the event is dropped (a fan-out whose
/// members left never finishes it).
#[derive(Debug)]
pub struct FanoutClock {
    published: Instant,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    /// Subscribers still to write it: each write takes one, publication
    /// adds how many there were (in either order; zero means all wrote).
    remaining: AtomicI64,
    observed: AtomicBool,
    histogram: HistogramVec,
}

impl FanoutClock {
    pub fn start(metrics: &Metrics) -> Self {
        Self {
            published: Instant::now(),
            first_ns: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            remaining: AtomicI64::new(0),
            observed: AtomicBool::new(false),
            histogram: metrics.chat_fanout.clone(),
        }
    }

    /// The event went to this many subscribers.
    pub fn published_to(&self, subscribers: usize) {
        let n = i64::try_from(subscribers).unwrap_or(i64::MAX);
        if n > 0 && self.remaining.fetch_add(n, Ordering::AcqRel) + n == 0 {
            self.observe();
        }
    }

    /// A member's socket got the message (written, or queued behind what
    /// the socket has not taken yet).
    pub fn reached(&self) {
        let ns = u64::try_from(self.published.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = self
            .first_ns
            .compare_exchange(0, ns, Ordering::Relaxed, Ordering::Relaxed);
        self.last_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// A subscriber has passed the message to all its members (those it
    /// handed to their own loops count when they write it, if that is
    /// before the last subscriber is done).
    pub fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.observe();
        }
    }

    fn observe(&self) {
        let first = self.first_ns.load(Ordering::Relaxed);
        if first == 0 || self.observed.swap(true, Ordering::AcqRel) {
            return;
        }
        let last = self.last_ns.load(Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        for (edge, ns) in [("first", first), ("last", last)] {
            self.histogram
                .with_label_values(&[edge])
                .observe(ns as f64 / 1e9);
        }
    }
}

impl Drop for FanoutClock {
    fn drop(&mut self) {
        self.observe();
    }
}

/// The method as a label: the standard ones by name, anything else `OTHER`
/// (any token is a valid method, and labels must not grow with what clients
/// send).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Middleware: counts and times every request by its route pattern (not its
/// path, so ids do not explode the label set).
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req
        .app_data::<web::Data<crate::state::AppState>>()
        .map(|s| s.metrics.clone());
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        let status = match &result {
            Ok(res) => res.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        metrics
            .http_requests
            .with_label_values(&[method, route.as_str(), &status.to_string()])
            .inc();
        metrics
            .http_duration
            .with_label_values(&[method, route.as_str()])
            .observe(start.elapsed().as_secs_f64());
    }
    result
}

/// `GET /metrics`
pub async fn metrics_endpoint(
    state: web::Data<crate::state::AppState>,
) -> Result<HttpResponse, crate::error::ApiError> {
    let text = state
        .metrics
        .render()
        .map_err(|e| crate::error::ApiError::Internal(e.into()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
