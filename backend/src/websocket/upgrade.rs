//! Taking the TCP stream at the upgrade.
//!
//! actix-http hands every HTTP/1.1 request that asks for an upgrade (and
//! carries no body) to an upgrade service together with the connection
//! itself. Ours gives the request to the application like any other, so
//! routing, middleware, extractors and errors stay where they are; when the
//! handler answered with [`accept`]'s 101, the answer is written and the
//! socket goes to the handler's connection future, without the h1
//! dispatcher's 16 KiB of buffers: that future runs as a task of its own,
//! and the dispatcher (and the HTTP server's count of the connection) ends.
//! [`Sockets`] bounds how many such tasks the node holds. Any other answer
//! is written whole and the connection closes.

use std::future::Future;
use std::rc::Rc;

use actix_codec::Framed;
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::{h1, ConnectionType, Request, Response, StatusCode};
use actix_service::Service;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use futures_util::SinkExt;
use mobile_bridge::ErrorCode;
use tokio::net::TcpStream;

use super::conn::{Limits, WebSocket};
use super::sockets::{SocketSlot, Sockets};
use crate::error::ApiError;

/// The rest of an accepted connection, carried by its 101 answer.
struct Takeover {
    limits: Limits,
    /// The socket's place among the node's [`Sockets`].
    slot: SocketSlot,
    run: Box<dyn FnOnce(WebSocket) -> LocalBoxFuture<'static, ()>>,
}

/// Marks a request that came through the upgrade service: only such a
/// request's connection can be taken over.
#[derive(Clone, Copy)]
struct Upgradable;

/// Answers a WebSocket handshake with 101 (and `subprotocol`, if any); once
/// it is written, `run` gets the socket, as a task of its own that holds one
/// of `sockets`' places while it runs. 400 for anything that is not a valid
/// handshake; 503 (with `Retry-After`) when the node holds as many sockets
/// as it may.
pub fn accept<F, Fut>(
    req: &HttpRequest,
    sockets: &Sockets,
    subprotocol: Option<&'static str>,
    limits: Limits,
    run: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(WebSocket) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let not_upgrade = |why: String| {
        ApiError::client(
            ErrorCode::InvalidBody,
            format!("not a WebSocket upgrade: {why}"),
        )
    };
    let mut builder =
        actix_http::ws::handshake(req.head()).map_err(|e| not_upgrade(e.to_string()))?;
    if req.extensions().get::<Upgradable>().is_none() {
        // A handshake with a body, or over HTTP/2: the socket is not ours.
        return Err(not_upgrade(
            "a handshake is an HTTP/1.1 GET without a body".into(),
        ));
    }
    if let Some(protocol) = subprotocol {
        builder.insert_header((
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        ));
    }
    let slot = sockets.take().ok_or_else(|| {
        ApiError::client(
            ErrorCode::Unavailable,
            format!(
                "this node holds its maximum of {} realtime connections; try again, or another node",
                sockets.max()
            ),
        )
    })?;
    let mut response = builder.finish().map_into_boxed_body();
    response.extensions_mut().insert(Takeover {
        limits,
        slot,
        run: Box::new(move |ws| Box::pin(run(ws))),
    });
    Ok(HttpResponse::from(response))
}

/// Serves one upgrade request with `app` (the application's service) on its
/// connection.
pub async fn serve<S, B>(
    app: Rc<S>,
    req: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    req.extensions_mut().insert(Upgradable);
    let response: Response<BoxBody> = match app.call(req).await {
        Ok(response) => Response::from(response).map_into_boxed_body(),
        Err(refusal) => refusal.into(),
    };
    let (mut head, body) = response.into_parts();
    let takeover = head.extensions_mut().remove::<Takeover>();
    if let (StatusCode::SWITCHING_PROTOCOLS, Some(takeover)) = (head.status(), takeover) {
        framed
            .send(h1::Message::Item((head, BodySize::None)))
            .await?;
        let parts = framed.into_parts();
        let (io, read) = (parts.io, parts.read_buf);
        // The dispatcher's 8 KiB write buffer and its codec go now, not when
        // the connection ends.
        drop((parts.write_buf, parts.codec));
        drop(body);
        let ws = WebSocket::new(io, read, takeover.limits);
        let (run, slot) = ((takeover.run)(ws), takeover.slot);
        // A task of its own: this future, and the dispatcher that holds it,
        // end now instead of living as long as the socket (1–2 KiB each).
        actix_rt::spawn(async move {
            run.await;
            drop(slot);
        });
        return Ok(());
    }
    // Refused (401, 429, ...) or not a WebSocket route: the whole answer,
    // streamed as the app gives it (the OpenAPI document is 110 KiB), then
    // the connection closes. Written in one go when it fits the codec's
    // buffer: a WebSocket client reads a refusal's problem body with its
    // head.
    head.head_mut().set_connection_type(ConnectionType::Close);
    let size = body.size();
    framed.feed(h1::Message::Item((head, size))).await?;
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        let chunk = chunk.map_err(actix_web::error::ErrorInternalServerError)?;
        framed.feed(h1::Message::Chunk(Some(chunk))).await?;
    }
    framed.feed(h1::Message::Chunk(None)).await?;
    // (actix-codec's `close` shuts the socket without writing its buffer.)
    framed.flush().await?;
    framed.close().await?;
    Ok(())
}
