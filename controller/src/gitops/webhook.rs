//! `POST /api/webhook`: GitHub and GitLab push events refresh the matching Applications at
//! once instead of at the next poll.
//!
//! With a shared secret configured, a request must carry GitHub's `X-Hub-Signature-256`
//! (HMAC-SHA256 of the body) or GitLab's `X-Gitlab-Token`; both are checked in constant time.
//! Without one, any push is accepted (a push only triggers a fetch, never a change of what
//! is deployed). Bodies are capped in size.

use std::fmt;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::broadcast;

use super::git::normalize_repo_url;

/// Largest accepted payload.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;

/// A push to a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushEvent {
    /// The repository's URLs (web, HTTPS and SSH clone URLs), normalised.
    pub urls: Vec<String>,
    /// Pushed branch or tag, without `refs/heads/` or `refs/tags/`.
    pub revision: String,
    /// The repository's default branch, when the payload names it.
    pub default_branch: Option<String>,
}

impl PushEvent {
    /// Whether this push may change what an application with this source resolves to.
    pub fn concerns(&self, repo_url: &str, target_revision: &str) -> bool {
        let url = normalize_repo_url(repo_url);
        if !self.urls.contains(&url) {
            return false;
        }
        let target = target_revision
            .trim()
            .trim_start_matches("refs/heads/")
            .trim_start_matches("refs/tags/");
        match target {
            "" | "HEAD" => self
                .default_branch
                .as_deref()
                .is_none_or(|d| d == self.revision),
            other => other == self.revision || looks_like_commit(other),
        }
    }
}

/// A pinned commit never moves, but an abbreviated one may only now be fetchable.
fn looks_like_commit(revision: &str) -> bool {
    revision.len() >= 7 && revision.len() <= 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Fan-out of push events from the webhook to the reconciler.
#[derive(Clone)]
pub struct PushEvents {
    sender: broadcast::Sender<PushEvent>,
}

impl Default for PushEvents {
    fn default() -> Self {
        PushEvents {
            sender: broadcast::channel(256).0,
        }
    }
}

impl fmt::Debug for PushEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushEvents")
            .field("subscribers", &self.sender.receiver_count())
            .finish()
    }
}

impl PushEvents {
    /// Publishes an event to every subscriber.
    pub fn publish(&self, event: PushEvent) {
        // No subscriber yet (the reconciler is starting): the next poll catches up.
        let _ = self.sender.send(event);
    }

    /// Receives events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PushEvent> {
        self.sender.subscribe()
    }
}

/// Why a webhook request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Secret configured, signature or token missing or wrong.
    #[error("missing or invalid webhook signature (X-Hub-Signature-256 or X-Gitlab-Token)")]
    Unauthorized,
    /// Not a push event from a supported provider.
    #[error("unsupported event: only GitHub and GitLab push events are handled")]
    Unsupported,
    /// The body is not a push payload.
    #[error("invalid push payload: {0}")]
    Invalid(String),
}

