//! Repository credentials from Secrets, as Argo CD declares them: a Secret labelled
//! `argocd.argoproj.io/secret-type: repository` whose `url` is the repository, or one labelled
//! `repo-creds` whose `url` is a prefix of it (a credential template). An exact match wins
//! over a template, and the longest template wins among templates.

use k8s_openapi::api::core::v1::Secret;

use super::git::{Credentials, normalize_repo_url};

/// Label naming a Secret's role.
pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";

fn field(secret: &Secret, key: &str) -> Option<String> {
    if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(bytes.0.clone())
            .ok()
            .filter(|s| !s.is_empty());
    }
    secret
        .string_data
        .as_ref()?
        .get(key)
        .cloned()
        .filter(|s| !s.is_empty())
}

/// The credentials for `repo_url` among `secrets`, if any applies.
pub fn credentials_for(repo_url: &str, secrets: &[Secret]) -> Option<Credentials> {
    let wanted = normalize_repo_url(repo_url);
    let secret_type = |s: &Secret| s.metadata.labels.as_ref()?.get(SECRET_TYPE_LABEL).cloned();
    let exact = secrets.iter().find(|s| {
        secret_type(s).as_deref() == Some("repository")
            && field(s, "url").is_some_and(|url| normalize_repo_url(&url) == wanted)
    });
    let template = || {
        secrets
            .iter()
            .filter(|s| secret_type(s).as_deref() == Some("repo-creds"))
            .filter_map(|s| {
                let prefix = normalize_repo_url(&field(s, "url")?);
                wanted.starts_with(&prefix).then_some((prefix.len(), s))
            })
            .max_by_key(|(length, _)| *length)
            .map(|(_, s)| s)
    };
    let secret = exact.or_else(template)?;
    let credentials = Credentials {
        username: field(secret, "username"),
        password: field(secret, "password"),
        bearer_token: field(secret, "bearerToken"),
        ssh_private_key: field(secret, "sshPrivateKey"),
        insecure: field(secret, "insecure").is_some_and(|v| v == "true"),
        known_hosts: field(secret, "knownHosts"),
    };
    let has_any = credentials.password.is_some()
        || credentials.bearer_token.is_some()
        || credentials.ssh_private_key.is_some()
        || credentials.insecure;
    has_any.then_some(credentials)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(kind: &str, fields: &[(&str, &str)]) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.labels = Some(BTreeMap::from([(
            SECRET_TYPE_LABEL.to_owned(),
            kind.to_owned(),
        )]));
        secret.data = Some(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        secret
    }

    #[test]
    fn exact_repository_secrets_win_over_templates() {
        let secrets = [
            secret(
                "repo-creds",
                &[
                    ("url", "https://github.com/example"),
                    ("username", "org"),
                    ("password", "t1"),
                ],
            ),
            secret(
                "repository",
                &[
                    ("url", "https://github.com/example/apps.git"),
                    ("username", "bot"),
                    ("password", "t2"),
                ],
            ),
            secret(
                "repo-creds",
                &[("url", "https://github.com/"), ("password", "t0")],
            ),
        ];
        let apps =
            credentials_for("https://github.com/example/apps", &secrets).expect("credentials");
        assert_eq!(
            (apps.username.as_deref(), apps.password.as_deref()),
            (Some("bot"), Some("t2"))
        );
        let other =
            credentials_for("https://github.com/example/other", &secrets).expect("template");
        assert_eq!(other.password.as_deref(), Some("t1"));
        let elsewhere =
            credentials_for("https://github.com/someone/else", &secrets).expect("template");
        assert_eq!(elsewhere.password.as_deref(), Some("t0"));
        assert_eq!(credentials_for("https://gitlab.com/x/y", &secrets), None);
    }

    #[test]
    fn ssh_keys_and_unlabelled_secrets() {
        let ssh = secret(
            "repository",
            &[
                ("url", "git@github.com:example/apps.git"),
                ("sshPrivateKey", "KEY"),
            ],
        );
        let found = credentials_for("ssh://git@github.com/example/apps", &[ssh]).expect("ssh");
        assert_eq!(found.ssh_private_key.as_deref(), Some("KEY"));
        let mut unlabelled = secret(
            "repository",
            &[
                ("url", "https://github.com/example/apps"),
                ("password", "x"),
            ],
        );
        unlabelled.metadata.labels = None;
        assert_eq!(
            credentials_for("https://github.com/example/apps", &[unlabelled]),
            None
        );
    }
}
