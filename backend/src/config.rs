//! Typed, layered configuration: built-in defaults, then an optional TOML file,
//! then environment variables and command-line flags. Passed by value; there is
//! no global settings static, so tests build one app each.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

/// A value that must never be printed (signing keys, passwords in URLs).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Every setting, as given on the command line, in the environment or in the
/// TOML file. `None` means "not given here": the next layer decides.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigArgs {
    /// TOML file with any of these settings (the same names, in snake_case).
    /// Flags and environment variables override it.
    #[arg(long, env = "SIMMER_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8080]. Port 0 picks a free port.
    #[arg(long, env = "SIMMER_BIND")]
    pub bind: Option<SocketAddr>,

    /// Directory for the SQLite database and the generated signing secret
    /// [default: the current directory].
    #[arg(long, env = "SIMMER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Database URL: `sqlite://path?mode=rwc` or `postgres://user@host/db`
    /// [default: SQLite in <data_dir>/simmer.db].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// Most open database connections [default: 10].
    #[arg(long, env = "SIMMER_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,

    /// How long a SQLite write waits for another's to end before it is
    /// refused with 503, in milliseconds [default: 5000].
    #[arg(long, env = "SIMMER_DB_BUSY_TIMEOUT_MS")]
    pub db_busy_timeout_ms: Option<u64>,

    /// Redis URL: several nodes with the same Redis and the same PostgreSQL
    /// run as one cluster (docs/cluster.md) [default: unset, a single node].
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// This node's name in the cluster [default: generated at start, logged].
    #[arg(long, env = "SIMMER_NODE_ID")]
    pub node_id: Option<String>,

    /// The URL other nodes and operators reach this node at
    /// [default: http://<bind address>].
    #[arg(long, env = "SIMMER_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// How long a node's hold on a live session lasts unless renewed, in
    /// milliseconds: a dead node's sessions move within about this long
    /// [default: 5000].
    #[arg(long, env = "SIMMER_LEASE_TTL_MS")]
    pub lease_ttl_ms: Option<u64>,

    /// Secret that signs access tokens (at least 32 bytes). When unset, one is
    /// generated once and kept in <data_dir>/simmer.secret. Set it when
    /// several nodes must accept each other's tokens.
    #[arg(long, env = "SIMMER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// Lifetime of access tokens, in seconds [default: 900].
    #[arg(long, env = "SIMMER_ACCESS_TOKEN_TTL_S")]
    pub access_token_ttl_s: Option<u64>,

    /// Lifetime of refresh tokens, in seconds [default: 2592000, 30 days].
    #[arg(long, env = "SIMMER_REFRESH_TOKEN_TTL_S")]
    pub refresh_token_ttl_s: Option<u64>,

    /// Lifetime of guest (viewer-only) tokens, in seconds [default: 14400].
    #[arg(long, env = "SIMMER_GUEST_TOKEN_TTL_S")]
    pub guest_token_ttl_s: Option<u64>,

    /// Guest tokens one client address (IPv6: one /64) may get per
    /// `guest_token_window_s`; more answer 429 `rate_limited` [default: 30].
    #[arg(long, env = "SIMMER_GUEST_TOKENS_PER_ADDRESS")]
    pub guest_tokens_per_address: Option<u32>,

    /// The window of `guest_tokens_per_address`, in seconds [default: 600].
    #[arg(long, env = "SIMMER_GUEST_TOKEN_WINDOW_S")]
    pub guest_token_window_s: Option<u64>,

    /// Failed logins for one username from one client address before that
    /// address is locked out of it for `login_lockout_s` (answers 429
    /// `rate_limited`; other addresses can still sign in) [default: 10].
    #[arg(long, env = "SIMMER_LOGIN_MAX_FAILURES")]
    pub login_max_failures: Option<u32>,

    /// Failed logins from one client address, over every username, before
    /// the address is locked out for `login_lockout_s` [default: 100].
    #[arg(long, env = "SIMMER_LOGIN_MAX_FAILURES_PER_ADDRESS")]
    pub login_max_failures_per_address: Option<u32>,

    /// Threads that hash passwords (each hash holds 19 MiB while it runs)
    /// [default: the number of cores].
    #[arg(long, env = "SIMMER_PASSWORD_HASH_THREADS")]
    pub password_hash_threads: Option<usize>,

    /// Password hashes that may wait for a thread; more are answered 503
    /// `unavailable` with `Retry-After` at once [default: 32].
    #[arg(long, env = "SIMMER_PASSWORD_HASH_QUEUE")]
    pub password_hash_queue: Option<usize>,

    /// Seconds a username stays locked after too many failed logins
    /// [default: 900].
    #[arg(long, env = "SIMMER_LOGIN_LOCKOUT_S")]
    pub login_lockout_s: Option<u64>,

    /// Largest accepted request body, in bytes [default: 1048576].
    #[arg(long, env = "SIMMER_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Page size when a list request gives no `limit` [default: 20].
    #[arg(long, env = "SIMMER_PAGE_SIZE_DEFAULT")]
    pub page_size_default: Option<u32>,

    /// Largest `limit` a list request may ask for [default: 100].
    #[arg(long, env = "SIMMER_PAGE_SIZE_MAX")]
    pub page_size_max: Option<u32>,

    /// Longest chat message, in characters [default: 1000].
    #[arg(long, env = "SIMMER_CHAT_MAX_CHARS")]
    pub chat_max_chars: Option<usize>,

    /// Chat messages per session kept in memory for resume [default: 1000].
    #[arg(long, env = "SIMMER_CHAT_HISTORY")]
    pub chat_history: Option<usize>,

    /// Recent sends per session remembered to make `client_msg_id` resends
    /// idempotent [default: 10000].
    #[arg(long, env = "SIMMER_CHAT_DEDUPE_WINDOW")]
    pub chat_dedupe_window: Option<usize>,

    /// Chat messages per second one user may send to one session, on average
    /// [default: 5].
    #[arg(long, env = "SIMMER_CHAT_RATE_PER_S")]
    pub chat_rate_per_s: Option<f64>,

    /// Chat messages one user may send at once before the rate applies
    /// [default: 10].
    #[arg(long, env = "SIMMER_CHAT_BURST")]
    pub chat_burst: Option<u32>,

    /// Chat events a session's fan-out on any node may have waiting (not
    /// yet taken by the tasks that write them to members' sockets) before
    /// sends from anyone but the host are refused with `rate_limited`; they
    /// are refused too while more than half of the session's members on any
    /// node (8 or more there) are behind for want of pace (a socket backed
    /// up, or fell off the fan-out's backlog). In a cluster the other
    /// nodes' fan-out is as their presence last told (every 250 ms). A
    /// flood is turned away instead of accepted and delivered seconds late;
    /// a muted sender is told it is muted. 0: never refuse for this
    /// [default: 256].
    #[arg(long, env = "SIMMER_CHAT_MAX_FANOUT_QUEUE")]
    pub chat_max_fanout_queue: Option<usize>,

    /// Open WebSocket connections per user (or guest) [default: 10].
    #[arg(long, env = "SIMMER_WS_MAX_CONNECTIONS_PER_USER")]
    pub ws_max_connections_per_user: Option<u32>,

    /// Upgraded sockets this node holds at once, `/ws` connections and
    /// watch feeds together (503 with `Retry-After` beyond) [default:
    /// 100000].
    #[arg(long, env = "SIMMER_WS_MAX_CONNECTIONS")]
    pub ws_max_connections: Option<usize>,

    /// Frames per second a connection may send, on average, before it is
    /// closed for flooding (burst: twice as many) [default: 50].
    #[arg(long, env = "SIMMER_WS_MAX_FRAMES_PER_S")]
    pub ws_max_frames_per_s: Option<u32>,

    /// Requests (`chat.send`, `timer.control`) a connection may have waiting
    /// for their answer at once; beyond, an error reply `rate_limited`
    /// [default: 1024].
    #[arg(long, env = "SIMMER_WS_MAX_IN_FLIGHT")]
    pub ws_max_in_flight: Option<usize>,

    /// Events per session a slow connection may fall behind before it must
    /// resync [default: 1024].
    #[arg(long, env = "SIMMER_FANOUT_BUFFER")]
    pub fanout_buffer: Option<usize>,

    /// Largest WebSocket frame a client may send, in bytes [default: 16384].
    #[arg(long, env = "SIMMER_WS_MAX_FRAME_BYTES")]
    pub ws_max_frame_bytes: Option<usize>,

    /// Bytes the server keeps waiting for a WebSocket client that does not
    /// read (beyond what the kernel buffers) before it closes the
    /// connection, 1008 [default: 262144].
    #[arg(long, env = "SIMMER_WS_MAX_BACKLOG_BYTES")]
    pub ws_max_backlog_bytes: Option<usize>,

    /// The kernel's send buffer of each WebSocket, in bytes (`SO_SNDBUF`;
    /// Linux doubles it for its bookkeeping and caps it at
    /// `net.core.wmem_max`): a hard bound on what a client that does not
    /// read can make the kernel hold for it, on top of the backlog. 0: the
    /// kernel's autotuning, which starts at 16 KiB and grows (up to
    /// `net.ipv4.tcp_wmem`'s maximum, 4 MiB) only for a client that reads
    /// fast; measured better under a flood than a fixed size
    /// (docs/benchmarks.md) [default: 0].
    #[arg(long, env = "SIMMER_WS_SEND_BUFFER_BYTES")]
    pub ws_send_buffer_bytes: Option<usize>,

    /// Write a chat message to its members' sockets through io_uring, many
    /// sockets in one system call, where the system has it (Linux; a
    /// seccomp profile may forbid it, and then each socket gets its own
    /// `sendmsg`, as with `false`) [default: true].
    #[arg(long, env = "SIMMER_WS_IO_URING")]
    pub ws_io_uring: Option<bool>,

    /// Seconds of silence after which the server closes a WebSocket
    /// [default: 30]. The server pings every third of it.
    #[arg(long, env = "SIMMER_WS_IDLE_TIMEOUT_S")]
    pub ws_idle_timeout_s: Option<u64>,

    /// Sessions one WebSocket connection may join at once [default: 16].
    #[arg(long, env = "SIMMER_WS_MAX_JOINS")]
    pub ws_max_joins: Option<usize>,

    /// Seconds a watch pairing code stays valid, and a claimed pairing's
    /// token can be collected [default: 300].
    #[arg(long, env = "SIMMER_WATCH_PAIRING_TTL_S")]
    pub watch_pairing_ttl_s: Option<u64>,

    /// Wrong pairing codes one user (or one address) may try per
    /// `watch_claim_window_s` before claims answer 429 [default: 10].
    #[arg(long, env = "SIMMER_WATCH_CLAIM_MAX_FAILURES")]
    pub watch_claim_max_failures: Option<u32>,

    /// The window of `watch_claim_max_failures` and
    /// `watch_pairings_per_window`, in seconds [default: 600].
    #[arg(long, env = "SIMMER_WATCH_CLAIM_WINDOW_S")]
    pub watch_claim_window_s: Option<u64>,

    /// Pairings one address may ask for per window [default: 30].
    #[arg(long, env = "SIMMER_WATCH_PAIRINGS_PER_WINDOW")]
    pub watch_pairings_per_window: Option<u32>,

    /// Open feeds per watch (device token); a new one replaces the oldest,
    /// which gets `bye {reason: "replaced"}` [default: 2].
    #[arg(long, env = "SIMMER_WATCH_MAX_FEEDS_PER_DEVICE")]
    pub watch_max_feeds_per_device: Option<usize>,

    /// Addresses the media relay (WebRTC) binds its UDP sockets to and offers
    /// as ICE candidates, comma-separated [default: 127.0.0.1].
    #[arg(long, env = "SIMMER_MEDIA_BIND_IPS")]
    pub media_bind_ips: Option<String>,

    /// Public addresses to announce instead (1:1 NAT, e.g. a cloud VM's
    /// public IP), comma-separated [default: none].
    #[arg(long, env = "SIMMER_MEDIA_PUBLIC_IPS")]
    pub media_public_ips: Option<String>,

    /// Lowest and highest UDP port of the media relay [default: 0 and 0,
    /// any port].
    #[arg(long, env = "SIMMER_MEDIA_UDP_PORT_MIN")]
    pub media_udp_port_min: Option<u16>,
    #[arg(long, env = "SIMMER_MEDIA_UDP_PORT_MAX")]
    pub media_udp_port_max: Option<u16>,

    /// STUN/TURN servers announced to WHIP/WHEP clients in `Link` headers,
    /// comma-separated URLs (`stun:host:3478`, `turn:host:3478?transport=udp`)
    /// [default: none].
    #[arg(long, env = "SIMMER_MEDIA_ICE_SERVERS")]
    pub media_ice_servers: Option<String>,

    /// Secret shared with the TURN servers above (coturn `use-auth-secret`,
    /// `static-auth-secret`): each WHIP/WHEP answer carries its own
    /// credential, valid for `media_turn_ttl_s` [default: none].
    #[arg(long, env = "SIMMER_MEDIA_TURN_SECRET", hide_env_values = true)]
    pub media_turn_secret: Option<Secret>,
    /// How long a minted TURN credential lasts, in seconds (longer than a
    /// viewing: a TURN allocation is refreshed with it) [default: 43200].
    #[arg(long, env = "SIMMER_MEDIA_TURN_TTL_S")]
    pub media_turn_ttl_s: Option<u64>,

    /// One username and password for everybody, for a TURN server without
    /// shared secrets (prefer `media_turn_secret`) [default: none].
    #[arg(long, env = "SIMMER_MEDIA_TURN_USERNAME")]
    pub media_turn_username: Option<String>,
    #[arg(long, env = "SIMMER_MEDIA_TURN_CREDENTIAL", hide_env_values = true)]
    pub media_turn_credential: Option<Secret>,

    /// Viewers (WHEP sessions) per room [default: 500].
    #[arg(long, env = "SIMMER_MEDIA_MAX_SUBSCRIBERS")]
    pub media_max_subscribers: Option<usize>,

    /// WHEP sessions one viewer (user or guest) may hold in one room; more
    /// answer 429 `rate_limited` [default: 3].
    #[arg(long, env = "SIMMER_MEDIA_MAX_SUBSCRIPTIONS_PER_VIEWER")]
    pub media_max_subscriptions_per_viewer: Option<usize>,

    /// WHEP sessions one client address may hold in one room; more answer
    /// 429 `rate_limited` [default: 20].
    #[arg(long, env = "SIMMER_MEDIA_MAX_SUBSCRIPTIONS_PER_ADDRESS")]
    pub media_max_subscriptions_per_address: Option<usize>,

    /// Seconds a viewer's answered WHEP session has to reach ICE connected;
    /// one that has not is closed and its slot freed. A host's WHIP session
    /// has as long to connect (ICE and DTLS), or is closed and the publish
    /// freed [default: 10].
    #[arg(long, env = "SIMMER_MEDIA_CONNECT_TIMEOUT_S")]
    pub media_connect_timeout_s: Option<u64>,

    /// Largest SDP offer accepted, in bytes [default: 32768].
    #[arg(long, env = "SIMMER_MEDIA_MAX_SDP_BYTES")]
    pub media_max_sdp_bytes: Option<usize>,

    /// Seconds without ICE traffic after which a peer counts as gone (a
    /// vanished publisher: viewers see "not publishing") [default: 10].
    #[arg(long, env = "SIMMER_MEDIA_ICE_TIMEOUT_S")]
    pub media_ice_timeout_s: Option<u64>,

    /// Lanes per room: viewers are spread over this many groups, each
    /// written by its own task, so one room's fan-out uses every core
    /// [default: the number of cores; at most 64].
    #[arg(long, env = "SIMMER_MEDIA_LANES")]
    pub media_lanes: Option<usize>,

    /// Milliseconds a host's packet may wait for a lane that fell behind;
    /// older ones are dropped (and a keyframe asked for) instead of reaching
    /// viewers late [default: 300].
    #[arg(long, env = "SIMMER_MEDIA_MAX_QUEUE_MS")]
    pub media_max_queue_ms: Option<u64>,

    /// Viewers play from the relay's own edge (one UDP port per address,
    /// ICE lite, DTLS and SRTP done by the relay, batched sends); `false`
    /// gives each viewer a `webrtc` crate peer connection instead, as
    /// before [default: true].
    #[arg(long, env = "SIMMER_MEDIA_EDGE")]
    pub media_edge: Option<bool>,

    /// Reverse proxies whose `X-Forwarded-For` names the client, for the
    /// per-address limits: comma-separated addresses or CIDR blocks
    /// (`10.0.0.0/8, ::1`) [default: none, the header is ignored].
    #[arg(long, env = "SIMMER_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,

    /// Origins whose pages may call the REST API and WHIP/WHEP from a
    /// browser (CORS): comma-separated (`https://app.example.com`), or `*`
    /// for any [default: none, same origin only].
    #[arg(long, env = "SIMMER_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// HTTP worker threads [default: one per core].
    #[arg(long, env = "SIMMER_WORKERS")]
    pub workers: Option<usize>,

    /// Longest drain on SIGTERM/SIGINT, in seconds: connections told to go,
    /// in-flight requests and writes finished [default: 30].
    #[arg(long, env = "SIMMER_SHUTDOWN_TIMEOUT_S")]
    pub shutdown_timeout_s: Option<u64>,

    /// On a drain, each open connection is told to reconnect at a random
    /// moment within this window (ms), so that thousands of clients do not
    /// come back in the same instant; meanwhile they are served. A drain
    /// shortens it to end 0.5 s before its grace period does, so the last
    /// client told still gets its goodbye [default: 3000; at most the
    /// shutdown timeout].
    #[arg(long, env = "SIMMER_DRAIN_SPREAD_MS")]
    pub drain_spread_ms: Option<u64>,

    /// Share the port with the next `simmer` on this machine (SO_REUSEPORT)
    /// and hand over to it without refusing a connection: a new process
    /// started with this set asks the running one to drain, then takes over
    /// (docs/deploy.md) [default: false].
    #[arg(long, env = "SIMMER_REUSE_PORT")]
    pub reuse_port: Option<bool>,

    /// Bearer token for the admin endpoints (`POST /api/v1/admin/drain`), at
    /// least 32 bytes [default: none, the admin endpoints refuse every call].
    #[arg(long, env = "SIMMER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Log format [default: text]. Levels come from RUST_LOG (default `info`).
    #[arg(long, env = "SIMMER_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// TURN credentials: minted from a shared secret, or one static pair.
