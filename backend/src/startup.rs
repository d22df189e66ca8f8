//! Building and running the app: one function builds the `App`, used by
//! `main` and by the tests alike.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{middleware, web, App};
use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::api::{self, health, openapi::ApiDoc};
use crate::auth::{PasswordHasher, RefreshTokens, Throttles, TokenKeys};
use crate::bus::redis::RedisBus;
use crate::bus::{Bus, LocalBus};
use crate::cluster::Cluster;
use crate::config::Settings;
use crate::db;
use crate::live::chat::ChatLimits;
use crate::live::chat_writer::ChatWriter;
use crate::live::Sessions;
use crate::media::engine::Sfu;
use crate::metrics::{self, Metrics};
use crate::shutdown::{Shutdown, Signals};
use crate::state::AppState;

/// The signal a successor process sends to take over (`crate::handoff`).
const HAND_OVER_SIGNAL: &str = "SIGUSR2";

/// How long after the listening socket closes the server keeps starting
/// requests on connections it had just accepted (see [`drain`]).
const ACCEPTED_SETTLE: Duration = Duration::from_millis(250);
/// What a drain leaves of the grace period after its spread window: time
/// for the last connection told to go to write its goodbye and read the
/// client's close (a round trip) before the node stops.
const GOODBYE: Duration = Duration::from_millis(500);

/// Shortest accepted signing secret, in bytes.
const MIN_SECRET_BYTES: usize = 32;

/// A bound, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
    /// The listening socket, closed first when draining.
    entrance: crate::handoff::Entrance,
    state: AppState,
    /// The data directory's lock, with `SIMMER_REUSE_PORT` (held until the
    /// process is done with the database).
    lock: Option<crate::handoff::NodeLock>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// The runtime every peer connection of the media relay runs on: all cores,
