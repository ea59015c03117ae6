//! The controller's HTTP endpoints: `/metrics` (Prometheus text) on the metrics address,
//! `/healthz` and `/readyz` on the health address, plus any extra routes (the GitOps webhook)
//! merged onto the health server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::metrics::{CONTENT_TYPE, render};

/// Whether the controller is ready (its caches hold a complete first list), or what it
/// still waits for.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Binds both servers (so a taken port fails at start) and returns the tasks serving them.
pub async fn serve(
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
    registry: Arc<Mutex<Registry>>,
    ready: Readiness,
    extra: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + Clone + 'static,
) -> std::io::Result<(
    SocketAddr,
    SocketAddr,
    tokio::task::JoinSet<std::io::Result<()>>,
)> {
    let metrics_listener = TcpListener::bind(metrics_addr).await?;
    let health_listener = TcpListener::bind(health_addr).await?;
    let bound = (
        metrics_listener.local_addr()?,
        health_listener.local_addr()?,
    );
    let metrics = Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(registry);
    let health = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(ready)
        .merge(extra);
    let mut servers = tokio::task::JoinSet::new();
    let stop = shutdown.clone();
    servers.spawn(async move {
        axum::serve(metrics_listener, metrics)
            .with_graceful_shutdown(stop)
            .await
    });
    servers.spawn(async move {
        axum::serve(health_listener, health)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((bound.0, bound.1, servers))
}

async fn metrics_handler(State(registry): State<Arc<Mutex<Registry>>>) -> impl IntoResponse {
    let text = match registry.lock() {
        Ok(registry) => render(&registry),
        Err(_) => Err(std::fmt::Error),
    };
    match text {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "encoding metrics failed".to_string(),
        ),
    }
}

async fn ready_handler(State(ready): State<Readiness>) -> (StatusCode, String) {
    match ready() {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(waiting) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("still loading: {waiting}"),
        ),
    }
}