fn turn_auth(args: &ConfigArgs) -> anyhow::Result<crate::media::turn::TurnAuth> {
    use crate::media::turn::TurnAuth;
    Ok(
        match (
            &args.media_turn_secret,
            &args.media_turn_username,
            &args.media_turn_credential,
        ) {
            (None, None, None) => TurnAuth::None,
            (Some(secret), None, None) => {
                anyhow::ensure!(
                    !secret.expose().is_empty(),
                    "media_turn_secret must not be empty"
                );
                TurnAuth::Minted {
                    secret: secret.clone(),
                    ttl: Duration::from_secs(args.media_turn_ttl_s.unwrap_or(43_200).max(60)),
                }
            }
            (None, Some(username), Some(credential)) => TurnAuth::Static {
                username: username.clone(),
                credential: credential.clone(),
            },
            (Some(_), _, _) => anyhow::bail!(
                "media_turn_secret mints credentials: leave media_turn_username/credential unset"
            ),
            _ => anyhow::bail!("media_turn_username and media_turn_credential go together"),
        },
    )
}

/// Shortest accepted admin token, in bytes.
const MIN_ADMIN_TOKEN_BYTES: usize = 32;

macro_rules! layer {
    ($top:expr, $bottom:expr, $($field:ident),+ $(,)?) => {
        ConfigArgs {
            config: $top.config.or($bottom.config),
            $($field: $top.$field.or($bottom.$field),)+
        }
    };
}

