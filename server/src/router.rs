//! The route table and the listener: where every request goes.
//!
//! - Label Studio protocol ([`crate::protocol`]): `/`, `/health`, `/setup`,
//!   `/predict`, `/webhook`, `/versions`, also under `/backends/{name}/`.
//! - Admin ([`crate::admin`]): `POST /configure`, `GET /backends`,
//!   `GET|PUT|DELETE /backends/{name}`.
//! - `GET /metrics`: Prometheus text, behind the same basic auth as the
//!   protocol routes when that is configured.
//! - `GET /livez` (the process answers) and `GET /readyz` (it has synced
//!   with the backend store and built that snapshot's backends): probes
//!   for orchestrators, open because they reveal nothing.
//!
//! Every route shares one [`AppState`]; every request gets an
//! `x-request-id` (its own, or a fresh one) echoed on the response, and
//! every response names the replica that gave it (`x-replica-id`).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::app::AppState;

/// Header naming the replica that answered.
pub const REPLICA_HEADER: HeaderName = HeaderName::from_static("x-replica-id");

/// The whole route table.
pub fn router(state: AppState) -> Router {
    // The CLI accepts only ids that are header-safe.
    let replica = HeaderValue::from_str(state.follower.replica())
        .unwrap_or_else(|_| HeaderValue::from_static("invalid-replica-id"));
    Router::new()
        .merge(crate::protocol::routes(state.clone()))
        .merge(crate::admin::routes(state.clone()))
        .route(
            "/metrics",
            get(metrics).route_layer(axum::middleware::from_fn_with_state(
                state.config.access.clone(),
                crate::auth::basic_auth,
            )),
        )
        .route("/livez", get(|| async { "live" }))
        .route("/readyz", get(ready))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            REPLICA_HEADER,
            replica,
        ))
        // Layers wrap outward: a request without `x-request-id` gets a fresh
        // id first, then the propagate layer echoes it on the response.
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        ))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state
            .metrics
            .render(&state.backends, in_flight_predicts(&state)),
    )
        .into_response()
}

/// Predict slots taken: requests between admission and their answer.
fn in_flight_predicts(state: &AppState) -> usize {
    state
        .config
        .max_concurrent_predicts
        .saturating_sub(state.predict_slots.available_permits())
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.follower.is_synced() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first sync with the backend store has not completed",
        )
            .into_response()
    }
}

/// Serves [`router`]`(state)` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
