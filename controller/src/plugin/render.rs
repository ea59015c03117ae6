//! The text of `kubectl ramp get rollout`: a header, then a tree of revisions, ReplicaSets,
//! pods and AnalysisRuns in aligned columns.
//!
//! ```text
//! Name:            web
//! Namespace:       shop
//! Status:          ॥ Paused
//! Message:         CanaryPauseStep
//! Strategy:        Canary
//!   Step:          1/4
//!   SetWeight:     20
//!   ActualWeight:  20
//! Images:          shop/web:1 (stable)
//!                  shop/web:2 (canary)
//! Replicas:
//!   Desired:       5
//!   Current:       6
//!   Updated:       1
//!   Ready:         6
//!   Available:     5
//!
//! NAME                          KIND         STATUS         AGE  INFO
//! ⟳ web                         Rollout      ॥ Paused       10m
//! ├──# revision:2
//! │  ├──⧉ web-new               ReplicaSet   ✔ Healthy      6m   canary
//! │  │  └──□ web-new-a          Pod          ✔ Running      5m   ready:1/1
//! │  └──α web-new-2-1           AnalysisRun  ◌ Running      4m   ✔ 2,✖ 1
//! │     └──⊞ job-1              Job          ✔ Successful   4m
//! └──# revision:1
//!    └──⧉ web-old               ReplicaSet   ✔ Healthy      10m  stable
//! ```

use k8s_openapi::jiff::Timestamp;

use super::age::{age, human_duration};
use super::model::{
    AnalysisRunSummary, ReplicaSetHealth, ReplicaSetView, Role, RolloutView, StrategyKind,
};
use super::phase::{analysis_tone, rollout_tone};
use super::pod::pod_tone;
use super::style::{Style, Tone, kind_symbol, pad, symbol, width};

const LABEL_WIDTH: usize = 17;

/// The whole `get rollout` text for `view`, ages taken at `now`.
pub fn rollout(view: &RolloutView, now: Timestamp, style: Style) -> String {
    let mut out = header(view, style);
    out.push('\n');
    out.push_str(&tree(view, now, style));
    out
}

/// The header block (everything above the tree).
pub fn header(view: &RolloutView, style: Style) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        let text = format!("{}{value}", pad(label, LABEL_WIDTH));
        out.push_str(text.trim_end());
        out.push('\n');
    };
    let tone = rollout_tone(view.phase);
    line("Name:", &view.name);
    line("Namespace:", &view.namespace);
    line(
        "Status:",
        &format!("{} {}", style.paint(tone, tone.symbol()), view.phase),
    );
    if !view.message.is_empty() {
        line("Message:", &view.message);
    }
    for error in &view.errors {
        line("Error:", &style.paint(Tone::Bad, error));
    }
    line("Strategy:", view.strategy.as_str());
    if view.strategy == StrategyKind::Canary {
        let step = view
            .step
            .map_or_else(|| "-".to_string(), |s| format!("{}/{}", s.index, s.count));
        line("  Step:", &step);
        line(
            "  SetWeight:",
            &view
                .set_weight
                .map_or_else(|| "-".into(), |w| w.to_string()),
        );
        line(
            "  ActualWeight:",
            &view
                .actual_weight
                .map_or_else(|| "-".into(), |w| w.to_string()),
        );
    }
    for (i, image) in view.images.iter().enumerate() {
        let roles: Vec<String> = image
            .roles
            .iter()
            .map(|r| style.paint(role_tone(*r), r.as_str()))
            .collect();
        let text = if roles.is_empty() {
            image.image.clone()
        } else {
            format!("{} ({})", image.image, roles.join(", "))
        };
        line(if i == 0 { "Images:" } else { "" }, &text);
    }
    line("Replicas:", "");
    let counts = view.replicas;
    line("  Desired:", &counts.desired.to_string());
    line("  Current:", &counts.current.to_string());
    line("  Updated:", &counts.updated.to_string());
    line("  Ready:", &counts.ready.to_string());
    line("  Available:", &counts.available.to_string());
    out
}

/// One row of the tree table, as plain text per column plus the tone of its status.
struct Row {
    name: String,
    name_tone: Option<Tone>,
    kind: &'static str,
    status: String,
    status_tone: Tone,
    age: String,
    info: Vec<(String, Option<Tone>)>,
}

impl Row {
    fn blank(name: String) -> Row {
        Row {
            name,
            name_tone: None,
            kind: "",
            status: String::new(),
            status_tone: Tone::Neutral,
            age: String::new(),
            info: Vec::new(),
        }
    }
}

