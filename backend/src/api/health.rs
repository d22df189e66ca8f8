//! Liveness and readiness for orchestrators, and the metrics endpoint.

use actix_web::{get, web, HttpResponse};
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// A health answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` when healthy.
    pub status: String,
    /// The database backend (`sqlite` or `postgres`), on `/readyz`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Live sessions run by this node, on `/readyz`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_sessions: Option<usize>,
    /// This node's id, on `/readyz` in a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = Health))
)]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
        database: None,
        live_sessions: None,
        node_id: None,
    })
}

/// Readiness: the node is not draining, the database answers, and in a
/// cluster Redis answers and the node's subscription is up.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Draining, or the database or Redis does not answer (the detail says which)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.shutdown.is_draining() {
        // Said at once, so load balancers stop sending new clients here.
        return Err(ApiError::client(
            mobile_bridge::ErrorCode::Unavailable,
            "not ready: draining (the node is stopping; its clients reconnect elsewhere)",
        ));
    }
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        state.db.execute_unprepared("SELECT 1").await
    })
    .await;
    let cluster = state.sessions.cluster();
    if let Some(cluster) = cluster {
        if let Some(trouble) = cluster.trouble().await {
            tracing::warn!(reason = %trouble, "not ready");
            return Err(ApiError::client(
                mobile_bridge::ErrorCode::Unavailable,
                format!("not ready: {trouble}"),
            ));
        }
    }
    match ping {
        Ok(Ok(_)) => Ok(HttpResponse::Ok().json(Health {
            status: "ok".into(),
            database: Some(crate::db::backend_name(&state.db).into()),
            live_sessions: Some(state.sessions.live_count()),
            node_id: cluster.map(|c| c.node_id().to_owned()),
        })),
        Ok(Err(e)) => Err(ApiError::Unavailable(e.into())),
        Err(_) => Err(ApiError::Unavailable(anyhow::anyhow!(
            "database ping timed out"
        ))),
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    crate::metrics::metrics_endpoint(state).await
}
