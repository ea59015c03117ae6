//! Leader election through a `coordination.k8s.io/v1` Lease (`--leader-elect`): every
//! replica keeps its caches warm, only the holder of the Lease writes, and a holder that
//! loses the Lease stops (the process exits and is restarted), so two writers never overlap.
//!
//! The state is a `watch` channel of "may write": `true` while the Lease is held (always
//! `true` without leader election). The Rollout controller, the AnalysisRun runner and the
//! GitOps reconciler all read the same channel.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The Lease Ramp's replicas compete for.
pub const DEFAULT_LEASE_NAME: &str = "ramp-controller-lock";
/// How long a Lease stays valid without renewal (seconds).
const LEASE_DURATION: u64 = 15;
/// How long before expiry the holder renews (seconds).
const LEASE_GRACE: u64 = 5;

/// Whether this replica may write, now and as it changes.
#[derive(Clone, Debug)]
pub struct Leadership {
    may_write: watch::Receiver<bool>,
}

impl Leadership {
    /// A replica that always writes (no leader election).
    pub fn always() -> (Leadership, watch::Sender<bool>) {
        let (sender, may_write) = watch::channel(true);
        (Leadership { may_write }, sender)
    }

    /// The channel to hand to components that gate their writes on leadership.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.may_write.clone()
    }

    pub fn may_write(&self) -> bool {
        *self.may_write.borrow()
    }

    /// Completes when this replica, having held the Lease, no longer holds it.
    pub async fn lost(mut self) {
        let mut held = *self.may_write.borrow_and_update();
        loop {
            if self.may_write.changed().await.is_err() {
                if held {
                    return;
                }
                std::future::pending::<()>().await;
            }
            let now = *self.may_write.borrow_and_update();
            if held && !now {
                return;
            }
            held = now;
        }
    }
}

/// Why leader election could not start.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("setting up leader election on Lease {namespace}/{name}: {source}")]
    Setup {
        namespace: String,
        name: String,
        #[source]
        source: LeaseManagerError,
    },
}

/// Competes for Lease `namespace/name` as `identity`; the handle ends with the election.
pub async fn elect(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
) -> Result<(Leadership, JoinHandle<()>), LeaderError> {
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_DURATION)
        .with_grace(LEASE_GRACE)
        .with_field_manager(format!("ramp-{identity}"))
        .build()
        .await
        .map_err(|source| LeaderError::Setup {
            namespace: namespace.into(),
            name: name.into(),
            source,
        })?;
    let (may_write, handle) = manager.watch().await;
    let namespace = namespace.to_string();
    let name = name.to_string();
    let task = tokio::spawn(async move {
        match handle.await {
            Ok(Ok(_)) => tracing::info!(%namespace, lease = %name, "leader election ended"),
            Ok(Err(error)) => {
                tracing::error!(%namespace, lease = %name, %error, "leader election failed")
            }
            Err(error) => {
                tracing::error!(%namespace, lease = %name, %error, "leader election task failed")
            }
        }
    });
    Ok((Leadership { may_write }, task))
}

/// A default identity: the pod name (downward API), else the host name and process id.
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME") {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!(
        "{}-{}",
        if host.is_empty() { "ramp" } else { &host },
        std::process::id()
    )
}

/// How long a replica that lost the Lease takes at most to notice (for docs and tests).
pub const LOSS_DETECTION: Duration = Duration::from_secs(LEASE_DURATION);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn losing_a_held_lease_is_noticed() {
        let (sender, may_write) = watch::channel(false);
        let leadership = Leadership { may_write };
        let lost = tokio::spawn(leadership.lost());
        sender.send(true).unwrap();
        tokio::task::yield_now().await;
        assert!(!lost.is_finished(), "gaining the lease is not losing it");
        sender.send(false).unwrap();
        tokio::time::timeout(Duration::from_secs(1), lost)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn always_writes_without_election() {
        let (leadership, _sender) = Leadership::always();
        assert!(leadership.may_write());
    }
}