/// Checks the request's signature against `secret`.
pub fn verify(secret: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    if let Some(signature) = header(headers, "x-hub-signature-256") {
        let hex = signature
            .strip_prefix("sha256=")
            .ok_or(WebhookError::Unauthorized)?;
        let tag = decode_hex(hex).ok_or(WebhookError::Unauthorized)?;
        return ring::hmac::verify(&key, body, &tag).map_err(|_| WebhookError::Unauthorized);
    }
    if let Some(token) = header(headers, "x-gitlab-token") {
        // Comparing MACs of both values keeps the comparison constant-time.
        let expected = ring::hmac::sign(&key, secret.as_bytes());
        return ring::hmac::verify(&key, token.as_bytes(), expected.as_ref())
            .map_err(|_| WebhookError::Unauthorized);
    }
    Err(WebhookError::Unauthorized)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parses a push event; `Ok(None)` for events that need no action (GitHub's ping).
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Option<PushEvent>, WebhookError> {
    let payload =
        || serde_json::from_slice::<Value>(body).map_err(|e| WebhookError::Invalid(e.to_string()));
    if let Some(event) = header(headers, "x-github-event") {
        return match event {
            "ping" => Ok(None),
            "push" => push_event(
                &payload()?,
                "repository",
                &["html_url", "clone_url", "ssh_url", "git_url", "url"],
            )
            .map(Some),
            _ => Err(WebhookError::Unsupported),
        };
    }
    if let Some(event) = header(headers, "x-gitlab-event") {
        return match event {
            "Push Hook" | "Tag Push Hook" | "System Hook" => push_event(
                &payload()?,
                "project",
                &[
                    "web_url",
                    "git_http_url",
                    "git_ssh_url",
                    "http_url",
                    "ssh_url",
                ],
            )
            .map(Some),
            _ => Err(WebhookError::Unsupported),
        };
    }
    Err(WebhookError::Unsupported)
}

fn push_event(
    payload: &Value,
    repository_field: &str,
    url_fields: &[&str],
) -> Result<PushEvent, WebhookError> {
    let reference = payload
        .get("ref")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::Invalid("no \"ref\" field".into()))?;
    let revision = reference
        .strip_prefix("refs/heads/")
        .or_else(|| reference.strip_prefix("refs/tags/"))
        .unwrap_or(reference)
        .to_owned();
    let repository = payload
        .get(repository_field)
        .ok_or_else(|| WebhookError::Invalid(format!("no {repository_field:?} field")))?;
    let mut urls: Vec<String> = url_fields
        .iter()
        .filter_map(|field| repository.get(*field).and_then(Value::as_str))
        .chain(
            payload
                .get("repository")
                .and_then(|r| r.get("git_http_url"))
                .and_then(Value::as_str),
        )
        .map(normalize_repo_url)
        .collect();
    urls.sort();
    urls.dedup();
    if urls.is_empty() {
        return Err(WebhookError::Invalid(format!(
            "{repository_field} carries no URL"
        )));
    }
    let default_branch = repository
        .get("default_branch")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(PushEvent {
        urls,
        revision,
        default_branch,
    })
}

#[derive(Clone)]
struct WebhookState {
    events: PushEvents,
    secret: Option<String>,
    max_payload_bytes: usize,
}

/// The webhook route, for the controller's HTTP server.
pub fn router(events: PushEvents, secret: Option<String>, max_payload_bytes: usize) -> Router {
    Router::new()
        .route("/api/webhook", post(handle))
        .layer(DefaultBodyLimit::max(max_payload_bytes))
        .with_state(WebhookState {
            events,
            secret,
            max_payload_bytes,
        })
}

async fn handle(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (StatusCode, String) {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "payload larger than {} bytes refused: push events are small; is this a push webhook?\n",
                    state.max_payload_bytes
                )
            } else {
                format!("unreadable request body: {rejection}\n")
            };
            tracing::warn!(%status, "webhook request refused: {}", message.trim_end());
            return (status, message);
        }
    };
    if let Err(error) = verify(state.secret.as_deref(), &headers, &body) {
        tracing::warn!(%error, "webhook request refused");
        return (StatusCode::UNAUTHORIZED, error.to_string());
    }
    match parse(&headers, &body) {
        Ok(Some(event)) => {
            tracing::info!(urls = ?event.urls, revision = %event.revision, "push received");
            state.events.publish(event);
            (StatusCode::OK, "refresh requested\n".into())
        }
        Ok(None) => (StatusCode::OK, "pong\n".into()),
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error}\n")),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    fn github_push() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "ref": "refs/heads/main",
            "repository": {
                "html_url": "https://github.com/Example/apps",
                "clone_url": "https://github.com/Example/apps.git",
                "ssh_url": "git@github.com:Example/apps.git",
                "default_branch": "main"
            }
        }))
        .expect("json")
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, body);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256={hex}")
    }

    #[test]
    fn github_push_matches_apps_on_any_url_form() {
        let event = parse(&headers(&[("x-github-event", "push")]), &github_push())
            .expect("parses")
            .expect("push");
        assert_eq!(event.revision, "main");
        assert!(event.concerns("https://github.com/example/apps.git", "HEAD"));
        assert!(event.concerns("git@github.com:example/apps.git", "main"));
        assert!(event.concerns("ssh://git@github.com/example/apps", ""));
        assert!(!event.concerns("https://github.com/example/apps", "release"));
        assert!(!event.concerns("https://github.com/example/other", "main"));
        assert!(
            parse(&headers(&[("x-github-event", "ping")]), b"{}")
                .expect("ping")
                .is_none()
        );
    }

    #[test]
    fn gitlab_push_and_tag_push() {
        let body = serde_json::to_vec(&json!({
            "ref": "refs/tags/v1.2.0",
            "project": {"web_url": "https://gitlab.com/group/apps", "git_ssh_url": "git@gitlab.com:group/apps.git", "default_branch": "main"}
        }))
        .expect("json");
        let event = parse(&headers(&[("x-gitlab-event", "Tag Push Hook")]), &body)
            .expect("parses")
            .expect("push");
        assert_eq!(event.revision, "v1.2.0");
        assert!(event.concerns("https://gitlab.com/group/apps.git", "v1.2.0"));
        assert!(!event.concerns("https://gitlab.com/group/apps.git", "HEAD"));
        assert_eq!(
            parse(&headers(&[("x-gitlab-event", "Issue Hook")]), &body),
            Err(WebhookError::Unsupported)
        );
        assert!(matches!(
            parse(&headers(&[("x-github-event", "push")]), b"{\"ref\": 1}"),
            Err(WebhookError::Invalid(_))
        ));
    }

    #[test]
    fn secrets_are_checked() {
        let body = github_push();
        assert_eq!(verify(None, &HeaderMap::new(), &body), Ok(()));
        let good = headers(&[("x-hub-signature-256", &sign("s3cret", &body))]);
        assert_eq!(verify(Some("s3cret"), &good, &body), Ok(()));
        let bad = headers(&[("x-hub-signature-256", &sign("other", &body))]);
        assert_eq!(
            verify(Some("s3cret"), &bad, &body),
            Err(WebhookError::Unauthorized)
        );
        assert_eq!(
            verify(Some("s3cret"), &HeaderMap::new(), &body),
            Err(WebhookError::Unauthorized)
        );
        assert_eq!(
            verify(
                Some("s3cret"),
                &headers(&[("x-gitlab-token", "s3cret")]),
                &body
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                Some("s3cret"),
                &headers(&[("x-gitlab-token", "s3cre")]),
                &body
            ),
            Err(WebhookError::Unauthorized)
        );
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let body = github_push();
        let good = sign("s3cret", &body);
        let unprefixed = good.trim_start_matches("sha256=").to_string();
        let truncated = good[..good.len() - 2].to_string();
        let odd = good[..good.len() - 1].to_string();
        let not_hex = format!("sha256={}", "zz".repeat(32));
        let sha1 = good.replace("sha256=", "sha1=");
        for signature in [
            &unprefixed,
            &truncated,
            &odd,
            &not_hex,
            &sha1,
            &String::new(),
        ] {
            assert_eq!(
                verify(
                    Some("s3cret"),
                    &headers(&[("x-hub-signature-256", signature)]),
                    &body
                ),
                Err(WebhookError::Unauthorized),
                "{signature:?}"
            );
        }
        // A signature of another body (a replayed header) does not verify this one.
        let mut tampered = body.clone();
        tampered.extend_from_slice(b" ");
        assert_eq!(
            verify(
                Some("s3cret"),
                &headers(&[("x-hub-signature-256", &good)]),
                &tampered
            ),
            Err(WebhookError::Unauthorized)
        );
        // A wrong GitHub signature is not rescued by a right GitLab token.
        assert_eq!(
            verify(
                Some("s3cret"),
                &headers(&[
                    ("x-hub-signature-256", &sign("other", &body)),
                    ("x-gitlab-token", "s3cret")
                ]),
                &body
            ),
            Err(WebhookError::Unauthorized)
        );
    }

    /// A webhook on a loopback port: its URL, what it publishes, and the server task.
    async fn serve(
        secret: Option<&str>,
        max_payload_bytes: usize,
    ) -> (
        String,
        broadcast::Receiver<PushEvent>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let events = PushEvents::default();
        let received = events.subscribe();
        let app = router(events, secret.map(str::to_string), max_payload_bytes);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        // Tests build HTTP clients themselves, so they install the crypto provider too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        (format!("http://{address}/api/webhook"), received, server)
    }

    /// Nothing was published (the refused request refreshed nothing).
    fn nothing_published(received: &mut broadcast::Receiver<PushEvent>) {
        assert!(
            matches!(
                received.try_recv(),
                Err(broadcast::error::TryRecvError::Empty)
            ),
            "a refused request published a push"
        );
    }

    #[tokio::test]
    async fn the_route_publishes_pushes_and_caps_payloads() {
        let (url, mut received, server) = serve(Some("s3cret"), 4096).await;
        let client = reqwest::Client::new();
        let body = github_push();
        let response = client
            .post(&url)
            .header("x-github-event", "push")
            .header("x-hub-signature-256", sign("s3cret", &body))
            .body(body.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        assert_eq!(received.recv().await.expect("event").revision, "main");
        let unsigned = client
            .post(&url)
            .header("x-github-event", "push")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(unsigned.status(), 401);
        nothing_published(&mut received);
        let huge = client
            .post(&url)
            .body(vec![b' '; 10_000])
            .send()
            .await
            .expect("request");
        assert_eq!(huge.status(), 413);
        nothing_published(&mut received);
        server.abort();
    }

    #[tokio::test]
    async fn refused_requests_refresh_nothing_and_say_why() {
        let (url, mut received, server) = serve(Some("s3cret"), 4096).await;
        let client = reqwest::Client::new();
        let body = github_push();

        // GitHub: a signature made with another secret, and none at all.
        for signature in [Some(sign("wrong", &body)), None] {
            let mut request = client.post(&url).header("x-github-event", "push");
            if let Some(signature) = &signature {
                request = request.header("x-hub-signature-256", signature);
            }
            let response = request.body(body.clone()).send().await.expect("request");
            assert_eq!(response.status(), 401, "{signature:?}");
            let text = response.text().await.expect("body");
            assert!(text.contains("X-Hub-Signature-256"), "{text}");
            nothing_published(&mut received);
        }

        // GitLab: a wrong token.
        let gitlab = serde_json::to_vec(&json!({
            "ref": "refs/heads/main",
            "project": {"web_url": "https://gitlab.com/group/apps"}
        }))
        .expect("json");
        let response = client
            .post(&url)
            .header("x-gitlab-event", "Push Hook")
            .header("x-gitlab-token", "s3cret-not")
            .body(gitlab.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 401);
        nothing_published(&mut received);
        let response = client
            .post(&url)
            .header("x-gitlab-event", "Push Hook")
            .header("x-gitlab-token", "s3cret")
            .body(gitlab)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        assert_eq!(received.recv().await.expect("event").revision, "main");

        // Oversize: refused before the signature is even looked at, correctly signed or not,
        // with or without a Content-Length.
        let mut oversize = github_push();
        oversize.extend(std::iter::repeat_n(b' ', 8192));
        let response = client
            .post(&url)
            .header("x-github-event", "push")
            .header("x-hub-signature-256", sign("s3cret", &oversize))
            .body(oversize.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 413);
        let text = response.text().await.expect("body");
        assert!(text.contains("larger than 4096 bytes"), "{text}");
        nothing_published(&mut received);
        let status = chunked_post(&url, &oversize, &sign("s3cret", &oversize)).await;
        assert!(status.starts_with("HTTP/1.1 413"), "{status}");
        nothing_published(&mut received);
        server.abort();
    }

    /// POSTs `body` signed with `signature` in 1 KiB chunks (no Content-Length); returns the
    /// response's status line.
    async fn chunked_post(url: &str, body: &[u8], signature: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = url
            .trim_start_matches("http://")
            .trim_end_matches("/api/webhook");
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let head = format!(
            "POST /api/webhook HTTP/1.1\r\nhost: {address}\r\nx-github-event: push\r\n\
             x-hub-signature-256: {signature}\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        for chunk in body.chunks(1024) {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
            // The server may answer and close before the whole body is sent.
            if stream.write_all(&framed).await.is_err() {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let mut answer = vec![0u8; 512];
        let read = stream.read(&mut answer).await.expect("read");
        String::from_utf8_lossy(&answer[..read])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }
}