/// separate from the HTTP workers and the session actors. One per process.
fn media_runtime() -> anyhow::Result<tokio::runtime::Handle> {
    static RUNTIME: std::sync::Mutex<Option<tokio::runtime::Runtime>> = std::sync::Mutex::new(None);
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(runtime) = slot.as_ref() {
        return Ok(runtime.handle().clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("simmer-media")
        .enable_all()
        .build()
        .context("starting the media runtime")?;
    let handle = runtime.handle().clone();
    *slot = Some(runtime);
    Ok(handle)
}

impl Application {
    /// Connects and migrates the database, restores live sessions, and binds
    /// (port 0 picks a free port). Needs a running actix `System`.
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        crate::websocket::batch::use_io_uring(settings.ws_io_uring);
        let listener = crate::handoff::bind(settings.bind, settings.reuse_port)
            .with_context(|| format!("binding {}", settings.bind))?;
        let addr = listener.local_addr()?;
        let entrance = crate::handoff::Entrance::of(&listener)?;
        // Sharing the port: the process that serves now hands over first
        // (new connections wait in this socket's backlog meanwhile).
        let lock = if settings.reuse_port {
            let wait = settings.shutdown_timeout + Duration::from_secs(5);
            Some(crate::handoff::take_over(&settings.data_dir, wait).await?)
        } else {
            None
        };
        if settings.advertise_url == format!("http://{}", settings.bind) {
            // Not set: where this node really listens (port 0 is picked now).
            settings.advertise_url = format!("http://{addr}");
        }
        if settings.redis_url.is_some() && settings.database_url.expose().starts_with("sqlite") {
            anyhow::bail!(
                "REDIS_URL is set (cluster mode), but the database is SQLite: the nodes of a \
                 cluster share one PostgreSQL database; set DATABASE_URL=postgres://..."
            );
        }
        let db = db::connect(&settings).await?;
        db::migrate(&db).await?;
        let secret = signing_secret(&settings)?;
        let metrics = Metrics::new().context("creating metrics")?;
        let local_bus = LocalBus::new(settings.fanout_buffer);
        let (bus, cluster): (Arc<dyn Bus>, _) = if settings.redis_url.is_some() {
            let (cluster, incoming) =
                Cluster::connect(&settings, local_bus.clone(), metrics.clone())?;
            tracing::info!(node = %settings.node_id, advertise_url = %settings.advertise_url, "cluster mode");
            let bus = RedisBus::new(local_bus, cluster.clone(), settings.fanout_buffer * 16);
            (bus, Some((cluster, incoming)))
        } else {
            (local_bus, None)
        };
        let chat_limits = ChatLimits {
            max_chars: settings.chat_max_chars,
            ring: settings.chat_history,
            dedupe: settings.chat_dedupe_window,
            rate_per_s: settings.chat_rate_per_s,
            burst: settings.chat_burst,
            max_fanout_queue: settings.chat_max_fanout_queue,
        };
        let sfu = Sfu::new(settings.media.clone(), media_runtime()?)
            .context("setting up the media relay")?;
        let chat_writer = ChatWriter::new(db.clone(), db::SqliteOpener::for_settings(&settings)?);
        let sessions = Sessions::new(
            db.clone(),
            chat_writer,
            bus,
            metrics.clone(),
            chat_limits,
            sfu,
            cluster,
        )?;
        let restored = sessions
            .restore()
            .await
            .context("restoring live sessions")?;
        let passwords =
            PasswordHasher::new(settings.password_hash_threads, settings.password_hash_queue)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        let state = AppState {
            refresh_tokens: RefreshTokens::new(db.clone(), settings.refresh_token_ttl),
            throttles: Throttles::new(&settings, sessions.cluster()),
            db,
            keys: Arc::new(TokenKeys::new(&secret)),
            passwords,
            ws_users: crate::gateway::UserConnections::new(sessions.cluster().cloned()),
            websockets: crate::websocket::Sockets::new(settings.ws_max_connections),
            sessions,
            metrics,
            shutdown: Shutdown::new(settings.drain_spread),
            settings: Arc::new(settings.clone()),
        };

        // Signals are ours (`run_until_stopped`): connections are told to go
        // before the server stops, and SIGINT drains like SIGTERM.
        let server = crate::websocket::server::http_server(
            listener,
            web::Data::new(state.clone()),
            &settings,
        )?;
        tracing::info!(
            %addr,
            database = db::backend_name(&state.db),
            live_sessions_restored = restored,
            "simmer listening"
        );
        Ok(Self {
            port: addr.port(),
            server,
            entrance,
            state,
            lock,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (gracefully or not) from elsewhere.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The shared state (tests reach the registry through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until stopped, then stops in order (see [`drain`]): not ready;
    /// no new connections; in a cluster, the sessions handed to the other
    /// nodes; every open connection told to go (`reconnect` on `/ws`,
    /// `bye` on watch feeds, each at its moment in the spread window) and
    /// waited for; in-flight requests finished; the session actors stopped
    /// once their durable writes are done; the database closed last; all
    /// within the grace period. SIGTERM, SIGINT and the admin endpoint all
    /// drain; a second signal stops at once. A stop through
    /// [`Self::handle`] skips the goodbyes.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            server,
            entrance,
            state,
            lock,
            ..
        } = self;
        let grace = state.settings.shutdown_timeout;
        let deadline = Deadline::new(grace);
        let drain = actix_rt::spawn(drain_when_asked(
            server.handle(),
            entrance,
            state.clone(),
            deadline.clone(),
        ));
        let result = server.await;
        drain.abort();
        deadline.start();
        // Whatever is still open (a stop through the handle) goes now.
        state.shutdown.hurry();
        tracing::info!("http server stopped; stopping session actors");
        state.sessions.stop_actors(deadline.left()).await;
        // Closing waits until every checked-out connection is back: after
        // it, no query is in flight on an actor thread that ends next.
        match tokio::time::timeout(deadline.left(), state.db.clone().close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error.message = %e, "closing the database"),
            Err(_) => tracing::warn!("the database did not close in time"),
        }
        state.sessions.join_threads(deadline.left()).await;
        // The next process may open the database now.
        drop(lock);
        tracing::info!("shutdown complete");
        result
    }
}

/// The grace period, counted from the moment a drain began: every step of
/// stopping gets what is left of it, so the whole stop fits. Cheap to clone.
#[derive(Debug, Clone)]
struct Deadline {
    grace: Duration,
    /// Set once, when the drain begins (unset: all of it is left).
    at: Arc<std::sync::OnceLock<tokio::time::Instant>>,
}

impl Deadline {
    /// Time a step may still take, at least a moment.
    const FLOOR: Duration = Duration::from_millis(100);

    fn new(grace: Duration) -> Self {
        Self {
            grace,
            at: Arc::default(),
        }
    }

    /// Starts counting (once; later calls change nothing).
    fn start(&self) {
        self.at
            .get_or_init(|| tokio::time::Instant::now() + self.grace);
    }

    fn left(&self) -> Duration {
        match self.at.get() {
            Some(at) => at
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Self::FLOOR),
            None => self.grace,
        }
    }
}

/// Waits until a drain is asked for (SIGTERM, SIGINT, the admin endpoint),
/// then drains; a second signal meanwhile stops the server at once.
async fn drain_when_asked(
    server: ServerHandle,
    entrance: crate::handoff::Entrance,
    state: AppState,
    deadline: Deadline,
) {
    let mut signals = match Signals::new() {
        Ok(signals) => Some(signals),
        Err(e) => {
            tracing::error!(error.message = %e, "cannot listen for SIGTERM/SIGINT");
            None
        }
    };
    let shutdown = state.shutdown.clone();
    let why = tokio::select! {
        signal = next_signal(&mut signals) => {
            shutdown.request_drain(signal);
            signal
        }
        why = shutdown.drain_requested() => why,
    };
    tracing::info!(
        why,
        open_connections = shutdown.open_connections(),
        live_sessions = state.sessions.live_count(),
        "draining: not ready, refusing new connections"
    );
    tokio::select! {
        () = drain(&server, &entrance, &state, &deadline, why) => {}
        signal = next_signal(&mut signals) => {
            tracing::warn!(signal, "second signal: stopping at once");
            server.stop(false).await;
        }
    }
}

/// The next signal, or never without signal handling.
async fn next_signal(signals: &mut Option<Signals>) -> &'static str {
    match signals {
        Some(signals) => signals.next().await,
        None => std::future::pending().await,
    }
}

