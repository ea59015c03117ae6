//! The connection to the cluster, chosen as kubectl chooses it (`--kubeconfig`, `KUBECONFIG`,
//! `~/.kube/config`, in-cluster; `--context`; `-n` or the context's namespace), and the
//! reading of Rollouts and AnalysisRuns with errors that say what to do.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::Args;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use ramp_controller::api::{AnalysisRun, Rollout};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::suggest::closest;

/// Flags every cluster command takes, as kubectl spells them.
#[derive(Args, Clone, Debug, Default)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else "default").
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// A kind `kubectl ramp` reads: how to name it in messages and where the API serves it.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// "rollout", "analysisrun"
    pub singular: &'static str,
    /// "rollouts.argoproj.io"
    pub crd: &'static str,
    /// The command that lists them.
    pub list_command: &'static str,
}

pub const ROLLOUT: Kind = Kind {
    singular: "rollout",
    crd: "rollouts.argoproj.io",
    list_command: "kubectl ramp list rollouts",
};
pub const ANALYSIS_RUN: Kind = Kind {
    singular: "analysisrun",
    crd: "analysisruns.argoproj.io",
    list_command: "kubectl get analysisruns",
};

impl Kind {
    fn resource(self) -> ApiResource {
        match self.singular {
            "analysisrun" => ApiResource::erase::<AnalysisRun>(&()),
            _ => ApiResource::erase::<Rollout>(&()),
        }
    }
}

/// A connected client and the namespace commands act in.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
    /// Where the client points, for messages: `context "x" (https://…)`.
    pub describe: String,
}

impl Cluster {
    pub async fn connect(args: &ClusterArgs) -> anyhow::Result<Cluster> {
        let options = KubeConfigOptions {
            context: args.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match (&args.kubeconfig, &args.context) {
            (Some(path), _) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .with_context(|| format!("cannot use the kubeconfig {}", path.display()))?
            }
            (None, Some(context)) => Config::from_kubeconfig(&options)
                .await
                .with_context(|| format!("cannot use context {context:?} of the kubeconfig ($KUBECONFIG or ~/.kube/config)"))?,
            (None, None) => Config::infer().await.map_err(|e| {
                anyhow!("no cluster configured: set KUBECONFIG, pass --kubeconfig, or run inside a cluster ({e})")
            })?,
        };
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let describe = match &args.context {
            Some(context) => format!("context {context:?} ({})", config.cluster_url),
            None => format!("{}", config.cluster_url),
        };
        let client = ramp_controller::kube_client::client(&config)
            .context("cannot build a Kubernetes client from the kubeconfig")?;
        Ok(Cluster {
            client,
            namespace,
            describe,
        })
    }

