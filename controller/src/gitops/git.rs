//! Git access: fetch a repository into a bare cache and read manifests from a commit.
//!
//! ```text
//!   GitBackend (blocking trait) ── GixBackend: one bare repo per URL under the cache dir,
//!        ▲                         a lock per URL, gix fetch of heads, tags and HEAD
//!        │ spawn_blocking + timeout (interrupts gix when it expires)
//!   Repositories (async) ── render cache: (url, commit, path, directory options) → files
//! ```
//!
//! Credentials never reach a log or an error message: [`Credentials`]' `Debug` is redacted
//! and errors name the URL only.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::render::SourceFile;

/// Largest manifest file read from Git; larger files are an error, not an allocation.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// Credentials for one repository, from a `argocd.argoproj.io/secret-type: repository` Secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// HTTP user name.
    pub username: Option<String>,
    /// HTTP password or access token.
    pub password: Option<String>,
    /// HTTP bearer token.
    pub bearer_token: Option<String>,
    /// SSH private key (PEM / OpenSSH format).
    pub ssh_private_key: Option<String>,
    /// Skip host key (ssh) checks.
    pub insecure: bool,
    /// `known_hosts` lines for ssh.
    pub known_hosts: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("bearer_token", &set(&self.bearer_token))
            .field("ssh_private_key", &set(&self.ssh_private_key))
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// Why Git access failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GitError {
    /// The remote could not be reached or refused the fetch.
    #[error("fetching {url} failed: {message}")]
    Fetch {
        /// Repository URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The revision names no branch, tag or commit.
    #[error("revision {revision:?} is not a branch, tag or commit of {url}")]
    UnknownRevision {
        /// Repository URL.
        url: String,
        /// The revision asked for.
        revision: String,
    },
    /// The path is not a directory at that commit.
    #[error("path {path:?} is not a directory at commit {commit} of {url}")]
    MissingPath {
        /// Repository URL.
        url: String,
        /// Commit.
        commit: String,
        /// The path asked for.
        path: String,
    },
    /// Reading the local cache failed.
    #[error("reading {url} from the local cache failed: {message}")]
    Read {
        /// Repository URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The fetch took longer than allowed.
    #[error("fetching {url} did not finish within {seconds}s")]
    Timeout {
        /// Repository URL.
        url: String,
        /// The limit.
        seconds: u64,
    },
}

/// Blocking Git operations (called inside `spawn_blocking`).
pub trait GitBackend: Send + Sync + 'static {
    /// Fetches `url` and resolves `revision` to a commit id (hex). `interrupt` is set when the
    /// caller gave up waiting.
    fn fetch(
        &self,
        url: &str,
        revision: &str,
        credentials: Option<&Credentials>,
        interrupt: &AtomicBool,
    ) -> Result<String, GitError>;

    /// The files under `path` at `commit` (fetched before), relative to `path`.
    fn files(&self, url: &str, commit: &str, path: &str) -> Result<Vec<SourceFile>, GitError>;
}

/// [`GitBackend`] on gix, with one bare repository per URL under `cache_dir`.
pub struct GixBackend {
    cache_dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl GixBackend {
    /// A backend caching repositories under `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        GixBackend {
            cache_dir: cache_dir.into(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn lock_for(&self, url: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(url.to_owned()).or_default().clone()
    }

    fn repo_dir(&self, url: &str) -> PathBuf {
        let digest = ring::digest::digest(&ring::digest::SHA256, url.as_bytes());
        let hex: String = digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.cache_dir.join(format!("{hex}.git"))
    }

    fn open(
        &self,
        url: &str,
        credentials: Option<&Credentials>,
    ) -> Result<gix::Repository, GitError> {
        let dir = self.repo_dir(url);
        let read_error = |message: String| GitError::Read {
            url: url.to_owned(),
            message,
        };
        if !dir.join("HEAD").exists() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| read_error(format!("creating {}: {e}", dir.display())))?;
            gix::init_bare(&dir).map_err(|e| read_error(e.to_string()))?;
        }
        let overrides = transport_overrides(&dir, credentials).map_err(read_error)?;
        let options = gix::open::Options::isolated().config_overrides(overrides);
        gix::open_opts(&dir, options).map_err(|e| read_error(e.to_string()))
    }
}