/// The tree table.
pub fn tree(view: &RolloutView, now: Timestamp, style: Style) -> String {
    let mut rows = Vec::new();
    let tone = rollout_tone(view.phase);
    rows.push(Row {
        name: format!("{} {}", kind_symbol::ROLLOUT, view.name),
        name_tone: None,
        kind: "Rollout",
        status: format!("{} {}", tone.symbol(), view.phase),
        status_tone: tone,
        age: age(view.created, now),
        info: Vec::new(),
    });
    for (i, revision) in view.revisions.iter().enumerate() {
        let (prefix, child_prefix) = branch("", i + 1 == view.revisions.len());
        rows.push(Row::blank(format!(
            "{prefix}{} revision:{}",
            kind_symbol::REVISION,
            revision.revision
        )));
        let total = revision.replica_sets.len() + revision.analysis_runs.len();
        let mut index = 0;
        for set in &revision.replica_sets {
            index += 1;
            replica_set_rows(&mut rows, set, &child_prefix, index == total, now);
        }
        for run in &revision.analysis_runs {
            index += 1;
            analysis_run_rows(&mut rows, run, &child_prefix, index == total, now);
        }
    }
    table(&rows, style)
}

fn replica_set_rows(
    rows: &mut Vec<Row>,
    set: &ReplicaSetView,
    prefix: &str,
    last: bool,
    now: Timestamp,
) {
    let (own, children) = branch(prefix, last);
    let tone = match set.health {
        ReplicaSetHealth::Healthy => Tone::Ok,
        ReplicaSetHealth::Progressing => Tone::Progressing,
        ReplicaSetHealth::ScaledDown => Tone::Neutral,
        ReplicaSetHealth::ReplicaFailure => Tone::Bad,
    };
    let mut info: Vec<(String, Option<Tone>)> = set
        .roles
        .iter()
        .map(|r| (r.as_str().to_string(), Some(role_tone(*r))))
        .collect();
    if let Some(deadline) = set.scale_down_deadline {
        let remaining = if deadline <= now {
            "passed".to_string()
        } else {
            human_duration(deadline.duration_since(now))
        };
        info.push((format!("delay:{remaining}"), None));
    }
    rows.push(Row {
        name: format!("{own}{} {}", kind_symbol::REPLICA_SET, set.name),
        name_tone: set.roles.first().map(|r| role_tone(*r)),
        kind: "ReplicaSet",
        status: format!("{} {}", tone.symbol(), set.health.as_str()),
        status_tone: tone,
        age: age(set.created, now),
        info,
    });
    for (i, pod) in set.pods.iter().enumerate() {
        let (pod_prefix, _) = branch(&children, i + 1 == set.pods.len());
        let tone = pod_tone(&pod.status);
        let mut info = vec![(
            format!("ready:{}/{}", pod.ready_containers, pod.containers),
            None,
        )];
        if pod.restarts > 0 {
            info.push((format!("restarts:{}", pod.restarts), None));
        }
        rows.push(Row {
            name: format!("{pod_prefix}{} {}", kind_symbol::POD, pod.name),
            name_tone: None,
            kind: "Pod",
            status: format!("{} {}", tone.symbol(), pod.status),
            status_tone: tone,
            age: age(pod.created, now),
            info,
        });
    }
}

fn analysis_run_rows(
    rows: &mut Vec<Row>,
    run: &AnalysisRunSummary,
    prefix: &str,
    last: bool,
    now: Timestamp,
) {
    let (own, children) = branch(prefix, last);
    let tone = analysis_tone(run.phase);
    let mut info = Vec::new();
    for (count, symbol, tone) in [
        (run.successful, symbol::OK, Tone::Ok),
        (run.failed, symbol::BAD, Tone::Bad),
        (run.inconclusive, symbol::UNKNOWN, Tone::Unknown),
        (run.error, symbol::WARNING, Tone::Warning),
    ] {
        if count > 0 {
            info.push((format!("{symbol} {count}"), Some(tone)));
        }
    }
    rows.push(Row {
        name: format!("{own}{} {}", kind_symbol::ANALYSIS_RUN, run.name),
        name_tone: Some(tone),
        kind: "AnalysisRun",
        status: format!("{} {}", tone.symbol(), run.phase),
        status_tone: tone,
        age: age(run.created, now),
        info,
    });
    for (i, job) in run.jobs.iter().enumerate() {
        let (job_prefix, _) = branch(&children, i + 1 == run.jobs.len());
        let tone = analysis_tone(job.phase);
        rows.push(Row {
            name: format!("{job_prefix}{} {}", kind_symbol::JOB, job.name),
            name_tone: Some(tone),
            kind: "Job",
            status: format!("{} {}", tone.symbol(), job.phase),
            status_tone: tone,
            age: age(job.started, now),
            info: Vec::new(),
        });
    }
}

/// The prefix of a node and of its children.
fn branch(prefix: &str, last: bool) -> (String, String) {
    if last {
        (format!("{prefix}└──"), format!("{prefix}   "))
    } else {
        (format!("{prefix}├──"), format!("{prefix}│  "))
    }
}