    /// The API of `kind` in the command's namespace.
    pub fn api(&self, kind: Kind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &kind.resource())
    }

    /// The object `name` of `kind` in the namespace: as JSON and typed.
    pub async fn get<K: DeserializeOwned>(
        &self,
        kind: Kind,
        name: &str,
    ) -> anyhow::Result<(Value, K)> {
        match self.api(kind).get(name).await {
            Ok(object) => {
                let json = serde_json::to_value(&object)?;
                let typed = serde_json::from_value(json.clone()).with_context(|| {
                    format!(
                        "{} {}/{name} does not match the argoproj.io/v1alpha1 schema",
                        kind.singular, self.namespace
                    )
                })?;
                Ok((json, typed))
            }
            Err(error) => Err(self.explain(error, kind, name, "read").await),
        }
    }

    /// A typed Rollout.
    pub async fn rollout(&self, name: &str) -> anyhow::Result<(Value, Rollout)> {
        self.get(ROLLOUT, name).await
    }

    /// A JSON merge patch on the status subresource; on a cluster that serves the kind
    /// without one, `fallback` on the object itself (as Argo's plugin does).
    pub async fn patch_status(
        &self,
        kind: Kind,
        name: &str,
        patch: &Value,
        fallback: &Value,
    ) -> anyhow::Result<()> {
        let api = self.api(kind);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => {
                self.patch(kind, name, fallback).await
            }
            Err(error) => Err(self
                .explain(error, kind, name, "update the status of")
                .await),
        }
    }

    /// A JSON merge patch on the object.
    pub async fn patch(&self, kind: Kind, name: &str, patch: &Value) -> anyhow::Result<()> {
        match self
            .api(kind)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => Err(self.explain(error, kind, name, "update").await),
        }
    }

    /// A JSON patch (RFC 6902) on the object.
    pub async fn json_patch(&self, kind: Kind, name: &str, patch: &Value) -> anyhow::Result<()> {
        let operations: json_patch::Patch =
            serde_json::from_value(patch.clone()).context("building a JSON patch")?;
        match self
            .api(kind)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Json::<()>(operations),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => Err(self.explain(error, kind, name, "update").await),
        }
    }

    /// An error of the API turned into a sentence naming the object and what to do. For "not
    /// found", looks for the name in other namespaces and for similar names in this one.
    pub async fn explain(
        &self,
        error: kube::Error,
        kind: Kind,
        name: &str,
        verb: &str,
    ) -> anyhow::Error {
        let object = format!("{} {}/{name}", kind.singular, self.namespace);
        match error {
            kube::Error::Api(status) if status.is_not_found() => self.not_found(kind, name).await,
            kube::Error::Api(status) if status.is_forbidden() => anyhow!(
                "not allowed to {verb} {object}: {}; ask a cluster administrator for access to {} in namespace {}",
                status.message,
                kind.crd,
                self.namespace
            ),
            kube::Error::Api(status) if status.is_conflict() => {
                anyhow!(
                    "{object} changed while it was being updated ({}); run the command again",
                    status.message
                )
            }
            kube::Error::Api(status) if status.is_invalid() => {
                anyhow!(
                    "the API server rejected the change to {object}: {}",
                    status.message
                )
            }
            kube::Error::Api(status) => anyhow!(
                "cannot {verb} {object}: {} ({})",
                status.message,
                status.code
            ),
            other => anyhow!(
                "cannot reach the Kubernetes API at {} to {verb} {object}: {other}; check the kubeconfig \
                 context (--context) and that the cluster is running",
                self.describe
            ),
        }
    }

    /// Why `name` was not found, and where it might be.
    pub async fn not_found(&self, kind: Kind, name: &str) -> anyhow::Error {
        let object = format!("{} {}/{name}", kind.singular, self.namespace);
        let here = self.api(kind).list(&ListParams::default()).await;
        if let Err(kube::Error::Api(status)) = &here
            && status.is_not_found()
        {
            return anyhow!(
                "the {} CustomResourceDefinition is not installed in the cluster at {}; install Ramp \
                 (helm install ramp charts/ramp) or its CRDs (ramp-controller crd | kubectl apply --server-side -f -)",
                kind.crd,
                self.describe
            );
        }
        let everywhere: Api<DynamicObject> = Api::all_with(self.client.clone(), &kind.resource());
        let elsewhere = everywhere
            .list(&ListParams::default().fields(&format!("metadata.name={name}")))
            .await;
        if let Ok(list) = elsewhere {
            let namespaces: Vec<String> = list
                .items
                .iter()
                .filter_map(|o| o.metadata.namespace.clone())
                .filter(|n| *n != self.namespace)
                .map(|n| format!("-n {n}"))
                .collect();
            if !namespaces.is_empty() {
                return anyhow!(
                    "{object} not found in namespace {}; did you mean {}?",
                    self.namespace,
                    namespaces.join(" or ")
                );
            }
        }
        match here {
            Ok(list) if list.items.is_empty() => {
                anyhow!(
                    "{object} not found: namespace {} has no {}s (pick another with -n)",
                    self.namespace,
                    kind.singular
                )
            }
            Ok(list) => {
                let names: Vec<String> = list
                    .items
                    .iter()
                    .filter_map(|o| o.metadata.name.clone())
                    .collect();
                match closest(name, &names) {
                    Some(close) => anyhow!(
                        "{object} not found in namespace {}; did you mean {close}?",
                        self.namespace
                    ),
                    None => anyhow!(
                        "{object} not found in namespace {}; `{} -n {}` shows what is there",
                        self.namespace,
                        kind.list_command,
                        self.namespace
                    ),
                }
            }
            Err(_) => anyhow!("{object} not found in namespace {}", self.namespace),
        }
    }
}
