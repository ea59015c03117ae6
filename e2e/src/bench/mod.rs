//! The benchmark harness: `cargo run --release -p ramp-e2e --bin bench -- SCENARIO [flags]`.
//!
//! Each scenario runs its measurements several times, prints a table of medians and writes
//! `target/bench/SCENARIO.json`: one flat JSON object whose keys carry their unit
//! (`cold_start_s`, `create_per_s`, `watch_latency_p99_ms`, `runs`), so later figures can be
//! divided by the cluster baseline without guessing units.
//!
//! Adding a scenario: a module here with `pub async fn run(args: Vec<String>) ->
//! Result<Report, BenchError>` (parse its own flags with [`parse_flags`], flattening
//! [`CommonFlags`]) and one line in [`SCENARIOS`].

pub mod analysis;
pub mod cluster;
pub mod crash;
pub mod gitops;
pub mod noop;
pub mod rollouts;
pub mod scale;
pub mod soak;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// Result of one scenario.
pub type ScenarioFuture = Pin<Box<dyn Future<Output = Result<Report, BenchError>>>>;

/// A named scenario of the harness.
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(Vec<String>) -> ScenarioFuture,
}

/// Every scenario `bench` knows.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "cluster",
        about: "the test cluster's own figures: cold/warm start, objects per second, watch latency",
        run: |args| Box::pin(cluster::run(args)),
    },
    Scenario {
        name: "gitops",
        about: "GitOps: first sync, no-op sync and its writes, commit-to-applied through the webhook, memory",
        run: |args| Box::pin(gitops::run(args)),
    },
    Scenario {
        name: "abort",
        about: "Rollout abort: AnalysisRun Failed to traffic back on stable (p50/p99), against a raw patch round trip",
        run: |args| Box::pin(rollouts::abort(args)),
    },
    Scenario {
        name: "reconcile",
        about: "Rollout reconcile time per Rollout and full resync of N Rollouts by a fresh controller",
        run: |args| Box::pin(rollouts::reconcile(args)),
    },
    Scenario {
        name: "noop",
        about: "writes by a resync of N healthy Rollouts and of an unchanged GitOps app (goal 0)",
        run: |args| Box::pin(noop::run(args)),
    },
    Scenario {
        name: "analysis",
        about: "AnalysisRun measurements: lateness against their schedule (p50/p99), N runs in parallel",
        run: |args| Box::pin(analysis::run(args)),
    },
    Scenario {
        name: "crash",
        about: "crash-restart: SIGKILL the controller at random moments of N canary rollouts; trials and invariant breaks",
        run: |args| Box::pin(crash::run(args)),
    },
    Scenario {
        name: "scale",
        about: "N Rollouts: controller RSS and CPU, resync after restart and its writes, N image updates to step 1",
        run: |args| Box::pin(scale::run(args)),
    },
    Scenario {
        name: "soak",
        about: "continuous canary updates (promoted, some aborted) for --minutes: controller RSS slope (MiB/hour, goal 0)",
        run: |args| Box::pin(soak::run(args)),
    },
];

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Flags(String),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("{what} ({path}): {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

// Flags every scenario accepts (a plain comment: a doc comment would become the about
// text of every scenario's --help).
#[derive(Clone, Debug, clap::Args)]
pub struct CommonFlags {
    /// Measurement runs; the report gives medians.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Directory for SCENARIO.json (default: target/bench under the workspace).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Parses a scenario's flags (`args` excludes the scenario name); `--help` prints the
/// scenario's flags and exits 0.
pub fn parse_flags<T: clap::Parser>(scenario: &str, args: Vec<String>) -> Result<T, BenchError> {
    T::try_parse_from(std::iter::once(format!("bench {scenario}")).chain(args)).map_err(|e| match e
        .kind()
    {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => e.exit(),
        _ => BenchError::Flags(e.to_string()),
    })
}

/// Measurements of one quantity over several runs.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn new() -> Self {
        Samples(Vec::new())
    }

    pub fn push(&mut self, value: f64) {
        if value.is_finite() {
            self.0.push(value);
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut values = self.0.clone();
        values.sort_by(f64::total_cmp);
        values
    }

    /// The median (mean of the two middle values for an even count); NaN when empty.
    pub fn median(&self) -> f64 {
        let values = self.sorted();
        match values.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => values[n / 2],
            n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        }
    }

    /// The `q` quantile (0..=1), nearest rank; NaN when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        let values = self.sorted();
        if values.is_empty() {
            return f64::NAN;
        }
        let rank = (q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize;
        values[rank.saturating_sub(1).min(values.len() - 1)]
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

/// A scenario's figures, in the order they were added.
#[derive(Clone, Debug)]
pub struct Report {
    pub scenario: String,
    rows: Vec<Row>,
}

#[derive(Clone, Debug)]
struct Row {
    key: String,
    value: f64,
    description: String,
    spread: Option<(f64, f64)>,
    /// An identifier (a seed) kept exact: a float would round it.
    exact: Option<u64>,
}

impl Report {
    pub fn new(scenario: &str) -> Self {
        Report {
            scenario: scenario.to_string(),
            rows: Vec::new(),
        }
    }

    /// A single figure; `key` names the unit (`_s`, `_ms`, `_per_s`, `_mb`, …).
    pub fn add(&mut self, key: &str, value: f64, description: &str) {
        self.rows.push(Row {
            key: key.into(),
            value,
            description: description.into(),
            spread: None,
            exact: None,
        });
    }

    /// An identifier such as a seed, written and printed exactly.
    pub fn add_exact(&mut self, key: &str, value: u64, description: &str) {
        self.rows.push(Row {
            key: key.into(),
            value: value as f64,
            description: description.into(),
            spread: None,
            exact: Some(value),
        });
    }

    /// The median of `samples`, with min and max shown in the table.
    pub fn add_median(&mut self, key: &str, samples: &Samples, description: &str) {
        self.rows.push(Row {
            key: key.into(),
            value: samples.median(),
            description: description.into(),
            spread: (!samples.is_empty()).then(|| (samples.min(), samples.max())),
            exact: None,
        });
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.key == key).map(|r| r.value)
    }

    /// The figures as a flat JSON object (plus `scenario`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = BTreeMap::new();
        map.insert(
            "scenario".to_string(),
            serde_json::Value::from(self.scenario.clone()),
        );
        for row in &self.rows {
            let rounded = (row.value * 1000.0).round() / 1000.0;
            let value = match row.exact {
                Some(exact) => exact.into(),
                None => serde_json::Number::from_f64(rounded)
                    .map_or(serde_json::Value::Null, Into::into),
            };
            map.insert(row.key.clone(), value);
        }
        serde_json::Value::Object(map.into_iter().collect())
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| r.key.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let mut out = format!(
            "{:width$}  {:>12}  {:>23}  {}\n",
            "figure",
            "median",
            "min .. max",
            "what",
            width = width
        );
        for row in &self.rows {
            let spread = row
                .spread
                .map(|(lo, hi)| format!("{} .. {}", number(lo), number(hi)))
                .unwrap_or_default();
            out.push_str(&format!(
                "{:width$}  {:>12}  {:>23}  {}\n",
                row.key,
                row.exact
                    .map_or_else(|| number(row.value), |exact| exact.to_string()),
                spread,
                row.description,
                width = width
            ));
        }
        out
    }

    /// Writes `DIR/SCENARIO.json`; returns the path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, BenchError> {
        std::fs::create_dir_all(dir).map_err(|source| BenchError::Io {
            what: "creating the bench output directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(format!("{}.json", self.scenario));
        let text = serde_json::to_string_pretty(&self.to_json())
            .map_err(|e| BenchError::Failed(e.to_string()))?;
        std::fs::write(&path, text + "\n").map_err(|source| BenchError::Io {
            what: "writing the bench report",
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

fn number(value: f64) -> String {
    if !value.is_finite() {
        "-".to_string()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

/// `target/bench` of the workspace this crate is in (or `--out`).
pub fn output_dir(flags: &CommonFlags) -> PathBuf {
    flags.out.clone().unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join("target")
            });
        target.join("bench")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values: &[f64]) -> Samples {
        let mut s = Samples::new();
        for v in values {
            s.push(*v);
        }
        s
    }

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(samples(&[3.0, 1.0, 2.0]).median(), 2.0);
        assert_eq!(samples(&[4.0, 1.0, 2.0, 3.0]).median(), 2.5);
        assert!(samples(&[]).median().is_nan());
        let hundred = samples(&(1..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!(hundred.quantile(0.99), 99.0);
        assert_eq!(hundred.quantile(0.5), 50.0);
        assert_eq!(hundred.quantile(1.0), 100.0);
        assert_eq!(samples(&[f64::NAN, 1.0]).len(), 1);
    }

    #[test]
    fn report_json_is_flat_with_unit_keys() {
        let mut report = Report::new("cluster");
        report.add("cold_start_s", 4.56789, "cold start");
        report.add_median("create_per_s", &samples(&[100.0, 300.0, 200.0]), "creates");
        let json = report.to_json();
        assert_eq!(json["scenario"], "cluster");
        assert_eq!(json["cold_start_s"], 4.568);
        assert_eq!(json["create_per_s"], 200.0);
        assert!(report.table().contains("100 .. 300"));
        let dir = tempfile::tempdir().unwrap();
        let path = report.write(dir.path()).unwrap();
        assert!(path.ends_with("cluster.json"));
    }

    #[test]
    fn seeds_are_kept_exact() {
        let mut report = Report::new("crash");
        report.add_exact("seed", 3535447684820451657, "seed");
        assert_eq!(report.to_json()["seed"], 3535447684820451657_u64);
        assert!(
            report.table().contains(" 3535447684820451657 "),
            "{}",
            report.table()
        );
    }
}
