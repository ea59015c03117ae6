//! `kubectl ramp list rollouts`: one row per Rollout under
//! `NAME STRATEGY STATUS STEP SET-WEIGHT READY DESIRED UP-TO-DATE AVAILABLE` (with
//! `NAMESPACE` first across namespaces). With `--watch` rows are printed again as they change,
//! in the columns of the first table.

use serde::Serialize;

use super::model::{StrategyKind, current_set_weight};
use super::phase::displayed_phase;
use super::style::{pad, width};
use crate::api::Rollout;

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RolloutRow {
    pub namespace: String,
    pub name: String,
    pub strategy: String,
    pub status: String,
    pub step: String,
    pub set_weight: String,
    pub ready: String,
    pub desired: i32,
    pub up_to_date: i32,
    pub available: i32,
}

/// The row of `rollout`.
pub fn rollout_row(rollout: &Rollout) -> RolloutRow {
    let status = rollout.status.clone().unwrap_or_default();
    let canary = rollout
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.canary.as_ref());
    let kind = match (
        canary,
        rollout
            .spec
            .strategy
            .as_ref()
            .and_then(|s| s.blue_green.as_ref()),
    ) {
        (Some(_), _) => StrategyKind::Canary,
        (None, Some(_)) => StrategyKind::BlueGreen,
        (None, None) => StrategyKind::Unknown,
    };
    let (step, set_weight) = match canary {
        Some(canary) => {
            let steps = canary.steps.as_ref().map_or(0, Vec::len);
            let step = match status.current_step_index {
                Some(index) if steps > 0 => format!("{index}/{steps}"),
                _ => "-".to_string(),
            };
            (step, current_set_weight(rollout).to_string())
        }
        None => ("-".to_string(), "-".to_string()),
    };
    RolloutRow {
        namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
        name: rollout.metadata.name.clone().unwrap_or_default(),
        strategy: kind.as_str().to_string(),
        status: displayed_phase(rollout).0.to_string(),
        step,
        set_weight,
        ready: format!(
            "{}/{}",
            status.ready_replicas.unwrap_or(0),
            status.replicas.unwrap_or(0)
        ),
        desired: rollout.spec.replicas.unwrap_or(1),
        up_to_date: status.updated_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
    }
}

const HEADERS: [&str; 10] = [
    "NAMESPACE",
    "NAME",
    "STRATEGY",
    "STATUS",
    "STEP",
    "SET-WEIGHT",
    "READY",
    "DESIRED",
    "UP-TO-DATE",
    "AVAILABLE",
];

/// Column widths, fixed by the first table so later rows line up under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    with_namespace: bool,
    widths: [usize; 10],
}

impl Table {
    /// Widths fitting `rows` (and, so that a watch has room, `Progressing` in STATUS).
    pub fn fit(rows: &[RolloutRow], with_namespace: bool) -> Table {
        let mut widths = HEADERS.map(width);
        widths[3] = widths[3].max(width("Progressing"));
        for row in rows {
            for (w, cell) in widths.iter_mut().zip(cells(row)) {
                *w = (*w).max(width(&cell));
            }
        }
        Table {
            with_namespace,
            widths,
        }
    }

    /// The header line.
    pub fn header(&self) -> String {
        self.line(HEADERS.map(str::to_string))
    }

    /// One row's line.
    pub fn row(&self, row: &RolloutRow) -> String {
        self.line(cells(row))
    }

    /// Header and rows.
    pub fn render(&self, rows: &[RolloutRow]) -> String {
        let mut out = self.header();
        for row in rows {
            out.push_str(&self.row(row));
        }
        out
    }

    fn line(&self, cells: [String; 10]) -> String {
        let skip = usize::from(!self.with_namespace);
        let padded: Vec<String> = cells
            .iter()
            .zip(self.widths)
            .skip(skip)
            .map(|(cell, w)| pad(cell, w))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    }
}

fn cells(row: &RolloutRow) -> [String; 10] {
    [
        row.namespace.clone(),
        row.name.clone(),
        row.strategy.clone(),
        row.status.clone(),
        row.step.clone(),
        row.set_weight.clone(),
        row.ready.clone(),
        row.desired.to_string(),
        row.up_to_date.to_string(),
        row.available.to_string(),
    ]
}

/// Rows sorted as kubectl sorts: by namespace, then name.
pub fn sorted_rows(rollouts: &[Rollout]) -> Vec<RolloutRow> {
    let mut rows: Vec<RolloutRow> = rollouts.iter().map(rollout_row).collect();
    rows.sort_by(|a, b| a.namespace.cmp(&b.namespace).then(a.name.cmp(&b.name)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::model::tests::canary_rollout;

    #[test]
    fn rows_and_alignment() {
        let mut second = canary_rollout(4);
        second.metadata.name = Some("checkout-api".into());
        let status = second.status.as_mut().unwrap();
        status.phase = Some(crate::api::RolloutPhase::Healthy);
        status.message = None;
        status.pause_conditions = None;
        let rows = sorted_rows(&[canary_rollout(1), second]);
        assert_eq!(rows[0].name, "checkout-api");
        assert_eq!(rows[0].step, "4/4");
        assert_eq!(rows[0].set_weight, "100");
        assert_eq!(rows[1].status, "Paused");
        let table = Table::fit(&rows, false);
        assert_eq!(
            table.render(&rows),
            "\
NAME          STRATEGY  STATUS       STEP  SET-WEIGHT  READY  DESIRED  UP-TO-DATE  AVAILABLE
checkout-api  Canary    Healthy      4/4   100         6/6    5        1           5
web           Canary    Paused       1/4   20          6/6    5        1           5
"
        );
        let all = Table::fit(&rows, true);
        assert!(
            all.header().starts_with("NAMESPACE  NAME "),
            "{}",
            all.header()
        );
        assert!(
            all.row(&rows[1]).starts_with("shop       web "),
            "{}",
            all.row(&rows[1])
        );
    }
}
