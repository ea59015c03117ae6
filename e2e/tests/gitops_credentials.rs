//! Repository credentials over HTTP: a smart-HTTP Git server that demands Basic
//! authentication (the real `git http-backend` behind it) is fetched with Ramp's Git backend,
//! as the GitOps reconciler does with an Argo CD repository Secret's `username`/`password`.

use std::sync::atomic::{AtomicBool, Ordering};

use ramp_controller::gitops::git::{Credentials, GitBackend, GixBackend};
use ramp_e2e::fixtures::git::GitRepo;
use ramp_e2e::fixtures::git_http::GitHttpServer;

const USER: &str = "deploy-bot";
const PASSWORD: &str = "pw-5d1c-marker";

fn repo_with_a_commit() -> (GitRepo, String) {
    ramp_e2e::install_crypto_provider();
    let repo = GitRepo::new().expect("a repository");
    repo.write(
        "app/service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n",
    )
    .expect("a file");
    let commit = repo.commit("first").expect("a commit");
    (repo, commit)
}

fn credentials(password: &str) -> Credentials {
    Credentials {
        username: Some(USER.into()),
        password: Some(password.into()),
        ..Credentials::default()
    }
}

#[test]
fn username_and_password_are_sent_and_the_commit_is_fetched() {
    let (repo, commit) = repo_with_a_commit();
    let server = GitHttpServer::serve(&repo, USER, PASSWORD).expect("a git http server");
    let cache = tempfile::tempdir().expect("a cache directory");
    let backend = GixBackend::new(cache.path());
    let fetched = backend
        .fetch(
            &server.url(),
            "main",
            Some(&credentials(PASSWORD)),
            &AtomicBool::new(false),
        )
        .unwrap_or_else(|e| panic!("fetching {} with credentials: {e}", server.url()));
    assert_eq!(fetched, commit, "main resolves to the pushed commit");
    assert!(
        server.seen().authorized.load(Ordering::Relaxed) >= 1,
        "the server saw the credentials"
    );
    let files = backend
        .files(&server.url(), &commit, "app")
        .expect("the fetched files");
    assert_eq!(files.len(), 1, "one manifest under app/");
}

#[test]
fn a_wrong_password_is_a_fetch_error_naming_the_url_not_the_password() {
    let (repo, _) = repo_with_a_commit();
    let server = GitHttpServer::serve(&repo, USER, PASSWORD).expect("a git http server");
    let cache = tempfile::tempdir().expect("a cache directory");
    let backend = GixBackend::new(cache.path());
    let wrong = "not-the-pw-77e0";
    let error = backend
        .fetch(
            &server.url(),
            "main",
            Some(&credentials(wrong)),
            &AtomicBool::new(false),
        )
        .expect_err("a wrong password must not fetch")
        .to_string();
    assert!(error.contains(&server.url()), "names the remote: {error}");
    assert!(
        !error.contains(wrong),
        "does not show the password: {error}"
    );
    assert_eq!(server.seen().authorized.load(Ordering::Relaxed), 0);
    assert!(server.seen().refused.load(Ordering::Relaxed) >= 1);

    let error = backend
        .fetch(&server.url(), "main", None, &AtomicBool::new(false))
        .expect_err("no credentials must not fetch")
        .to_string();
    assert!(error.contains(&server.url()), "names the remote: {error}");
}
