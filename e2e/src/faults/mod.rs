//! The fault proxy: a reverse proxy between a client (Ramp, kubectl, a test) and the API server
//! that adds latency, answers a share of requests with `500` or `429`, cuts watch streams, and
//! records every request (time, method, path, user agent, status, injected fault).
//!
//! ```text
//!  client ──http──▶ FaultProxy (127.0.0.1:random) ──https──▶ kube-apiserver
//!                      │ latency, 500/429, cut watches      (kube::Client: TLS, auth)
//!                      └─▶ request log (in memory, optional JSON-lines file)
//! ```
//!
//! Clients talk plain HTTP to the proxy. A request carrying an `Authorization` header is
//! forwarded with it (so service-account tokens keep their identity); one without is forwarded
//! with the upstream kubeconfig's credentials (client certificates, exec plugins…). The proxy
//! works in front of any cluster the upstream `kube::Config` reaches, not only the local one.
//!
//! Tests prove things from the log, e.g. "no write from user agent B while A held the lease":
//! [`FaultProxy::requests`] returns every [`RequestRecord`]; [`FaultProxy::set_faults`] changes
//! the faults while it runs. The spec syntax is in [`spec`].

pub mod spec;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use spec::{Decision, FaultSpec};

use crate::cluster::kubeconfig::{kubeconfig_yaml, write_atomically};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("binding the fault proxy to a loopback port: {0}")]
    Bind(std::io::Error),
    #[error("building the upstream client: {0}")]
    Upstream(kube::Error),
    #[error("request log {path}: {source}")]
    LogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the proxy's kubeconfig: {0}")]
    Kubeconfig(String),
}

/// What the proxy did to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InjectedFault {
    /// Answered `500 Internal Server Error` without reaching the API server.
    Error,
    /// Answered `429 Too Many Requests` without reaching the API server.
    Throttle,
}

/// One request through the proxy.
#[derive(Clone, Debug, Serialize)]
pub struct RequestRecord {
    /// Sequence number, from 0.
    pub seq: u64,
    /// When the request arrived.
    pub at: Timestamp,
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub user_agent: String,
    /// Status answered (502 when the API server could not be reached).
    pub status: u16,
    /// Whether this was a watch (`watch=true` / `watch=1` in the query).
    pub watch: bool,
    pub injected: Option<InjectedFault>,
    /// Time to the response headers, including injected latency.
    pub took: Duration,
}

impl RequestRecord {
    /// POST, PUT, PATCH or DELETE.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

/// Counters since the proxy started.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub requests: AtomicU64,
    pub errors_injected: AtomicU64,
    pub throttles_injected: AtomicU64,
    pub watches_cut: AtomicU64,
    pub upstream_failures: AtomicU64,
}

struct ProxyState {
    spec: RwLock<FaultSpec>,
    rng: Mutex<fastrand::Rng>,
    log: Mutex<Vec<RequestRecord>>,
    log_file: Mutex<Option<std::fs::File>>,
    stats: ProxyStats,
    /// Forwards the client's own Authorization header.
    passthrough: kube::Client,
    /// Adds the upstream kubeconfig's credentials.
    authenticated: kube::Client,
}

