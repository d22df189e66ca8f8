//! The HTTP server: the actix-web `App` on actix-http's HTTP/1.1 service,
//! built as `actix_web::HttpServer` builds it, plus the upgrade path that
//! gives a WebSocket handler its TCP stream (see `upgrade`).

use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::Duration;

use actix_http::HttpService;
use actix_server::Server;
use actix_service::{fn_factory, fn_service, map_config, ServiceFactory};
use actix_web::dev::AppConfig;
use actix_web::web;

use super::upgrade;
use crate::config::Settings;
use crate::startup::build_app;
use crate::state::AppState;

/// How long a client has to send a request's head (actix-web's default).
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing connection may take to say goodbye (actix-web's
/// default).
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the app sees of the server (`HttpRequest::app_config`).
fn app_config(addr: SocketAddr) -> AppConfig {
    // The only public constructor that takes the real address.
    AppConfig::__priv_test_new(false, addr.to_string(), addr)
}

/// Serves the app on `listener` (already bound) until stopped through the
/// returned server's handle; signals are the caller's.
pub fn http_server(
    listener: TcpListener,
    data: web::Data<AppState>,
    settings: &Settings,
) -> std::io::Result<Server> {
    let addr = listener.local_addr()?;
    let builder = Server::build();
    let graceful = builder.graceful_shutdown_signal();
    let mut builder = builder
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout.as_secs());
    if let Some(workers) = settings.workers {
        builder = builder.workers(workers);
    }
    let server = builder
        .listen("simmer-http", listener, move || {
            let graceful = graceful.clone();
            let app = map_config(build_app(data.clone()), move |()| app_config(addr));
            // A second instance of the app answers upgrade requests.
            let upgrade_app = map_config(build_app(data.clone()), move |()| app_config(addr));
            let upgrade = fn_factory(move || {
                let made = upgrade_app.new_service(());
                async move {
                    let app = Rc::new(made.await?);
                    Ok::<_, ()>(fn_service(move |(req, framed)| {
                        let served = upgrade::serve(app.clone(), req, framed);
                        async move {
                            let result = served.await;
                            if let Err(e) = &result {
                                tracing::debug!(error.message = %e, "upgrade request ended");
                            }
                            result
                        }
                    }))
                }
            });
            HttpService::build()
                .graceful_shutdown_signal(move || {
                    let graceful = graceful.clone();
                    async move { graceful.notified().await }
                })
                .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .h1_allow_half_closed(true)
                .local_addr(addr)
                .upgrade(upgrade)
                .finish(app)
                .tcp()
        })?
        .run();
    Ok(server)
}