/// Configuration for the transport: ssh key and host checking, HTTP bearer token or Basic
/// credentials.
fn transport_overrides(
    dir: &Path,
    credentials: Option<&Credentials>,
) -> Result<Vec<String>, String> {
    let mut overrides = vec!["protocol.file.allow=always".to_owned()];
    let Some(credentials) = credentials else {
        return Ok(overrides);
    };
    if let Some(key) = &credentials.ssh_private_key {
        let key_file = dir.join("ramp-ssh-key");
        write_private(&key_file, key.trim_end().to_owned() + "\n")?;
        let mut command = format!(
            "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=10 -o ServerAliveCountMax=3",
            shell_quote(&key_file.display().to_string())
        );
        if credentials.insecure {
            command.push_str(" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null");
        } else if let Some(known_hosts) = &credentials.known_hosts {
            let hosts_file = dir.join("ramp-known-hosts");
            write_private(&hosts_file, known_hosts.clone())?;
            command.push_str(&format!(
                " -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
                shell_quote(&hosts_file.display().to_string())
            ));
        }
        overrides.push(format!("core.sshCommand={command}"));
    }
    if let Some(token) = &credentials.bearer_token {
        overrides.push(format!("http.extraHeader=Authorization: Bearer {token}"));
    } else if let Some(password) = &credentials.password {
        // Sent with the first request: gix's answer to a 401 challenge loses the handshake
        // with some servers (git http-backend among them), and git itself accepts it too.
        use base64::Engine as _;
        let user = credentials.username.as_deref().unwrap_or("git");
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        overrides.push(format!("http.extraHeader=Authorization: Basic {basic}"));
    }
    Ok(overrides)
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn write_private(path: &Path, content: String) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    file.write_all(content.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Longest a read or write on a `git://` connection may block: a remote that stops
/// answering must fail the fetch, not hold the repository's lock forever.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

type BoxedTransport = Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>;

/// A `git://` connection with connect, read and write timeouts (gix's own has none for reads);
/// `None` for other schemes.
fn git_daemon_transport(url: &str) -> Option<Result<BoxedTransport, String>> {
    use std::net::{TcpStream, ToSocketAddrs};
    let rest = url.strip_prefix("git://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().ok()),
        None => (authority, None),
    };
    let connect = || -> Result<BoxedTransport, String> {
        let address = (host, port.unwrap_or(9418))
            .to_socket_addrs()
            .map_err(|e| format!("resolving {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(10))
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let write = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Box::new(
            gix::protocol::transport::client::git::blocking_io::Connection::new(
                stream,
                write,
                gix::protocol::transport::Protocol::V2,
                path,
                Some((host, port)),
                gix::protocol::transport::client::git::ConnectMode::Daemon,
                false,
            ),
        ))
    };
    Some(connect())
}

const REFSPECS: [&str; 3] = [
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
    "+HEAD:refs/remotes/origin/HEAD",
];

impl GitBackend for GixBackend {
    fn fetch(
        &self,
        url: &str,
        revision: &str,
        credentials: Option<&Credentials>,
        interrupt: &AtomicBool,
    ) -> Result<String, GitError> {
        let lock = self.lock_for(url);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let repo = self.open(url, credentials)?;
        let fetch_error = |message: String| GitError::Fetch {
            url: url.to_owned(),
            message,
        };
        let remote = repo
            .remote_at(url)
            .map_err(|e| fetch_error(e.to_string()))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(REFSPECS, gix::remote::Direction::Fetch)
            .map_err(|e| fetch_error(e.to_string()))?;
        let connection = match git_daemon_transport(url) {
            Some(transport) => remote.to_connection_with_transport(transport.map_err(fetch_error)?),
            None => remote
                .connect(gix::remote::Direction::Fetch)
                .map_err(|e| fetch_error(e.to_string()))?,
        };
        let user = credentials.and_then(|c| c.username.clone());
        let password = credentials.and_then(|c| c.password.clone());
        let connection = connection.with_credentials(move |action| {
            use gix::credentials::helper::Action;
            match action {
                Action::Get(context) => match &password {
                    Some(password) => {
                        let identity = gix::sec::identity::Account {
                            username: user.clone().unwrap_or_else(|| "git".into()),
                            password: password.clone(),
                            oauth_refresh_token: None,
                        };
                        Ok(Some(gix::credentials::protocol::Outcome {
                            identity,
                            next: context.into(),
                        }))
                    }
                    None => Ok(None),
                },
                Action::Store(_) | Action::Erase(_) => Ok(None),
            }
        });
        let prepare = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| fetch_error(e.to_string()))?;
        prepare
            .receive(gix::progress::Discard, interrupt)
            .map_err(|e| fetch_error(e.to_string()))?;
        if interrupt.load(Ordering::Relaxed) {
            return Err(fetch_error("interrupted".into()));
        }
        resolve(&repo, url, revision)
    }

    fn files(&self, url: &str, commit: &str, path: &str) -> Result<Vec<SourceFile>, GitError> {
        let repo = self.open(url, None)?;
        let read_error = |message: String| GitError::Read {
            url: url.to_owned(),
            message,
        };
        let id =
            gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| read_error(e.to_string()))?;
        let tree = repo
            .find_object(id)
            .map_err(|e| read_error(e.to_string()))?
            .peel_to_tree()
            .map_err(|e| read_error(e.to_string()))?;
        let missing = || GitError::MissingPath {
            url: url.to_owned(),
            commit: commit.to_owned(),
            path: path.to_owned(),
        };
        let root = if path.is_empty() {
            tree
        } else {
            let entry = tree
                .lookup_entry_by_path(path)
                .map_err(|e| read_error(e.to_string()))?
                .ok_or_else(missing)?;
            if !entry.mode().is_tree() {
                return Err(missing());
            }
            entry
                .object()
                .map_err(|e| read_error(e.to_string()))?
                .into_tree()
        };
        let mut files = Vec::new();
        collect_files(&repo, root, "", &mut files).map_err(read_error)?;
        Ok(files)
    }
}

fn collect_files(
    repo: &gix::Repository,
    tree: gix::Tree<'_>,
    prefix: &str,
    out: &mut Vec<SourceFile>,
) -> Result<(), String> {
    let mut subtrees = Vec::new();
    for entry in tree.iter() {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.filename().to_string();
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let mode = entry.mode();
        if mode.is_tree() {
            subtrees.push((entry.oid().to_owned(), path));
        } else if mode.is_blob() {
            let object = repo.find_object(entry.oid()).map_err(|e| e.to_string())?;
            if object.data.len() > MAX_FILE_BYTES {
                return Err(format!(
                    "{path} is larger than {} MiB",
                    MAX_FILE_BYTES / (1024 * 1024)
                ));
            }
            out.push(SourceFile {
                path,
                content: object.data.clone(),
            });
        }
        // Symlinks and submodules are not followed, as in Argo CD's directory source.
    }
    for (id, path) in subtrees {
        let subtree = repo.find_object(id).map_err(|e| e.to_string())?.into_tree();
        collect_files(repo, subtree, &path, out)?;
    }
    Ok(())
}

/// Resolves a revision against the fetched refs: HEAD, branch, tag, or (abbreviated) commit.
fn resolve(repo: &gix::Repository, url: &str, revision: &str) -> Result<String, GitError> {
    let unknown = || GitError::UnknownRevision {
        url: url.to_owned(),
        revision: revision.to_owned(),
    };
    let candidates: Vec<String> = match revision {
        "" | "HEAD" => vec!["refs/remotes/origin/HEAD".into()],
        r if r.starts_with("refs/heads/") => {
            vec![format!("refs/remotes/origin/{}", &r["refs/heads/".len()..])]
        }
        r if r.starts_with("refs/") => vec![r.to_owned()],
        r => vec![format!("refs/remotes/origin/{r}"), format!("refs/tags/{r}")],
    };
    for name in &candidates {
        if let Ok(Some(mut reference)) = repo.try_find_reference(name.as_str()) {
            let commit = reference.peel_to_commit().map_err(|e| GitError::Read {
                url: url.to_owned(),
                message: e.to_string(),
            })?;
            return Ok(commit.id.to_string());
        }
    }
    let is_hex = revision.len() >= 4
        && revision.len() <= 40
        && revision.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex {
        return Err(unknown());
    }
    let id = if revision.len() == 40 {
        gix::ObjectId::from_hex(revision.as_bytes()).map_err(|_| unknown())?
    } else {
        let prefix = gix::hash::Prefix::from_hex(revision).map_err(|_| unknown())?;
        match repo.objects.lookup_prefix(prefix, None) {
            Ok(Some(Ok(id))) => id,
            _ => return Err(unknown()),
        }
    };
    let object = repo
        .try_find_object(id)
        .ok()
        .flatten()
        .ok_or_else(unknown)?;
    let commit = object.try_into_commit().map_err(|_| unknown())?;
    Ok(commit.id.to_string())
}

/// A repository URL reduced to `host/path` (lower case, no scheme, user, `.git` or trailing
/// slash), so the HTTPS, SSH and scp-like forms of one repository compare equal.
pub fn normalize_repo_url(url: &str) -> String {
    let mut rest = url.trim().to_ascii_lowercase();
    let had_scheme = if let Some(index) = rest.find("://") {
        rest = rest[index + 3..].to_owned();
        true
    } else {
        false
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    if let Some(at) = rest[..host_end].rfind('@') {
        rest = rest[at + 1..].to_owned();
    }
    if !had_scheme {
        // scp-like `host:path`
        if let Some(colon) = rest.find(':')
            && rest.find('/').is_none_or(|slash| colon < slash)
        {
            rest.replace_range(colon..=colon, "/");
        }
    }
    let trimmed = rest.trim_end_matches('/');
    trimmed
        .strip_suffix(".git")
        .unwrap_or(trimmed)
        .trim_end_matches('/')
        .to_owned()
}

/// Async access to a [`GitBackend`] with a timeout and a render cache.
#[derive(Clone)]
pub struct Repositories {
    backend: Arc<dyn GitBackend>,
    timeout: Duration,
    files: Arc<Mutex<FileCache>>,
}

/// Files by (url, commit, path), bounded.
#[derive(Default)]
struct FileCache {
    entries: HashMap<(String, String, String), Arc<Vec<SourceFile>>>,
    order: Vec<(String, String, String)>,
}

const FILE_CACHE_ENTRIES: usize = 64;

impl Repositories {
    /// Wraps a backend; `timeout` bounds each fetch.
    pub fn new(backend: Arc<dyn GitBackend>, timeout: Duration) -> Self {
        Repositories {
            backend,
            timeout,
            files: Arc::default(),
        }
    }

    /// Fetches and resolves `revision`.
    pub async fn fetch(
        &self,
        url: &str,
        revision: &str,
        credentials: Option<Credentials>,
    ) -> Result<String, GitError> {
        let interrupt = Arc::new(AtomicBool::new(false));
        let backend = self.backend.clone();
        let (task_url, task_revision, task_interrupt) =
            (url.to_owned(), revision.to_owned(), interrupt.clone());
        let task = tokio::task::spawn_blocking(move || {
            backend.fetch(
                &task_url,
                &task_revision,
                credentials.as_ref(),
                &task_interrupt,
            )
        });
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(GitError::Fetch {
                url: url.to_owned(),
                message: format!("fetch task failed: {join}"),
            }),
            Err(_) => {
                interrupt.store(true, Ordering::Relaxed);
                Err(GitError::Timeout {
                    url: url.to_owned(),
                    seconds: self.timeout.as_secs(),
                })
            }
        }
    }

    /// The files under `path` at `commit`, cached by commit.
    pub async fn files(
        &self,
        url: &str,
        commit: &str,
        path: &str,
    ) -> Result<Arc<Vec<SourceFile>>, GitError> {
        let key = (url.to_owned(), commit.to_owned(), path.to_owned());
        if let Some(files) = self
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .get(&key)
        {
            return Ok(files.clone());
        }
        let backend = self.backend.clone();
        let (task_url, task_commit, task_path) = key.clone();
        let files =
            tokio::task::spawn_blocking(move || backend.files(&task_url, &task_commit, &task_path))
                .await
                .map_err(|join| GitError::Read {
                    url: url.to_owned(),
                    message: format!("read task failed: {join}"),
                })??;
        let files = Arc::new(files);
        let mut cache = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.order.len() >= FILE_CACHE_ENTRIES {
            let oldest = cache.order.remove(0);
            cache.entries.remove(&oldest);
        }
        cache.order.push(key.clone());
        cache.entries.insert(key, files.clone());
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn commit_file(dir: &Path, path: &str, content: &str, message: &str) -> String {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, content).expect("write");
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", message]);
        git(dir, &["rev-parse", "HEAD"])
    }

    #[test]
    fn fetches_branches_tags_and_commits_over_file_urls() {
        let work = tempfile::tempdir().expect("tempdir");
        let cache = tempfile::tempdir().expect("tempdir");
        let repo = work.path();
        git(repo, &["init", "-q", "-b", "main"]);
        let first = commit_file(repo, "apps/a.yaml", "a: 1\n", "first");
        git(repo, &["tag", "-a", "v1", "-m", "v1"]);
        let second = commit_file(repo, "apps/sub/b.yaml", "b: 2\n", "second");
        git(repo, &["checkout", "-q", "-b", "feature"]);
        let feature = commit_file(repo, "apps/c.yaml", "c: 3\n", "feature");
        git(repo, &["checkout", "-q", "main"]);
        let url = format!("file://{}", repo.display());
        let backend = GixBackend::new(cache.path());
        let stop = AtomicBool::new(false);
        assert_eq!(backend.fetch(&url, "HEAD", None, &stop), Ok(second.clone()));
        assert_eq!(backend.fetch(&url, "main", None, &stop), Ok(second.clone()));
        assert_eq!(backend.fetch(&url, "feature", None, &stop), Ok(feature));
        assert_eq!(backend.fetch(&url, "v1", None, &stop), Ok(first.clone()));
        assert_eq!(backend.fetch(&url, &first, None, &stop), Ok(first.clone()));
        assert_eq!(
            backend.fetch(&url, &first[..8], None, &stop),
            Ok(first.clone())
        );
        assert!(matches!(
            backend.fetch(&url, "nope", None, &stop),
            Err(GitError::UnknownRevision { .. })
        ));
        let files = backend.files(&url, &second, "apps").expect("files");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.yaml", "sub/b.yaml"]);
        assert_eq!(files[0].content, b"a: 1\n");
        assert!(matches!(
            backend.files(&url, &second, "missing"),
            Err(GitError::MissingPath { .. })
        ));
        let third = commit_file(repo, "apps/a.yaml", "a: 3\n", "third");
        assert_eq!(backend.fetch(&url, "main", None, &stop), Ok(third));
    }

    #[test]
    fn url_forms_of_one_repository_normalise_alike() {
        let expected = "github.com/example/apps";
        for url in [
            "https://github.com/Example/apps.git",
            "https://user@github.com/example/apps/",
            "git@github.com:example/apps.git",
            "ssh://git@github.com/example/apps",
        ] {
            assert_eq!(normalize_repo_url(url), expected, "{url}");
        }
        assert_eq!(
            normalize_repo_url("file:///srv/git/apps.git"),
            "/srv/git/apps"
        );
        assert_eq!(
            normalize_repo_url("git://127.0.0.1:9418/apps"),
            "127.0.0.1:9418/apps"
        );
    }

    #[test]
    fn unreachable_remotes_are_fetch_errors() {
        let cache = tempfile::tempdir().expect("tempdir");
        let backend = GixBackend::new(cache.path());
        let stop = AtomicBool::new(false);
        let error = backend
            .fetch("file:///nonexistent/repo", "HEAD", None, &stop)
            .expect_err("fails");
        assert!(matches!(error, GitError::Fetch { .. }), "{error}");
        let error = backend
            .fetch("git://127.0.0.1:9/repo", "HEAD", None, &stop)
            .expect_err("fails");
        assert!(matches!(error, GitError::Fetch { .. }), "{error}");
    }

    #[test]
    fn credentials_are_redacted_and_ssh_uses_the_key() {
        let credentials = Credentials {
            username: Some("bot".into()),
            password: Some("s3cret".into()),
            ssh_private_key: Some("-----BEGIN KEY-----".into()),
            known_hosts: Some("github.com ssh-ed25519 AAAA".into()),
            ..Default::default()
        };
        let shown = format!("{credentials:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("BEGIN"),
            "{shown}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let overrides = transport_overrides(dir.path(), Some(&credentials)).expect("overrides");
        let ssh = overrides
            .iter()
            .find(|o| o.starts_with("core.sshCommand="))
            .expect("ssh command");
        assert!(
            ssh.contains("IdentitiesOnly=yes") && ssh.contains("StrictHostKeyChecking=yes"),
            "{ssh}"
        );
        let key = std::fs::read_to_string(dir.path().join("ramp-ssh-key")).expect("key file");
        assert_eq!(key, "-----BEGIN KEY-----\n");
        // base64("bot:s3cret")
        assert!(
            overrides
                .contains(&"http.extraHeader=Authorization: Basic Ym90OnMzY3JldA==".to_owned()),
            "{overrides:?}"
        );
    }
}