impl ConfigArgs {
    /// Reads the TOML file named by `config` (if any) and lays these settings
    /// over it.
    pub fn with_file(self) -> anyhow::Result<ConfigArgs> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let file: ConfigArgs = toml::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        Ok(self.over(file))
    }

    /// `self`'s values where given, else `below`'s.
    pub fn over(self, below: ConfigArgs) -> ConfigArgs {
        layer!(
            self,
            below,
            bind,
            data_dir,
            database_url,
            db_max_connections,
            db_busy_timeout_ms,
            redis_url,
            node_id,
            advertise_url,
            lease_ttl_ms,
            jwt_secret,
            access_token_ttl_s,
            refresh_token_ttl_s,
            guest_token_ttl_s,
            guest_tokens_per_address,
            guest_token_window_s,
            login_max_failures,
            login_max_failures_per_address,
            password_hash_threads,
            password_hash_queue,
            login_lockout_s,
            max_body_bytes,
            page_size_default,
            page_size_max,
            chat_max_chars,
            chat_history,
            chat_dedupe_window,
            chat_rate_per_s,
            chat_burst,
            chat_max_fanout_queue,
            ws_max_connections_per_user,
            ws_max_connections,
            ws_max_frames_per_s,
            ws_max_in_flight,
            fanout_buffer,
            ws_max_frame_bytes,
            ws_max_backlog_bytes,
            ws_send_buffer_bytes,
            ws_io_uring,
            ws_idle_timeout_s,
            ws_max_joins,
            watch_pairing_ttl_s,
            watch_claim_max_failures,
            watch_claim_window_s,
            watch_pairings_per_window,
            watch_max_feeds_per_device,
            media_bind_ips,
            media_public_ips,
            media_udp_port_min,
            media_udp_port_max,
            media_ice_servers,
            media_turn_secret,
            media_turn_ttl_s,
            media_turn_username,
            media_turn_credential,
            media_max_subscribers,
            media_max_subscriptions_per_viewer,
            media_max_subscriptions_per_address,
            media_connect_timeout_s,
            media_max_sdp_bytes,
            media_ice_timeout_s,
            media_lanes,
            media_max_queue_ms,
            media_edge,
            trusted_proxies,
            cors_origins,
            workers,
            shutdown_timeout_s,
            drain_spread_ms,
            reuse_port,
            admin_token,
            log_format,
        )
    }
}