/// A running fault proxy; dropping it stops it.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    task: JoinHandle<()>,
    kubeconfig: Mutex<Option<PathBuf>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Starts a proxy on a random loopback port in front of the cluster `upstream` reaches.
    pub async fn start(upstream: kube::Config, spec: FaultSpec) -> Result<Self, FaultError> {
        crate::install_crypto_provider();
        let mut authenticated = upstream.clone();
        // The proxy must be transparent: the client under test decides whether to retry.
        authenticated.default_retry = false;
        let mut passthrough = authenticated.clone();
        passthrough.auth_info = Default::default();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(FaultError::Bind)?;
        let addr = listener.local_addr().map_err(FaultError::Bind)?;
        let rng = spec
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let state = Arc::new(ProxyState {
            spec: RwLock::new(spec),
            rng: Mutex::new(rng),
            log: Mutex::new(Vec::new()),
            log_file: Mutex::new(None),
            stats: ProxyStats::default(),
            passthrough: kube::Client::try_from(passthrough).map_err(FaultError::Upstream)?,
            authenticated: kube::Client::try_from(authenticated).map_err(FaultError::Upstream)?,
        });
        let task = tokio::spawn(serve(listener, state.clone()));
        Ok(FaultProxy {
            addr,
            state,
            task,
            kubeconfig: Mutex::new(None),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The current faults.
    pub fn faults(&self) -> FaultSpec {
        self.state
            .spec
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the faults; requests arriving from now on see the new ones (a seed in the new
    /// spec reseeds the random choices).
    pub fn set_faults(&self, spec: FaultSpec) {
        if let Some(seed) = spec.seed {
            *self
                .state
                .rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = fastrand::Rng::with_seed(seed);
        }
        *self
            .state
            .spec
            .write()
            .unwrap_or_else(PoisonError::into_inner) = spec;
    }

    /// Every request so far, in arrival order of their answers.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the recorded requests (counters keep counting).
    pub fn clear_requests(&self) {
        self.state
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    pub fn stats(&self) -> &ProxyStats {
        &self.state.stats
    }

    /// Also appends every request to `path` as one JSON object per line.
    pub fn log_to_file(&self, path: &Path) -> Result<(), FaultError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| FaultError::LogFile {
                path: path.to_path_buf(),
                source,
            })?;
        *self
            .state
            .log_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(file);
        Ok(())
    }

    /// Writes a kubeconfig pointing at the proxy; with `token`, clients send it (and it is
    /// passed through), without, the proxy adds the upstream credentials.
    pub fn write_kubeconfig(&self, path: &Path, token: Option<&str>) -> Result<(), FaultError> {
        write_atomically(path, &kubeconfig_yaml(&self.url(), None, token, None))
            .map_err(|e| FaultError::Kubeconfig(e.to_string()))?;
        *self
            .kubeconfig
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(path.to_path_buf());
        Ok(())
    }

    /// The kubeconfig last written by [`Self::write_kubeconfig`].
    pub fn kubeconfig_path(&self) -> Option<PathBuf> {
        self.kubeconfig
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A client through the proxy, with `token` (or the upstream credentials when None).
    pub fn client(&self, token: Option<&str>) -> Result<kube::Client, FaultError> {
        let uri: http::Uri = self
            .url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| FaultError::Kubeconfig(e.to_string()))?;
        let mut config = kube::Config::new(uri);
        if let Some(token) = token {
            config.auth_info.token = Some(token.to_string().into());
        }
        kube::Client::try_from(config).map_err(FaultError::Upstream)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, state: Arc<ProxyState>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "fault proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(state.clone(), request));
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "fault proxy connection ended");
            }
        });
    }
}

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// `watch=true` or `watch=1` in a query string.
pub fn is_watch_query(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| matches!(pair, "watch=true" | "watch=1" | "watch=True"))
    })
}

