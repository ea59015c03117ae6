//! The README's first command, run as the test suite runs it: the `playground` binary with
//! its output not a terminal. It starts its own private cluster, Prometheus, Git repository,
//! Ramp and demo processes, plays every chapter of its story and must exit 0 having printed
//! each chapter, its outcome and the summary; afterwards nothing it started is left running.

use std::process::Command;
use std::time::{Duration, Instant};

/// Processes whose command line mentions `needle` (from /proc).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid = entry.ok()?.file_name().to_str()?.parse::<u32>().ok()?;
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            line.contains(needle).then_some(format!("{pid}: {line}"))
        })
        .collect()
}

#[test]
fn the_playground_plays_every_chapter_and_exits_0() {
    let began = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_playground"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("running the playground binary");
    let took = began.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "playground exited {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    // Not a terminal: plain lines, no escape sequences.
    assert!(!stdout.contains('\x1b'), "{stdout}");

    // Each chapter's section (from its heading to the next) holds what it must show; lines
    // within a section may come in either order (the live view and the checks run side by side).
    let headings = [
        "Chapter 1/4: initial sync",
        "Chapter 2/4: healthy version",
        "Chapter 3/4: faulty version",
        "Chapter 4/4: revert",
        "Summary",
    ];
    let mut starts = Vec::new();
    for heading in headings {
        let at = stdout
            .find(heading)
            .unwrap_or_else(|| panic!("no {heading:?} in the output:\n{stdout}"));
        assert!(
            starts.last().is_none_or(|last| *last < at),
            "{heading:?} out of order:\n{stdout}"
        );
        starts.push(at);
    }
    starts.push(stdout.len());
    let expected: [&[&str]; 5] = [
        &[
            "application root: Synced at ",
            "application demo: Synced at ",
            "chapter 1 done in ",
        ],
        &[
            "git: committed ",
            "application demo: Synced at ",
            "rollout demo: Paused (CanaryPauseStep), step 1/5, stable 1.0, canary ",
            "analysis Successful",
            "step 4/5",
            "chapter 2 done in ",
            "passed analysis and was promoted",
        ],
        &[
            "git: committed ",
            "canary 3.0",
            "analysis: Metric \"error-rate\" assessed Failed due to failed (2) > failureLimit (1)",
            "rollout demo: Degraded (RolloutAborted",
            "3.0 failed analysis and was aborted",
        ],
        &[
            "(revert of demo 3.0)",
            "application demo: Synced at ",
            "Rollout demo Healthy on 2.0 again",
        ],
        &[
            "requests served by the faulty canary: ",
            "final state: Rollout demo Healthy on ramp-demo:2.0, 5/5 replicas available",
            "kubeconfig: ",
        ],
    ];
    // The live view prints the Rollout's state as it polls it, so a chapter's last state may
    // come just after the chapter's check saw it: these are looked for up to the summary.
    let live: [(usize, &str); 2] = [
        (0, "rollout demo: Healthy, stable 1.0"),
        (1, "rollout demo: Healthy, stable 2.0"),
    ];
    for (index, text) in live {
        assert!(
            stdout[starts[index]..starts[4]].contains(text),
            "{text:?} missing after {:?}:\n{stdout}",
            headings[index]
        );
    }
    for (index, wanted) in expected.iter().enumerate() {
        let section = &stdout[starts[index]..starts[index + 1]];
        for text in *wanted {
            assert!(
                section.contains(text),
                "{text:?} missing under {:?}:\n{section}\n--- whole output\n{stdout}",
                headings[index]
            );
        }
    }

    // The faulty canary served some requests, some of them failed, and the summary says so.
    let line = stdout
        .lines()
        .find(|l| l.contains("requests served by the faulty canary: "))
        .unwrap_or_default();
    // "…: 67 (16 answered 500)": the total, then the 5xx answers.
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        numbers.len() == 3 && numbers[0] > 0 && numbers[1] > 0 && numbers[1] < numbers[0],
        "{line}"
    );
    assert!(
        took < Duration::from_secs(180),
        "the story took {took:?}:\n{stdout}"
    );

    // Everything it started is gone: demo processes, Prometheus, the cluster's processes.
    let cluster_dir = stdout
        .lines()
        .find_map(|l| l.split("cluster: kubeconfig ").nth(1))
        .and_then(|path| std::path::Path::new(path.trim()).parent())
        .map(|p| p.display().to_string())
        .expect("the kubeconfig path is printed");
    let prometheus_url = stdout
        .lines()
        .find_map(|l| l.split("prometheus: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the Prometheus address is printed");
    let port = prometheus_url.rsplit(':').next().unwrap_or_default();
    let left: Vec<String> = [
        format!("--web.listen-address=127.0.0.1:{port}"),
        cluster_dir.clone(),
    ]
    .iter()
    .flat_map(|needle| processes_mentioning(needle))
    .collect();
    assert!(left.is_empty(), "left running: {left:?}");
    assert!(
        !std::path::Path::new(&cluster_dir).exists(),
        "the cluster's directory {cluster_dir} is removed"
    );
}