/// A drain: no new connections (the listener closes, so a proxy in front
/// tries another node at once instead of waiting on a silent backlog); the
/// sessions go to other nodes first (in a cluster), so nobody waits for a
/// lease to lapse; then every connection is told to go at its moment in the
/// spread window (served until then, by forwarding to the sessions' new
/// nodes) and waited for. Keep-alive connections are served meanwhile, each
/// answer closing its connection ([`close_when_draining`]); the server stops
/// last: requests in flight finish, idle connections close.
async fn drain(
    server: &ServerHandle,
    entrance: &crate::handoff::Entrance,
    state: &AppState,
    deadline: &Deadline,
    why: &str,
) {
    deadline.start();
    let shutdown = &state.shutdown;
    // Closed before the accept loop hears of it: not one connection more is
    // taken in only to be reset.
    entrance.close();
    server.pause().await;
    let closed = tokio::time::Instant::now();
    let started = std::time::Instant::now();
    let handed = state.sessions.hand_off(deadline.left()).await;
    let window = if why == HAND_OVER_SIGNAL {
        // A successor waits for this process to exit before it serves: no
        // point keeping clients here over the spread window, and their
        // video must be set up again there.
        state.sessions.media_going_away();
        shutdown.hurry();
        Duration::ZERO
    } else {
        // The hand-over took some of the grace period: the window ends in
        // time for the last connection told to say goodbye.
        shutdown.begin(deadline.left().saturating_sub(GOODBYE))
    };
    tracing::info!(
        sessions_handed_over = handed,
        took_ms = started.elapsed().as_millis() as u64,
        spread_ms = window.as_millis() as u64,
        "telling connections to reconnect"
    );
    if tokio::time::timeout(deadline.left(), shutdown.connections_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open_connections = shutdown.open_connections(),
            grace_s = state.settings.shutdown_timeout.as_secs(),
            "connections still open at the end of the grace period; closing them"
        );
    }
    tracing::info!(
        took_ms = started.elapsed().as_millis() as u64,
        "connections closed"
    );
    shutdown.mark_drained();
    // A connection accepted just before the entrance closed may not have
    // sent its request yet; the graceful stop would close it unanswered
    // (actix starts no new request on a draining connection). A hurried
    // drain can get here within milliseconds: give such requests a moment.
    tokio::time::sleep_until(closed + ACCEPTED_SETTLE).await;
    // Graceful: requests in flight finish (within what is left of the grace
    // period), idle keep-alive connections close.
    if tokio::time::timeout(deadline.left(), server.stop(true))
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight at the end of the grace period; cutting them");
        server.stop(false).await;
    }
}