async fn handle(
    state: Arc<ProxyState>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let began = Instant::now();
    let at = Timestamp::now();
    let spec = state
        .spec
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let watch = is_watch_query(request.uri().query());
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !spec.latency.is_zero() {
        tokio::time::sleep(spec.latency).await;
    }
    let draw = state
        .rng
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .f64();
    let (response, injected) = match spec.decide(draw) {
        Decision::AnswerError => {
            state.stats.errors_injected.fetch_add(1, Ordering::Relaxed);
            (
                status_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "injected by the fault proxy",
                ),
                Some(InjectedFault::Error),
            )
        }
        Decision::AnswerThrottled => {
            state
                .stats
                .throttles_injected
                .fetch_add(1, Ordering::Relaxed);
            let mut response = status_response(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "throttled by the fault proxy",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            (response, Some(InjectedFault::Throttle))
        }
        Decision::Forward => (
            forward(&state, request, if watch { spec.cut_watch } else { None }).await,
            None,
        ),
    };
    let record = RequestRecord {
        seq: state.stats.requests.fetch_add(1, Ordering::Relaxed),
        at,
        method,
        path,
        user_agent,
        status: response.status().as_u16(),
        watch,
        injected,
        took: began.elapsed(),
    };
    if let Some(file) = state
        .log_file
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
        && let Ok(line) = serde_json::to_string(&record)
        && let Err(error) = writeln!(file, "{line}")
    {
        tracing::warn!(%error, "could not append to the request log file");
    }
    state
        .log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(record);
    Ok(response)
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
    .to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn forward(
    state: &Arc<ProxyState>,
    request: Request<Incoming>,
    cut_after: Option<Duration>,
) -> Response<ProxyBody> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            state
                .stats
                .upstream_failures
                .fetch_add(1, Ordering::Relaxed);
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("reading the request body: {error}"),
            );
        }
    };
    let client = if parts.headers.contains_key(header::AUTHORIZATION) {
        &state.passthrough
    } else {
        &state.authenticated
    };
    let mut upstream = Request::builder().method(parts.method.clone()).uri(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    if let Some(headers) = upstream.headers_mut() {
        copy_end_to_end(&parts.headers, headers);
    }
    let upstream = match upstream.body(kube::client::Body::from(body)) {
        Ok(request) => request,
        Err(error) => {
            return status_response(StatusCode::BAD_REQUEST, "BadRequest", &error.to_string());
        }
    };
    let response = match client.send(upstream).await {
        Ok(response) => response,
        Err(error) => {
            state
                .stats
                .upstream_failures
                .fetch_add(1, Ordering::Relaxed);
            return status_response(
                StatusCode::BAD_GATEWAY,
                "ServiceUnavailable",
                &format!("fault proxy: API server unreachable: {error}"),
            );
        }
    };
    let (parts, body) = response.into_parts();
    let body: ProxyBody = match cut_after {
        None => body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
        Some(after) => cut_stream(body, after, state.clone()),
    };
    let mut builder = Response::builder().status(parts.status);
    if let Some(headers) = builder.headers_mut() {
        copy_end_to_end(&parts.headers, headers);
        headers.remove(HeaderName::from_static("content-length"));
    }
    builder.body(body).unwrap_or_else(|error| {
        status_response(
            StatusCode::BAD_GATEWAY,
            "InternalError",
            &format!("fault proxy: building the response: {error}"),
        )
    })
}

#[derive(Debug, thiserror::Error)]
#[error("watch cut by the fault proxy")]
struct WatchCut;

/// The body, aborted (an error frame, so the connection drops) `after` from now unless it ended
/// before.
fn cut_stream(body: kube::client::Body, after: Duration, state: Arc<ProxyState>) -> ProxyBody {
    let deadline = Box::pin(tokio::time::sleep(after));
    let frames = body.into_data_stream();
    let stream = futures::stream::unfold(
        (frames, deadline, false, state),
        |(mut frames, mut deadline, finished, state)| async move {
            if finished {
                return None;
            }
            tokio::select! {
                _ = &mut deadline => {
                    state.stats.watches_cut.fetch_add(1, Ordering::Relaxed);
                    Some((Err(Box::new(WatchCut) as BoxError), (frames, deadline, true, state)))
                }
                frame = frames.next() => match frame {
                    None => None,
                    Some(Ok(bytes)) => Some((Ok(Frame::data(bytes)), (frames, deadline, false, state))),
                    Some(Err(error)) => Some((Err(Box::new(error) as BoxError), (frames, deadline, true, state))),
                },
            }
        },
    );
    BodyExt::boxed_unsync(StreamBody::new(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_watch_queries() {
        assert!(is_watch_query(Some("watch=true&resourceVersion=5")));
        assert!(is_watch_query(Some("labelSelector=a&watch=1")));
        assert!(!is_watch_query(Some("watchful=true")));
        assert!(!is_watch_query(None));
    }

    #[test]
    fn hop_by_hop_headers_are_not_copied() {
        let mut from = HeaderMap::new();
        from.insert(header::CONNECTION, HeaderValue::from_static("close"));
        from.insert(header::HOST, HeaderValue::from_static("127.0.0.1:1"));
        from.insert(header::USER_AGENT, HeaderValue::from_static("ramp/1"));
        let mut to = HeaderMap::new();
        copy_end_to_end(&from, &mut to);
        assert_eq!(to.len(), 1);
        assert_eq!(to[header::USER_AGENT], "ramp/1");
    }

    #[test]
    fn records_know_writes() {
        let record = |method: &str| RequestRecord {
            seq: 0,
            at: Timestamp::UNIX_EPOCH,
            method: method.into(),
            path: "/".into(),
            user_agent: String::new(),
            status: 200,
            watch: false,
            injected: None,
            took: Duration::ZERO,
        };
        assert!(record("PATCH").is_write());
        assert!(!record("GET").is_write());
    }
}
