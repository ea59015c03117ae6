//! Request headers and credentials shared by the prometheus and web providers: the metric's
//! `headers`, and `authentication` as basic auth or an OAuth2 client-credentials token.
//! Credentials usually come from `{{args.x}}` args backed by Secrets; they end up in request
//! headers only, never in logs or status.

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};

use super::ProviderError;
use crate::api::{Authentication, WebMetricHeader};

/// Reads the metric's headers, rejecting names or values HTTP cannot carry.
pub fn headers(
    field: &str,
    headers: Option<&Vec<WebMetricHeader>>,
) -> Result<Vec<(HeaderName, HeaderValue)>, ProviderError> {
    headers
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, header)| {
            let name = HeaderName::from_bytes(header.key.trim().as_bytes()).map_err(|_| {
                ProviderError::Config(format!(
                    "{field}.headers[{i}].key {:?} is not a valid HTTP header name",
                    header.key
                ))
            })?;
            let mut value = HeaderValue::from_str(&header.value).map_err(|_| {
                ProviderError::Config(format!(
                    "{field}.headers[{i}].value (of {}) is not a valid HTTP header value",
                    header.key
                ))
            })?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

/// The `Authorization` header the metric's `authentication` asks for, if any. OAuth2 fetches
/// a token with the client-credentials grant first.
pub async fn authorization(
    http: &reqwest::Client,
    field: &str,
    authentication: Option<&Authentication>,
    timeout: Duration,
) -> Result<Option<(HeaderName, HeaderValue)>, ProviderError> {
    let Some(auth) = authentication else {
        return Ok(None);
    };
    if auth.sigv4.is_some() {
        return Err(ProviderError::Unsupported(format!(
            "{field}.authentication.sigv4"
        )));
    }
    let value = if let Some(basic) = &auth.basic_auth {
        let username = basic.username.as_deref().unwrap_or("");
        if username.is_empty() {
            return Err(ProviderError::Config(format!(
                "{field}.authentication.basicAuth needs a username"
            )));
        }
        let password = basic.password.as_deref().unwrap_or("");
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        format!("Basic {token}")
    } else if let Some(oauth2) = &auth.oauth2 {
        let required = |name: &str, value: &Option<String>| {
            value.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
                ProviderError::Config(format!("{field}.authentication.oauth2 needs {name}"))
            })
        };
        let token_url = required("tokenUrl", &oauth2.token_url)?;
        let client_id = required("clientId", &oauth2.client_id)?;
        let client_secret = required("clientSecret", &oauth2.client_secret)?;
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ];
        if let Some(scopes) = oauth2.scopes.as_ref().filter(|s| !s.is_empty()) {
            form.push(("scope", scopes.join(" ")));
        }
        let response = http
            .post(&token_url)
            .form(&form)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                ProviderError::Request(format!("requesting an OAuth2 token from {token_url}: {e}"))
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(ProviderError::Response(format!(
                "the OAuth2 token endpoint {token_url} answered {status}"
            )));
        }
        let body: serde_json::Value = response.json().await.map_err(|e| {
            ProviderError::Response(format!("reading the OAuth2 token from {token_url}: {e}"))
        })?;
        let token = body["access_token"].as_str().ok_or_else(|| {
            ProviderError::Response(format!(
                "the OAuth2 token endpoint {token_url} gave no access_token"
            ))
        })?;
        format!("Bearer {token}")
    } else {
        return Ok(None);
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        ProviderError::Config(format!(
            "{field}.authentication gives credentials HTTP cannot carry"
        ))
    })?;
    value.set_sensitive(true);
    Ok(Some((AUTHORIZATION, value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BasicAuth;

    #[test]
    fn headers_are_checked() {
        let list = vec![
            WebMetricHeader {
                key: "X-Scope".into(),
                value: "team-a".into(),
            },
            WebMetricHeader {
                key: "bad header".into(),
                value: "x".into(),
            },
        ];
        let err = headers("web", Some(&list)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "web.headers[1].key \"bad header\" is not a valid HTTP header name"
        );
        let ok = headers("web", Some(&list[..1].to_vec())).unwrap();
        assert_eq!(ok[0].0.as_str(), "x-scope");
        assert!(headers("web", None).unwrap().is_empty());
        let bad_value = vec![WebMetricHeader {
            key: "Authorization".into(),
            value: "Bearer a\nb".into(),
        }];
        let err = headers("web", Some(&bad_value)).unwrap_err().to_string();
        assert!(!err.contains("Bearer"), "values are never echoed: {err}");
    }

    #[tokio::test]
    async fn basic_auth() {
        crate::providers::install_crypto();
        let http = reqwest::Client::new();
        let auth = Authentication {
            basic_auth: Some(BasicAuth {
                username: Some("user".into()),
                password: Some("pass".into()),
            }),
            ..Default::default()
        };
        let (name, value) = authorization(&http, "prometheus", Some(&auth), Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(name, AUTHORIZATION);
        assert_eq!(value.to_str().unwrap(), "Basic dXNlcjpwYXNz");
        assert!(value.is_sensitive());
        let no_user = Authentication {
            basic_auth: Some(BasicAuth::default()),
            ..Default::default()
        };
        assert!(
            authorization(&http, "prometheus", Some(&no_user), Duration::from_secs(1))
                .await
                .is_err()
        );
        assert!(
            authorization(&http, "prometheus", None, Duration::from_secs(1))
                .await
                .unwrap()
                .is_none()
        );
    }
}