/// Resolved settings with every default applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Secret,
    pub db_max_connections: u32,
    /// How long a SQLite write waits for the lock (`db::busy`).
    pub db_busy_timeout: Duration,
    pub redis_url: Option<Secret>,
    /// This node's name in the cluster.
    pub node_id: String,
    /// Where this node is reached.
    pub advertise_url: String,
    /// How long a hold on a live session lasts unless renewed.
    pub lease_ttl: Duration,
    pub jwt_secret: Option<Secret>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub guest_token_ttl: Duration,
    pub guest_tokens_per_address: u32,
    pub guest_token_window: Duration,
    pub login_max_failures: u32,
    pub login_max_failures_per_address: u32,
    pub password_hash_threads: usize,
    pub password_hash_queue: usize,
    pub login_lockout: Duration,
    pub max_body_bytes: usize,
    pub page_size_default: u32,
    pub page_size_max: u32,
    pub chat_max_chars: usize,
    pub chat_history: usize,
    pub chat_dedupe_window: usize,
    pub chat_rate_per_s: f64,
    pub chat_burst: u32,
    pub chat_max_fanout_queue: usize,
    pub ws_max_connections_per_user: u32,
    pub ws_max_connections: usize,
    pub ws_max_frames_per_s: u32,
    pub ws_max_in_flight: usize,
    pub fanout_buffer: usize,
    pub ws_max_frame_bytes: usize,
    pub ws_max_backlog_bytes: usize,
    /// 0: the kernel's autotuning.
    pub ws_send_buffer_bytes: usize,
    pub ws_io_uring: bool,
    pub ws_idle_timeout: Duration,
    pub ws_max_joins: usize,
    pub watch_pairing_ttl: Duration,
    pub watch_claim_max_failures: u32,
    pub watch_claim_window: Duration,
    pub watch_pairings_per_window: u32,
    pub watch_max_feeds_per_device: usize,
    pub media: crate::media::MediaSettings,
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    pub cors_origins: crate::api::cors::CorsOrigins,
    pub workers: Option<usize>,
    pub shutdown_timeout: Duration,
    pub drain_spread: Duration,
    pub reuse_port: bool,
    pub admin_token: Option<Secret>,
    pub log_format: LogFormat,
}