fn role_tone(role: Role) -> Tone {
    match role {
        Role::Stable | Role::Active => Tone::Stable,
        Role::Canary | Role::Preview => Tone::Canary,
    }
}

/// Aligns the rows under NAME KIND STATUS AGE INFO, two spaces between columns; colour is
/// applied after padding.
fn table(rows: &[Row], style: Style) -> String {
    let headers = ["NAME", "KIND", "STATUS", "AGE", "INFO"];
    let name_w = rows
        .iter()
        .map(|r| width(&r.name))
        .max()
        .unwrap_or(0)
        .max(width(headers[0]));
    let kind_w = rows
        .iter()
        .map(|r| width(r.kind))
        .max()
        .unwrap_or(0)
        .max(width(headers[1]));
    let status_w = rows
        .iter()
        .map(|r| width(&r.status))
        .max()
        .unwrap_or(0)
        .max(width(headers[2]));
    let age_w = rows
        .iter()
        .map(|r| width(&r.age))
        .max()
        .unwrap_or(0)
        .max(width(headers[3]));
    let mut out = String::new();
    let mut push_line = |cells: [String; 5]| {
        let line = cells.join("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_line([
        pad(headers[0], name_w),
        pad(headers[1], kind_w),
        pad(headers[2], status_w),
        pad(headers[3], age_w),
        headers[4].to_string(),
    ]);
    for row in rows {
        let name = match row.name_tone {
            // Colour only the object's name, not the tree drawing in front of it.
            Some(tone) if style.color => {
                let split = row.name.rfind(' ').map_or(0, |i| i + 1);
                let (lead, name) = row.name.split_at(split);
                format!(
                    "{lead}{}{}",
                    style.paint(tone, name),
                    " ".repeat(name_w - width(&row.name))
                )
            }
            _ => pad(&row.name, name_w),
        };
        let status = if row.status.is_empty() {
            pad("", status_w)
        } else {
            let (symbol, rest) = row.status.split_once(' ').unwrap_or((&row.status, ""));
            format!(
                "{} {rest}{}",
                style.paint(row.status_tone, symbol),
                " ".repeat(status_w - width(&row.status))
            )
        };
        let info: Vec<String> = row
            .info
            .iter()
            .map(|(text, tone)| tone.map_or_else(|| text.clone(), |t| style.paint(t, text)))
            .collect();
        push_line([
            name,
            pad(row.kind, kind_w),
            status,
            pad(&row.age, age_w),
            info.join(","),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::model::tests::objects;

    fn now() -> Timestamp {
        "2024-05-01T10:10:00Z".parse().unwrap()
    }

    #[test]
    fn renders_header_and_tree_plain() {
        let view = RolloutView::from_objects(&objects(1)).unwrap();
        let text = rollout(&view, now(), Style::PLAIN);
        let expected = "\
Name:            web
Namespace:       shop
Status:          ॥ Paused
Message:         CanaryPauseStep
Strategy:        Canary
  Step:          1/4
  SetWeight:     20
  ActualWeight:  20
Images:          shop/web:1 (stable)
                 shop/web:2 (canary)
Replicas:
  Desired:       5
  Current:       6
  Updated:       1
  Ready:         6
  Available:     5

NAME                  KIND         STATUS         AGE    INFO
⟳ web                 Rollout      ॥ Paused       10m
├──# revision:2
│  ├──⧉ web-new       ReplicaSet   ✔ Healthy      6m     canary
│  │  └──□ web-new-a  Pod          ✔ Running      5m50s  ready:1/1
│  └──α web-new-2-1   AnalysisRun  ◌ Running      4m     ✔ 2,✖ 1
│     └──⊞ job-1      Job          ✔ Successful   4m
└──# revision:1
   └──⧉ web-old       ReplicaSet   ◌ Progressing  10m    stable
      ├──□ web-old-a  Pod          ✔ Running      9m50s  ready:1/1
      └──□ web-old-b  Pod          ✔ Running      9m40s  ready:1/1
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn colour_never_moves_columns() {
        let view = RolloutView::from_objects(&objects(1)).unwrap();
        let plain = rollout(&view, now(), Style::PLAIN);
        let colored = rollout(&view, now(), Style::COLOR);
        assert_ne!(plain, colored);
        let stripped = strip_ansi(&colored);
        assert_eq!(stripped, plain);
    }

    #[test]
    fn scale_down_delay_is_shown() {
        let mut objects = objects(1);
        objects.replica_sets[0]
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("scale-down-deadline".into(), "2024-05-01T10:10:30Z".into());
        let view = RolloutView::from_objects(&objects).unwrap();
        let text = tree(&view, now(), Style::PLAIN);
        assert!(text.contains("stable,delay:30s"), "{text}");
    }

    pub(crate) fn strip_ansi(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