/// While draining, every answer closes its connection after it: a client or
/// proxy that keeps connections alive opens its next one elsewhere (this
/// node refuses it), instead of this node closing an idle connection at the
/// end while a request is on its way there, which a proxy cannot retry for
/// a POST. A WebSocket upgrade is left alone: it is told in its own words.
async fn close_when_draining(
    req: ServiceRequest,
    next: middleware::Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let shutdown = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.shutdown.clone());
    let mut res = next.call(req).await?;
    if shutdown.is_some_and(|s| s.is_draining())
        && res.status() != actix_web::http::StatusCode::SWITCHING_PROTOCOLS
    {
        res.response_mut()
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
    Ok(res)
}

/// The whole app: routes, extractor limits, middleware.
pub fn build_app(
    data: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let (json, path, query) = api::extractor_configs(data.settings.max_body_bytes);
    let payload = web::PayloadConfig::new(data.settings.max_body_bytes);
    let openapi = ApiDoc::openapi();
    let cors = data.settings.cors_origins.clone();
    let allowed = web::Data::new(api::AllowedMethods::from_openapi(&openapi));
    App::new()
        .app_data(data)
        .app_data(allowed)
        .app_data(json)
        .app_data(path)
        .app_data(query)
        .app_data(payload)
        // No response is ever to be sniffed into another type (API JSON as
        // HTML, say); the pages add their own policy (web.rs).
        .wrap(middleware::DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
        .wrap(middleware::from_fn(metrics::track))
        .wrap(middleware::from_fn(close_when_draining))
        .wrap(tracing_actix_web::TracingLogger::default())
        .wrap(middleware::NormalizePath::new(
            middleware::TrailingSlash::MergeOnly,
        ))
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .route("/ws", web::get().to(crate::gateway::ws))
        .route("/watch/ws", web::get().to(crate::watch::feed::watch_ws))
        .configure(|cfg| api::media::configure(cfg, &cors))
        .route(
            "/watch/events",
            web::get().to(crate::watch::feed::watch_events),
        )
        .service(web::redirect("/docs", "/docs/"))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/api-docs/openapi.json", openapi))
        .configure(|cfg| api::configure(cfg, &cors))
        .configure(crate::web::configure)
        .default_service(web::to(api::not_found))
}

/// The configured secret, or the one kept in the data directory (created on
/// first start).
fn signing_secret(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &settings.jwt_secret {
        let bytes = secret.expose().as_bytes().to_vec();
        anyhow::ensure!(
            bytes.len() >= MIN_SECRET_BYTES,
            "SIMMER_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes"
        );
        return Ok(bytes);
    }
    let path = settings.data_dir.join("simmer.secret");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading signing secret {}", path.display()))?;
        let secret = text.trim().as_bytes().to_vec();
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_BYTES,
            "signing secret in {} is too short; delete it to generate a new one",
            path.display()
        );
        return Ok(secret);
    }
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = STANDARD.encode(bytes);
    write_private(&path, &secret)?;
    tracing::info!(
        path = %path.display(),
        "generated a new token signing secret; set SIMMER_JWT_SECRET to share one between nodes"
    );
    Ok(secret.into_bytes())
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
