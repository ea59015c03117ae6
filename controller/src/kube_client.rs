//! The Kubernetes client Ramp talks through: kube's default stack, with `TCP_NODELAY` set on
//! every connection to the API server.
//!
//! kube's own builder leaves Nagle's algorithm on. A request whose head and body leave in
//! separate segments then waits for the API server's delayed ACK (40 ms on Linux) before its
//! body is sent, so a single small patch — the Service selector of an abort, a status write —
//! took ~50 ms on an idle loopback connection instead of a few. Abort latency is a figure
//! Ramp is measured on, and the fix is one socket option; everything else here is kube's
//! default stack (base URI, retries of 429/503/504 honouring `Retry-After`, authentication,
//! extra headers, connect and write timeouts).

use std::time::Duration;

use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::retry::RetryPolicy;
use kube::client::{ClientBuilder, ConfigExt, DynBody};
use tower::retry::RetryLayer;
use tower::util::BoxService;
use tower::{BoxError, ServiceBuilder, ServiceExt as _};

/// The service type kube's own builder produces, so callers layer it the same way.
pub type ApiService =
    BoxService<http::Request<kube::client::Body>, http::Response<Box<DynBody>>, BoxError>;

/// A client builder for `config` with `TCP_NODELAY` on; add layers, then `.build()`.
pub fn builder(config: &kube::Config) -> Result<ClientBuilder<ApiService>, kube::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Builder::new(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);

    let retry = config
        .default_retry
        .then(|| RetryLayer::new(RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(client)
        .map_response(|response| {
            response.map(|body| {
                Box::new(http_body_util::BodyExt::map_err(body, BoxError::from)) as Box<DynBody>
            })
        })
        .boxed();
    Ok(ClientBuilder::new(
        service,
        config.default_namespace.clone(),
    ))
}

/// A client for `config` with `TCP_NODELAY` on and no extra layers.
pub fn client(config: &kube::Config) -> Result<kube::Client, kube::Error> {
    Ok(builder(config)?.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn builds_for_an_https_server_and_names_it() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
        let client = client(&config).expect("a client for an https URL");
        // Nothing listens on port 1: the error is the connection's, not the builder's.
        let err = client.apiserver_version().await.unwrap_err();
        assert!(
            matches!(err, kube::Error::HyperError(_) | kube::Error::Service(_)),
            "unexpected error: {err:?}"
        );
    }
}
