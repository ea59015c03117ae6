//! Talking to the cluster's etcd directly, through its v3 JSON gateway: reading the current
//! revision and compacting history, which (with the API server's watch cache off) makes watches
//! from an older resourceVersion fail with a real `410 Gone` / "too old resource version".

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::ClusterError;

async fn post(
    endpoint: &str,
    path: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, ClusterError> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("{endpoint}{path}");
    let failed = |message: String| ClusterError::Etcd {
        url: url.clone(),
        message,
    };
    let request = http::Request::post(&url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| failed(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(failed(format!(
            "{status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| failed(format!("unreadable answer: {e}")))
}

/// The store's current revision.
pub async fn current_revision(endpoint: &str) -> Result<i64, ClusterError> {
    let key = base64::engine::general_purpose::STANDARD.encode("/");
    let answer = post(
        endpoint,
        "/v3/kv/range",
        serde_json::json!({ "key": key, "limit": 1 }),
    )
    .await?;
    revision_of(&answer).ok_or_else(|| ClusterError::Etcd {
        url: format!("{endpoint}/v3/kv/range"),
        message: format!("no header.revision in {answer}"),
    })
}

fn revision_of(answer: &serde_json::Value) -> Option<i64> {
    // The gateway renders int64 as a JSON string.
    match &answer["header"]["revision"] {
        serde_json::Value::String(text) => text.parse().ok(),
        serde_json::Value::Number(number) => number.as_i64(),
        _ => None,
    }
}

/// Compacts all history before the current revision; returns that revision.
pub async fn compact(endpoint: &str) -> Result<i64, ClusterError> {
    let revision = current_revision(endpoint).await?;
    post(
        endpoint,
        "/v3/kv/compaction",
        serde_json::json!({ "revision": revision.to_string(), "physical": true }),
    )
    .await?;
    Ok(revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_revision_as_string_or_number() {
        assert_eq!(
            revision_of(&serde_json::json!({"header": {"revision": "42"}})),
            Some(42)
        );
        assert_eq!(
            revision_of(&serde_json::json!({"header": {"revision": 7}})),
            Some(7)
        );
        assert_eq!(revision_of(&serde_json::json!({})), None);
    }
}