/// The SQLite URL of the embedded default.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

impl Settings {
    /// Applies defaults and checks ranges.
    pub fn resolve(args: ConfigArgs) -> anyhow::Result<Settings> {
        let turn = turn_auth(&args)?;
        let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from("."));
        let database_url = args
            .database_url
            .unwrap_or_else(|| Secret::new(sqlite_url(&data_dir.join("simmer.db"))));
        let page_size_max = args.page_size_max.unwrap_or(100);
        let shutdown_timeout = Duration::from_secs(args.shutdown_timeout_s.unwrap_or(30));
        let page_size_default = args.page_size_default.unwrap_or(20);
        anyhow::ensure!(page_size_max >= 1, "page_size_max must be at least 1");
        anyhow::ensure!(
            (1..=page_size_max).contains(&page_size_default),
            "page_size_default must be between 1 and page_size_max"
        );
        let max_body_bytes = args.max_body_bytes.unwrap_or(1024 * 1024);
        anyhow::ensure!(
            max_body_bytes >= 1024,
            "max_body_bytes must be at least 1024"
        );
        let positive = |name: &str, value: Option<u64>, default: u64| {
            let secs = value.unwrap_or(default);
            anyhow::ensure!(secs > 0, "{name} must be positive");
            Ok(Duration::from_secs(secs))
        };
        let millis = |name: &str, value: Option<u64>, default: u64, least: u64| {
            let ms = value.unwrap_or(default);
            anyhow::ensure!(
                (least..=600_000).contains(&ms),
                "{name} must be between {least} and 600000"
            );
            Ok::<_, anyhow::Error>(Duration::from_millis(ms))
        };
        let bind = args
            .bind
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        Ok(Settings {
            bind,
            data_dir,
            database_url,
            db_max_connections: args.db_max_connections.unwrap_or(10).max(1),
            db_busy_timeout: millis("db_busy_timeout_ms", args.db_busy_timeout_ms, 5000, 1)?,
            redis_url: args.redis_url,
            node_id: match args.node_id {
                Some(id) => {
                    anyhow::ensure!(
                        !id.is_empty()
                            && id.len() <= 64
                            && id
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                        "node_id must be 1 to 64 letters, digits, '-', '_' or '.'"
                    );
                    id
                }
                None => format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            },
            advertise_url: args
                .advertise_url
                .unwrap_or_else(|| format!("http://{}", bind)),
            lease_ttl: millis("lease_ttl_ms", args.lease_ttl_ms, 5000, 500)?,
            jwt_secret: args.jwt_secret,
            access_token_ttl: positive("access_token_ttl_s", args.access_token_ttl_s, 900)?,
            refresh_token_ttl: positive(
                "refresh_token_ttl_s",
                args.refresh_token_ttl_s,
                30 * 24 * 3600,
            )?,
            guest_token_ttl: positive("guest_token_ttl_s", args.guest_token_ttl_s, 4 * 3600)?,
            guest_tokens_per_address: args.guest_tokens_per_address.unwrap_or(30).max(1),
            guest_token_window: positive("guest_token_window_s", args.guest_token_window_s, 600)?,
            login_max_failures: args.login_max_failures.unwrap_or(10).max(1),
            login_max_failures_per_address: args
                .login_max_failures_per_address
                .unwrap_or(100)
                .max(1),
            password_hash_threads: args
                .password_hash_threads
                .filter(|n| *n > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            password_hash_queue: args.password_hash_queue.unwrap_or(32),
            login_lockout: positive("login_lockout_s", args.login_lockout_s, 900)?,
            max_body_bytes,
            page_size_default,
            page_size_max,
            chat_max_chars: args.chat_max_chars.unwrap_or(1000).max(1),
            chat_history: args.chat_history.unwrap_or(1000).max(1),
            chat_dedupe_window: args.chat_dedupe_window.unwrap_or(10_000).max(1),
            chat_rate_per_s: args.chat_rate_per_s.unwrap_or(5.0).max(0.01),
            chat_burst: args.chat_burst.unwrap_or(10).max(1),
            chat_max_fanout_queue: args.chat_max_fanout_queue.unwrap_or(256),
            ws_max_connections_per_user: args.ws_max_connections_per_user.unwrap_or(10).max(1),
            ws_max_connections: args.ws_max_connections.unwrap_or(100_000).max(1),
            ws_max_frames_per_s: args.ws_max_frames_per_s.unwrap_or(50).max(1),
            ws_max_in_flight: args.ws_max_in_flight.unwrap_or(1024).max(1),
            fanout_buffer: args.fanout_buffer.unwrap_or(1024).max(16),
            ws_max_frame_bytes: args.ws_max_frame_bytes.unwrap_or(16 * 1024).max(1024),
            ws_max_backlog_bytes: args
                .ws_max_backlog_bytes
                .unwrap_or(256 * 1024)
                .max(16 * 1024),
            ws_send_buffer_bytes: args.ws_send_buffer_bytes.unwrap_or(0),
            ws_io_uring: args.ws_io_uring.unwrap_or(true),
            ws_idle_timeout: positive("ws_idle_timeout_s", args.ws_idle_timeout_s, 30)?,
            ws_max_joins: args.ws_max_joins.unwrap_or(16).max(1),
            watch_pairing_ttl: positive("watch_pairing_ttl_s", args.watch_pairing_ttl_s, 300)?,
            watch_claim_max_failures: args.watch_claim_max_failures.unwrap_or(10).max(1),
            watch_claim_window: positive("watch_claim_window_s", args.watch_claim_window_s, 600)?,
            watch_pairings_per_window: args.watch_pairings_per_window.unwrap_or(30).max(1),
            watch_max_feeds_per_device: args.watch_max_feeds_per_device.unwrap_or(2).max(1),
            media: crate::media::MediaSettings::resolve(
                args.media_bind_ips.as_deref(),
                args.media_public_ips.as_deref(),
                (
                    args.media_udp_port_min.unwrap_or(0),
                    args.media_udp_port_max.unwrap_or(0),
                ),
                args.media_ice_servers.as_deref(),
                turn,
                args.media_max_subscribers.unwrap_or(500).max(1),
                args.media_max_sdp_bytes.unwrap_or(32 * 1024).max(1024),
                positive("media_ice_timeout_s", args.media_ice_timeout_s, 10)?,
                crate::media::ViewerLimits {
                    per_viewer: args.media_max_subscriptions_per_viewer.unwrap_or(3).max(1),
                    per_address: args
                        .media_max_subscriptions_per_address
                        .unwrap_or(20)
                        .max(1),
                    connect_timeout: positive(
                        "media_connect_timeout_s",
                        args.media_connect_timeout_s,
                        10,
                    )?,
                },
                crate::media::RelayLimits {
                    lanes: args.media_lanes.filter(|n| *n > 0).unwrap_or_else(|| {
                        std::thread::available_parallelism().map_or(1, usize::from)
                    }),
                    max_queue: Duration::from_millis(
                        args.media_max_queue_ms.unwrap_or(300).max(20),
                    ),
                    edge: args.media_edge.unwrap_or(true),
                },
            )?,
            trusted_proxies: crate::client_addr::TrustedProxies::parse(
                args.trusted_proxies.as_deref().unwrap_or(""),
            )
            .context("trusted_proxies")?,
            cors_origins: crate::api::cors::CorsOrigins::parse(
                args.cors_origins.as_deref().unwrap_or(""),
            )
            .context("cors_origins")?,
            workers: args.workers.filter(|w| *w > 0),
            shutdown_timeout,
            drain_spread: {
                let spread = match args.drain_spread_ms {
                    Some(ms) => Duration::from_millis(ms),
                    // A short grace period shortens the default window too.
                    None => Duration::from_secs(3).min(shutdown_timeout),
                };
                anyhow::ensure!(
                    spread <= shutdown_timeout,
                    "drain_spread_ms must not exceed the shutdown timeout ({} s)",
                    shutdown_timeout.as_secs()
                );
                spread
            },
            reuse_port: args.reuse_port.unwrap_or(false),
            admin_token: match args.admin_token {
                Some(token) if token.expose().len() < MIN_ADMIN_TOKEN_BYTES => {
                    anyhow::bail!("admin_token must be at least {MIN_ADMIN_TOKEN_BYTES} bytes")
                }
                token => token,
            },
            log_format: args.log_format.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let file: ConfigArgs =
            toml::from_str("bind = \"0.0.0.0:9000\"\npage_size_default = 5\n").unwrap();
        let flags = ConfigArgs {
            page_size_default: Some(7),
            ..ConfigArgs::default()
        };
        let settings = Settings::resolve(flags.over(file)).unwrap();
        assert_eq!(settings.bind.port(), 9000);
        assert_eq!(settings.page_size_default, 7);
        assert_eq!(settings.page_size_max, 100);
        assert!(settings
            .database_url
            .expose()
            .ends_with("simmer.db?mode=rwc"));
    }

    #[test]
    fn the_sample_config_is_valid_and_shows_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/simmer.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let file: ConfigArgs = toml::from_str(&text).unwrap();
        let mut from_file = Settings::resolve(file).unwrap();
        let defaults = Settings::resolve(ConfigArgs::default()).unwrap();
        // Generated at each start, unless set.
        from_file.node_id.clone_from(&defaults.node_id);
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn millisecond_settings_are_kept_in_range() {
        let refused = [
            (
                ConfigArgs {
                    db_busy_timeout_ms: Some(0),
                    ..ConfigArgs::default()
                },
                "db_busy_timeout_ms",
            ),
            (
                ConfigArgs {
                    lease_ttl_ms: Some(499),
                    ..ConfigArgs::default()
                },
                "lease_ttl_ms",
            ),
            (
                ConfigArgs {
                    db_busy_timeout_ms: Some(600_001),
                    ..ConfigArgs::default()
                },
                "db_busy_timeout_ms",
            ),
        ];
        for (args, name) in refused {
            let e = Settings::resolve(args).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("600000"), "{e}");
        }
        let settings = Settings::resolve(ConfigArgs {
            db_busy_timeout_ms: Some(250),
            ..ConfigArgs::default()
        })
        .unwrap();
        assert_eq!(settings.db_busy_timeout, Duration::from_millis(250));
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        assert!(toml::from_str::<ConfigArgs>("bnid = \"x\"").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
