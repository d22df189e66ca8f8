//! Building and running the app: one function builds the `App`, used by
//! `main` and by the tests alike.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{middleware, web, App, HttpServer};
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
use crate::live::Sessions;
use crate::media::engine::Sfu;
use crate::metrics::{self, Metrics};
use crate::shutdown::{Shutdown, Signals};
use crate::state::AppState;

/// Shortest accepted signing secret, in bytes.
const MIN_SECRET_BYTES: usize = 32;

/// A bound, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
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
        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("binding {}", settings.bind))?;
        let addr = listener.local_addr()?;
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
        };
        let sfu = Sfu::new(settings.media.clone(), media_runtime()?)
            .context("setting up the media relay")?;
        let sessions = Sessions::new(db.clone(), bus, metrics.clone(), chat_limits, sfu, cluster)?;
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
            sessions,
            metrics,
            shutdown: Shutdown::default(),
            settings: Arc::new(settings.clone()),
        };

        let data = web::Data::new(state.clone());
        let mut server = HttpServer::new(move || build_app(data.clone()))
            .listen(listener)?
            // Signals are ours (`run_until_stopped`): connections are told
            // to go before the server stops, and SIGINT drains like SIGTERM.
            .disable_signals()
            .shutdown_timeout(settings.shutdown_timeout.as_secs());
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        tracing::info!(
            %addr,
            database = db::backend_name(&state.db),
            live_sessions_restored = restored,
            "simmer listening"
        );
        Ok(Self {
            port: addr.port(),
            server: server.run(),
            state,
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

    /// Serves until stopped, then stops in order: no new connections; every
    /// open one told to go (`reconnect` and close 1001 on `/ws`, `bye` on
    /// watch feeds) and waited for (at most the grace period); in-flight
    /// requests finished; the session actors stopped once their durable
    /// writes are done; the database closed last. SIGTERM and SIGINT both
    /// drain; a second signal stops at once. A stop through [`Self::handle`]
    /// skips the goodbyes.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self { server, state, .. } = self;
        let grace = state.settings.shutdown_timeout;
        let signals = actix_rt::spawn(drain_on_signal(
            server.handle(),
            state.shutdown.clone(),
            grace,
        ));
        let result = server.await;
        signals.abort();
        // Whatever is still open (a stop through the handle) goes now.
        state.shutdown.begin();
        tracing::info!("http server stopped; stopping session actors");
        state.sessions.stop_actors(grace).await;
        // Closing waits until every checked-out connection is back: after
        // it, no query is in flight on an actor thread that ends next.
        match tokio::time::timeout(grace, state.db.clone().close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error.message = %e, "closing the database"),
            Err(_) => tracing::warn!("the database did not close in time"),
        }
        state.sessions.join_threads(grace).await;
        tracing::info!("shutdown complete");
        result
    }
}

/// Waits for SIGTERM or SIGINT, then drains: stops accepting, tells every
/// connection to go, waits for them (at most `grace`), and stops the server
/// gracefully; a second signal meanwhile stops it at once.
async fn drain_on_signal(server: ServerHandle, shutdown: Shutdown, grace: Duration) {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!(error.message = %e, "cannot listen for SIGTERM/SIGINT");
            return;
        }
    };
    let signal = signals.next().await;
    tracing::info!(
        signal,
        open_connections = shutdown.open_connections(),
        "stopping: refusing new connections, telling open ones to go"
    );
    server.pause().await;
    shutdown.begin();
    let drain = async {
        if tokio::time::timeout(grace, shutdown.connections_closed())
            .await
            .is_err()
        {
            tracing::warn!(
                open_connections = shutdown.open_connections(),
                grace_s = grace.as_secs(),
                "connections still open after the grace period; closing them"
            );
        }
        server.stop(true).await;
    };
    tokio::select! {
        () = drain => {}
        signal = signals.next() => {
            tracing::warn!(signal, "second signal: stopping at once");
            server.stop(false).await;
        }
    }
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
        .wrap(tracing_actix_web::TracingLogger::default())
        .wrap(middleware::NormalizePath::new(
            middleware::TrailingSlash::MergeOnly,
        ))
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .route("/ws", web::get().to(crate::gateway::ws))
        .route("/watch/ws", web::get().to(crate::watch::feed::watch_ws))
        .configure(api::media::configure)
        .route(
            "/watch/events",
            web::get().to(crate::watch::feed::watch_events),
        )
        .service(web::redirect("/docs", "/docs/"))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/api-docs/openapi.json", openapi))
        .configure(api::configure)
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
