//! `GET /api/v1/cluster`: the nodes and the live sessions each runs, for
//! operators (with `/metrics`, see docs/cluster.md).

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::cluster::NodeRecord;
use crate::error::ApiError;
use crate::state::AppState;

/// The cluster as this node sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterView {
    /// `single` (no Redis: this node is the whole service) or `cluster`.
    pub mode: String,
    /// The node that answered.
    pub node_id: String,
    /// Every node whose record is current, each with the live sessions whose
    /// lease it holds.
    pub nodes: Vec<NodeRecord>,
}

/// The nodes of the cluster and which live sessions each runs.
#[utoipa::path(
    get,
    path = "/api/v1/cluster",
    operation_id = "getCluster",
    tag = "operations",
    security(("bearer" = [])),
    responses((status = 200, description = "The nodes and their sessions", body = ClusterView))
)]
#[get("/cluster")]
pub async fn view(state: web::Data<AppState>, _user: AuthUser) -> Result<HttpResponse, ApiError> {
    let settings = &state.settings;
    let view = match state.sessions.cluster() {
        None => ClusterView {
            mode: "single".into(),
            node_id: settings.node_id.clone(),
            nodes: vec![NodeRecord {
                node_id: settings.node_id.clone(),
                advertise_url: settings.advertise_url.clone(),
                sessions: state.sessions.running(),
            }],
        },
        Some(cluster) => ClusterView {
            mode: "cluster".into(),
            node_id: cluster.node_id().to_owned(),
            nodes: cluster.nodes().await.map_err(ApiError::Unavailable)?,
        },
    };
    Ok(HttpResponse::Ok().json(view))
}
