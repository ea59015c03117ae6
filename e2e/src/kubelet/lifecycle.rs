//! Deciding what the kubelet would do with a pod now: bind it, start it, report a new status,
//! or confirm its deletion. Pure: takes the pod as observed, what the simulator remembers about
//! it and the current time; returns one action and when to look again.
//!
//! A pod's life is a function of the time since it started (its [`Track`]):
//!
//! ```text
//! container program    Exits{after: d, code}                        RunsForever
//!                      ├── run ──────┤ exit code                     ├── run ─────────────▶
//! Never / exit 0       Running ─────▶ Terminated (pod Succeeded/Failed once all are)
//! Always, OnFailure≠0  Running ─────▶ CrashLoopBackOff (base·2^k, capped) ─▶ Running ─▶ …
//! Ready                from `ready_after` after each (re)start, unless held unready
//! ```

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::program::{Program, program_of};
use crate::cluster::parse_duration;

/// Annotation overriding the ready delay of one pod (`2s`, `500ms`).
pub const READY_AFTER_ANNOTATION: &str = "ramp.e2e/ready-after";
/// Annotation holding a pod unready while its value is `"false"`.
pub const READY_ANNOTATION: &str = "ramp.e2e/ready";

/// Timing knobs of the simulated kubelet.
#[derive(Clone, Copy, Debug)]
pub struct LifecycleConfig {
    /// Default delay from a container (re)start to Ready.
    pub ready_after: Duration,
    /// First CrashLoopBackOff delay; doubles per restart.
    pub crash_backoff: Duration,
    /// Longest CrashLoopBackOff delay.
    pub crash_backoff_cap: Duration,
}

impl LifecycleConfig {
    fn backoff(&self, restarts: u32) -> Duration {
        let base = self.crash_backoff.max(Duration::from_millis(1));
        base.checked_mul(1u32.checked_shl(restarts.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.crash_backoff_cap)
            .min(self.crash_backoff_cap.max(base))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

/// One container as the simulator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub program: Program,
    /// Image name or tag ends in `-unready`.
    pub never_ready: bool,
}

/// What the status of a pod says, reduced to what the simulator controls (timestamps left out),
/// so "does the status need a patch" is an equality test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusSummary {
    pub phase: Option<String>,
    pub ready: Option<String>,
    pub containers_ready: Option<String>,
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    pub containers: Vec<ContainerSummary>,
    pub init_containers: Vec<ContainerSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSummary {
    pub name: String,
    pub ready: bool,
    pub restart_count: i32,
    /// `running`, `waiting:REASON` or `terminated:CODE`.
    pub state: String,
}

/// The parts of a Pod the simulator decides on; small, so thousands of pods cost little.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<u64>,
    pub node_name: Option<String>,
    pub deleting: bool,
    /// `deletionGracePeriodSeconds: 0`: the kubelet's confirmation was already given.
    pub deletion_confirmed: bool,
    pub restart_policy: RestartPolicy,
    pub containers: Vec<ContainerView>,
    pub init_containers: Vec<ContainerView>,
    /// From [`READY_AFTER_ANNOTATION`].
    pub ready_after: Option<Duration>,
    /// [`READY_AFTER_ANNOTATION`] present but unreadable (reported, then ignored).
    pub ready_after_error: Option<String>,
    /// [`READY_ANNOTATION`] is `"false"`.
    pub held_unready: bool,
    /// Required node affinity on `metadata.name` (DaemonSet pods).
    pub required_node: Option<String>,
    pub observed: StatusSummary,
    pub start_time: Option<Timestamp>,
    pub pod_ip: Option<Ipv4Addr>,
}

impl PodView {
    /// None for objects without namespace or name (never sent by the API server).
    pub fn from_pod(pod: &Pod) -> Option<PodView> {
        let metadata = &pod.metadata;
        let spec = pod.spec.as_ref();
        let annotations = metadata.annotations.as_ref();
        let annotation = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
        let (ready_after, ready_after_error) = match annotation(READY_AFTER_ANNOTATION) {
            None => (None, None),
            Some(text) => match parse_duration(text) {
                Ok(duration) => (Some(duration), None),
                Err(error) => (
                    None,
                    Some(format!("annotation {READY_AFTER_ANNOTATION}: {error}")),
                ),
            },
        };
        let containers = |list: Option<&Vec<k8s_openapi::api::core::v1::Container>>| {
            list.map(|list| {
                list.iter()
                    .map(|c| {
                        let image = c.image.clone().unwrap_or_default();
                        let crashloop = image_has_suffix(&image, "-crashloop");
                        ContainerView {
                            name: c.name.clone(),
                            program: if crashloop {
                                Program::Exits {
                                    after: Duration::ZERO,
                                    code: 1,
                                }
                            } else {
                                let env: Vec<(String, String)> = c
                                    .env
                                    .iter()
                                    .flatten()
                                    .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
                                    .collect();
                                program_of(
                                    c.command.as_deref().unwrap_or(&[]),
                                    c.args.as_deref().unwrap_or(&[]),
                                    &env,
                                )
                            },
                            never_ready: image_has_suffix(&image, "-unready"),
                            image,
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
        };
        let status = pod.status.as_ref();
        Some(PodView {
            namespace: metadata.namespace.clone()?,
            name: metadata.name.clone()?,
            uid: metadata.uid.clone().unwrap_or_default(),
            resource_version: metadata
                .resource_version
                .as_deref()
                .and_then(|rv| rv.parse().ok()),
            node_name: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            deleting: metadata.deletion_timestamp.is_some(),
            deletion_confirmed: metadata.deletion_grace_period_seconds == Some(0),
            restart_policy: match spec.and_then(|s| s.restart_policy.as_deref()) {
                Some("Never") => RestartPolicy::Never,
                Some("OnFailure") => RestartPolicy::OnFailure,
                _ => RestartPolicy::Always,
            },
            containers: containers(spec.map(|s| &s.containers)),
            init_containers: containers(spec.and_then(|s| s.init_containers.as_ref())),
            ready_after,
            ready_after_error,
            held_unready: annotation(READY_ANNOTATION) == Some("false"),
            required_node: spec.and_then(required_node_name),
            observed: status.map(summarize).unwrap_or_default(),
            start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
            pod_ip: status
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok()),
        })
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn is_terminal(&self) -> bool {
        matches!(self.observed.phase.as_deref(), Some("Succeeded" | "Failed"))
    }
}

/// `name:tag` or `registry/name:tag@digest`: does the name or the tag end in `suffix`?
pub fn image_has_suffix(image: &str, suffix: &str) -> bool {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let (name, tag) = last_segment.split_once(':').unwrap_or((last_segment, ""));
    name.ends_with(suffix) || tag.ends_with(suffix)
}

fn required_node_name(spec: &k8s_openapi::api::core::v1::PodSpec) -> Option<String> {
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find_map(|field| {
            (field.key == "metadata.name" && field.operator == "In")
                .then(|| field.values.as_ref().and_then(|v| v.first().cloned()))
                .flatten()
        })
}

/// Reduces a pod status to its [`StatusSummary`].
pub fn summarize(status: &PodStatus) -> StatusSummary {
    let condition = |kind: &str| {
        status
            .conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == kind))
            .map(|c| c.status.clone())
    };
    let containers = |list: Option<&Vec<ContainerStatus>>| {
        list.map(|list| {
            list.iter()
                .map(|c| ContainerSummary {
                    name: c.name.clone(),
                    ready: c.ready,
                    restart_count: c.restart_count,
                    state: match c.state.as_ref() {
                        Some(ContainerState {
                            running: Some(_), ..
                        }) => "running".to_string(),
                        Some(ContainerState {
                            terminated: Some(t),
                            ..
                        }) => format!("terminated:{}", t.exit_code),
                        Some(ContainerState {
                            waiting: Some(w), ..
                        }) => {
                            format!("waiting:{}", w.reason.as_deref().unwrap_or(""))
                        }
                        _ => "unknown".to_string(),
                    },
                })
                .collect()
        })
        .unwrap_or_default()
    };
    StatusSummary {
        phase: status.phase.clone(),
        ready: condition("Ready"),
        containers_ready: condition("ContainersReady"),
        pod_ip: status.pod_ip.clone(),
        host_ip: status.host_ip.clone(),
        containers: containers(status.container_statuses.as_ref()),
        init_containers: containers(status.init_container_statuses.as_ref()),
    }
}

/// What the simulator remembers about a pod it started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Track {
    pub started: Instant,
    pub started_wall: Timestamp,
    pub ip: Ipv4Addr,
}

/// One step for a pod.
#[derive(Clone, Debug, PartialEq)]
pub enum PodAction {
    Nothing,
    /// POST the Binding subresource.
    Bind {
        node: String,
    },
    /// Allocate an IP and a start time ([`Track`]), then plan again.
    Start,
    /// Merge-patch the status subresource with this status.
    PatchStatus(Box<PodStatus>),
    /// Delete with grace period 0 (precondition: the pod's uid).
    ConfirmDeletion,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PodPlan {
    pub action: PodAction,
    /// Look at the pod again after this long (a container ends, becomes ready, restarts).
    pub wake_in: Option<Duration>,
}

impl PodPlan {
    fn just(action: PodAction) -> Self {
        PodPlan {
            action,
            wake_in: None,
        }
    }
}

/// The node a pod goes to: its required node when it names one of ours, else one chosen by a
/// hash of its uid (stable across retries).
pub fn choose_node(view: &PodView, nodes: &[String]) -> Option<String> {
    if let Some(required) = &view.required_node {
        return nodes.iter().find(|n| *n == required).cloned();
    }
    if nodes.is_empty() {
        return None;
    }
    let hash = view.uid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    nodes.get((hash % nodes.len() as u64) as usize).cloned()
}

/// The InternalIP of our node number `index` (172.18.x.y, never a pod or service address).
pub fn node_ip(index: usize) -> Ipv4Addr {
    let n = index as u32 + 1;
    Ipv4Addr::new(172, 18, (n >> 8) as u8, (n & 0xff) as u8)
}

/// Decides the next step for a pod. `nodes` are the simulator's nodes.
pub fn plan(
    view: &PodView,
    track: Option<&Track>,
    nodes: &[String],
    config: &LifecycleConfig,
    now: Instant,
) -> PodPlan {
    let our_node = view
        .node_name
        .as_ref()
        .and_then(|n| nodes.iter().position(|m| m == n));
    if view.deleting {
        // Unbound pods are removed by the API server itself; bound ones wait for their kubelet.
        return PodPlan::just(if our_node.is_some() && !view.deletion_confirmed {
            PodAction::ConfirmDeletion
        } else {
            PodAction::Nothing
        });
    }
    if view.node_name.is_none() {
        return PodPlan::just(match choose_node(view, nodes) {
            Some(node) => PodAction::Bind { node },
            None => PodAction::Nothing,
        });
    }
    let Some(node_index) = our_node else {
        return PodPlan::just(PodAction::Nothing);
    };
    if view.is_terminal() {
        return PodPlan::just(PodAction::Nothing);
    }
    let Some(track) = track else {
        return PodPlan::just(PodAction::Start);
    };
    let elapsed = now.saturating_duration_since(track.started);
    let (status, wake_in) = desired_status(view, track, node_ip(node_index), config, elapsed);
    let action = if summarize(&status) == view.observed {
        PodAction::Nothing
    } else {
        PodAction::PatchStatus(Box::new(status))
    };
    PodPlan { action, wake_in }
}

/// Where a container is in its life at some moment (offsets from the pod's start).
#[derive(Clone, Copy, Debug, PartialEq)]
enum ContainerPhase {
    Running {
        since: Duration,
        restarts: u32,
        last_exit: Option<Exit>,
    },
    BackOff {
        restarts: u32,
        delay: Duration,
        last_exit: Exit,
    },
    Terminated {
        restarts: u32,
        exit: Exit,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Exit {
    code: i32,
    started: Duration,
    finished: Duration,
}

/// The container's phase at `t`, and when it next changes.
fn container_phase(
    program: Program,
    policy: RestartPolicy,
    config: &LifecycleConfig,
    t: Duration,
) -> (ContainerPhase, Option<Duration>) {
    let Program::Exits { after, code } = program else {
        return (
            ContainerPhase::Running {
                since: Duration::ZERO,
                restarts: 0,
                last_exit: None,
            },
            None,
        );
    };
    let restarts_after_exit = match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => code != 0,
        RestartPolicy::Never => false,
    };
    let mut run_start = Duration::ZERO;
    let mut last_exit = None;
    // Each round advances by at least the 1 ms minimum backoff; the bound only guards against
    // absurd clocks.
    for restarts in 0..1_000_000u32 {
        let run_end = run_start + after;
        if t < run_end {
            return (
                ContainerPhase::Running {
                    since: run_start,
                    restarts,
                    last_exit,
                },
                Some(run_end - t),
            );
        }
        let exit = Exit {
            code,
            started: run_start,
            finished: run_end,
        };
        if !restarts_after_exit {
            return (ContainerPhase::Terminated { restarts, exit }, None);
        }
        let delay = config.backoff(restarts);
        let next_start = run_end + delay;
        if t < next_start {
            return (
                ContainerPhase::BackOff {
                    restarts: restarts + 1,
                    delay,
                    last_exit: exit,
                },
                Some(next_start - t),
            );
        }
        last_exit = Some(exit);
        run_start = next_start;
    }
    (
        ContainerPhase::BackOff {
            restarts: u32::MAX,
            delay: config.crash_backoff_cap,
            last_exit: Exit {
                code,
                started: t,
                finished: t,
            },
        },
        None,
    )
}

fn wall(track: &Track, offset: Duration) -> Time {
    let offset = SignedDuration::try_from(offset).unwrap_or(SignedDuration::ZERO);
    Time(
        track
            .started_wall
            .checked_add(offset)
            .unwrap_or(track.started_wall),
    )
}

fn terminated_state(track: &Track, exit: &Exit) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: exit.code,
            reason: Some(if exit.code == 0 { "Completed" } else { "Error" }.to_string()),
            started_at: Some(wall(track, exit.started)),
            finished_at: Some(wall(track, exit.finished)),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    }
}

fn condition(
    kind: &str,
    ok: bool,
    since: Time,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: kind.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        last_transition_time: Some(since),
        reason: reason.map(str::to_string),
        message,
        ..PodCondition::default()
    }
}

/// The status a kubelet would report at `elapsed` after the pod started, and when it next
/// changes.
fn desired_status(
    view: &PodView,
    track: &Track,
    host_ip: Ipv4Addr,
    config: &LifecycleConfig,
    elapsed: Duration,
) -> (PodStatus, Option<Duration>) {
    let ready_after = view.ready_after.unwrap_or(config.ready_after);
    let mut wake_in: Option<Duration> = None;
    let mut wake = |after: Duration| wake_in = Some(wake_in.map_or(after, |w| w.min(after)));
    let mut statuses = Vec::new();
    let mut all_ready = true;
    let mut all_terminated = true;
    let mut all_succeeded = true;
    let mut ready_since = Duration::ZERO;
    let mut unready_names = Vec::new();
    for container in &view.containers {
        let (phase, next) =
            container_phase(container.program, view.restart_policy, config, elapsed);
        if let Some(next) = next {
            wake(next);
        }
        let container_id =
            |restarts: u32| Some(format!("sim://{}/{}/{restarts}", view.uid, container.name));
        let mut status = ContainerStatus {
            name: container.name.clone(),
            image: container.image.clone(),
            image_id: format!("sim://{}", container.image),
            ..ContainerStatus::default()
        };
        let ready = match phase {
            ContainerPhase::Running {
                since,
                restarts,
                last_exit,
            } => {
                all_terminated = false;
                let ready_at = since + ready_after;
                let ready = !container.never_ready && !view.held_unready && elapsed >= ready_at;
                if ready {
                    ready_since = ready_since.max(ready_at);
                } else if !container.never_ready && !view.held_unready {
                    wake(ready_at - elapsed);
                }
                status.restart_count = restarts as i32;
                status.started = Some(true);
                status.container_id = container_id(restarts);
                status.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(wall(track, since)),
                    }),
                    ..ContainerState::default()
                });
                status.last_state = last_exit.map(|exit| terminated_state(track, &exit));
                ready
            }
            ContainerPhase::BackOff {
                restarts,
                delay,
                last_exit,
            } => {
                all_terminated = false;
                status.restart_count = restarts as i32;
                status.started = Some(false);
                status.container_id = container_id(restarts - 1);
                status.state = Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("CrashLoopBackOff".to_string()),
                        message: Some(format!(
                            "back-off {} restarting failed container={} pod={}_{}({})",
                            crate::cluster::format_duration(delay),
                            container.name,
                            view.name,
                            view.namespace,
                            view.uid
                        )),
                    }),
                    ..ContainerState::default()
                });
                status.last_state = Some(terminated_state(track, &last_exit));
                false
            }
            ContainerPhase::Terminated { restarts, exit } => {
                all_succeeded &= exit.code == 0;
                status.restart_count = restarts as i32;
                status.started = Some(false);
                status.container_id = container_id(restarts);
                status.state = Some(terminated_state(track, &exit));
                false
            }
        };
        status.ready = ready;
        if !ready {
            unready_names.push(container.name.clone());
        }
        all_ready &= ready;
        statuses.push(status);
    }
    let terminal = all_terminated && !view.containers.is_empty();
    let phase = match (terminal, all_succeeded) {
        (true, true) => "Succeeded",
        (true, false) => "Failed",
        (false, _) => "Running",
    };
    let started = wall(track, Duration::ZERO);
    let (ready_reason, ready_message) = if terminal {
        (Some("PodCompleted"), None)
    } else if all_ready {
        (None, None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready_names.join(" ")
            )),
        )
    };
    let ready_time = if all_ready {
        wall(track, ready_since)
    } else {
        started.clone()
    };
    let init_statuses: Vec<ContainerStatus> = view
        .init_containers
        .iter()
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone(),
            image_id: format!("sim://{}", c.image),
            container_id: Some(format!("sim://{}/{}/0", view.uid, c.name)),
            ready: true,
            started: Some(false),
            state: Some(terminated_state(
                track,
                &Exit {
                    code: 0,
                    started: Duration::ZERO,
                    finished: Duration::ZERO,
                },
            )),
            ..ContainerStatus::default()
        })
        .collect();
    let status = PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(vec![
            condition("Initialized", true, started.clone(), None, None),
            condition(
                "Ready",
                all_ready && !terminal,
                ready_time.clone(),
                ready_reason,
                ready_message.clone(),
            ),
            condition(
                "ContainersReady",
                all_ready && !terminal,
                ready_time,
                ready_reason,
                ready_message,
            ),
            condition("PodScheduled", true, started.clone(), None, None),
        ]),
        host_ip: Some(host_ip.to_string()),
        pod_ip: Some(track.ip.to_string()),
        pod_ips: Some(vec![PodIP {
            ip: track.ip.to_string(),
        }]),
        start_time: Some(started),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        ..PodStatus::default()
    };
    (status, if terminal { None } else { wake_in })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LifecycleConfig {
        LifecycleConfig {
            ready_after: Duration::ZERO,
            crash_backoff: Duration::from_secs(1),
            crash_backoff_cap: Duration::from_secs(8),
        }
    }

    fn container(image: &str, program: Program) -> ContainerView {
        ContainerView {
            name: "main".into(),
            image: image.into(),
            program,
            never_ready: image_has_suffix(image, "-unready"),
        }
    }

    fn pod(containers: Vec<ContainerView>) -> PodView {
        PodView {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "uid-1".into(),
            resource_version: Some(1),
            node_name: Some("ramp-sim-node".into()),
            deleting: false,
            deletion_confirmed: false,
            restart_policy: RestartPolicy::Always,
            containers,
            init_containers: vec![],
            ready_after: None,
            ready_after_error: None,
            held_unready: false,
            required_node: None,
            observed: StatusSummary::default(),
            start_time: None,
            pod_ip: None,
        }
    }

    fn nodes() -> Vec<String> {
        vec!["ramp-sim-node".to_string()]
    }

    fn track(now: Instant) -> Track {
        Track {
            started: now,
            started_wall: Timestamp::UNIX_EPOCH,
            ip: Ipv4Addr::new(10, 128, 0, 1),
        }
    }

    fn status_at(
        view: &PodView,
        seconds: f64,
        config: &LifecycleConfig,
    ) -> (PodStatus, Option<Duration>) {
        let now = Instant::now();
        let plan = plan(
            view,
            Some(&track(now)),
            &nodes(),
            config,
            now + Duration::from_secs_f64(seconds),
        );
        match plan.action {
            PodAction::PatchStatus(status) => (*status, plan.wake_in),
            other => panic!("expected a status patch, got {other:?}"),
        }
    }

    fn summary_at(view: &PodView, seconds: f64) -> StatusSummary {
        summarize(&status_at(view, seconds, &config()).0)
    }

    #[test]
    fn unbound_pods_are_bound_and_bound_ones_started() {
        let mut view = pod(vec![container("app:1", Program::RunsForever)]);
        view.node_name = None;
        let now = Instant::now();
        assert_eq!(
            plan(&view, None, &nodes(), &config(), now).action,
            PodAction::Bind {
                node: "ramp-sim-node".into()
            }
        );
        view.node_name = Some("ramp-sim-node".into());
        assert_eq!(
            plan(&view, None, &nodes(), &config(), now).action,
            PodAction::Start
        );
        view.node_name = Some("someone-elses-node".into());
        assert_eq!(
            plan(&view, None, &nodes(), &config(), now).action,
            PodAction::Nothing
        );
    }

    #[test]
    fn daemonset_pods_go_to_their_required_node_only() {
        let mut view = pod(vec![container("app:1", Program::RunsForever)]);
        view.node_name = None;
        view.required_node = Some("other".into());
        assert_eq!(
            plan(&view, None, &nodes(), &config(), Instant::now()).action,
            PodAction::Nothing
        );
        view.required_node = Some("ramp-sim-node".into());
        assert_eq!(
            plan(&view, None, &nodes(), &config(), Instant::now()).action,
            PodAction::Bind {
                node: "ramp-sim-node".into()
            }
        );
    }

    #[test]
    fn running_pod_is_ready_at_once_by_default_and_then_left_alone() {
        let view = pod(vec![container("app:1", Program::RunsForever)]);
        let (status, wake) = status_at(&view, 0.0, &config());
        let summary = summarize(&status);
        assert_eq!(summary.phase.as_deref(), Some("Running"));
        assert_eq!(summary.ready.as_deref(), Some("True"));
        assert_eq!(summary.pod_ip.as_deref(), Some("10.128.0.1"));
        assert_eq!(wake, None);
        let mut observed = view.clone();
        observed.observed = summary;
        let now = Instant::now();
        assert_eq!(
            plan(
                &observed,
                Some(&track(now)),
                &nodes(),
                &config(),
                now + Duration::from_secs(60)
            )
            .action,
            PodAction::Nothing
        );
    }

    #[test]
    fn ready_delay_from_config_or_annotation() {
        let slow = LifecycleConfig {
            ready_after: Duration::from_secs(2),
            ..config()
        };
        let view = pod(vec![container("app:1", Program::RunsForever)]);
        let (status, wake) = status_at(&view, 0.5, &slow);
        assert_eq!(summarize(&status).ready.as_deref(), Some("False"));
        assert_eq!(wake, Some(Duration::from_millis(1500)));
        assert_eq!(
            summarize(&status_at(&view, 2.0, &slow).0).ready.as_deref(),
            Some("True")
        );

        let mut annotated = view.clone();
        annotated.ready_after = Some(Duration::from_secs(5));
        assert_eq!(summary_at(&annotated, 4.0).ready.as_deref(), Some("False"));
        assert_eq!(summary_at(&annotated, 5.0).ready.as_deref(), Some("True"));
    }

    #[test]
    fn unready_image_and_held_pods_never_become_ready() {
        let view = pod(vec![container(
            "registry.local/demo:v2-unready",
            Program::RunsForever,
        )]);
        let (status, wake) = status_at(&view, 3600.0, &config());
        let summary = summarize(&status);
        assert_eq!(
            (summary.phase.as_deref(), summary.ready.as_deref()),
            (Some("Running"), Some("False"))
        );
        assert_eq!(wake, None);

        let mut held = pod(vec![container("app:1", Program::RunsForever)]);
        held.held_unready = true;
        assert_eq!(summary_at(&held, 10.0).ready.as_deref(), Some("False"));
    }

    #[test]
    fn crashloop_restarts_with_doubling_backoff() {
        let view = pod(vec![container(
            "demo:1-crashloop",
            Program::Exits {
                after: Duration::ZERO,
                code: 1,
            },
        )]);
        // Exits at 0; back-off 1s, 2s, 4s, 8s, 8s… between restarts that exit at once.
        let at = |t: f64| summary_at(&view, t).containers[0].clone();
        assert_eq!(at(0.0).state, "waiting:CrashLoopBackOff");
        assert_eq!(at(0.0).restart_count, 1);
        assert_eq!(at(1.5).restart_count, 2);
        assert_eq!(at(3.5).restart_count, 3);
        assert_eq!(at(100.0).restart_count, 15);
        assert!(!at(100.0).ready);
        assert_eq!(summary_at(&view, 100.0).phase.as_deref(), Some("Running"));
    }

    #[test]
    fn jobs_end_by_their_command() {
        let mut ok = pod(vec![container(
            "busybox",
            Program::Exits {
                after: Duration::from_secs(2),
                code: 0,
            },
        )]);
        ok.restart_policy = RestartPolicy::Never;
        assert_eq!(summary_at(&ok, 1.0).phase.as_deref(), Some("Running"));
        let (_, wake) = status_at(&ok, 1.0, &config());
        assert_eq!(wake, Some(Duration::from_secs(1)));
        let done = summary_at(&ok, 2.0);
        assert_eq!(done.phase.as_deref(), Some("Succeeded"));
        assert_eq!(done.containers[0].state, "terminated:0");
        assert_eq!(done.ready.as_deref(), Some("False"));

        let mut failing = pod(vec![container(
            "busybox",
            Program::Exits {
                after: Duration::ZERO,
                code: 3,
            },
        )]);
        failing.restart_policy = RestartPolicy::Never;
        assert_eq!(summary_at(&failing, 0.0).phase.as_deref(), Some("Failed"));
        assert_eq!(
            summary_at(&failing, 0.0).containers[0].state,
            "terminated:3"
        );

        // OnFailure restarts a failing container in place; a succeeding one completes.
        failing.restart_policy = RestartPolicy::OnFailure;
        assert_eq!(summary_at(&failing, 0.0).phase.as_deref(), Some("Running"));
        assert_eq!(
            summary_at(&failing, 0.0).containers[0].state,
            "waiting:CrashLoopBackOff"
        );
        ok.restart_policy = RestartPolicy::OnFailure;
        assert_eq!(summary_at(&ok, 2.0).phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn terminal_pods_are_left_alone() {
        let mut view = pod(vec![container(
            "busybox",
            Program::Exits {
                after: Duration::ZERO,
                code: 0,
            },
        )]);
        view.observed.phase = Some("Succeeded".into());
        let now = Instant::now();
        assert_eq!(
            plan(&view, Some(&track(now)), &nodes(), &config(), now).action,
            PodAction::Nothing
        );
    }

    #[test]
    fn deleting_pods_are_confirmed_once() {
        let mut view = pod(vec![container("app", Program::RunsForever)]);
        view.deleting = true;
        let now = Instant::now();
        assert_eq!(
            plan(&view, None, &nodes(), &config(), now).action,
            PodAction::ConfirmDeletion
        );
        view.deletion_confirmed = true;
        assert_eq!(
            plan(&view, None, &nodes(), &config(), now).action,
            PodAction::Nothing
        );
        view.deletion_confirmed = false;
        view.node_name = None;
        assert_eq!(
            plan(&view, None, &nodes(), &config(), now).action,
            PodAction::Nothing
        );
    }

    #[test]
    fn image_suffixes_match_name_or_tag() {
        assert!(image_has_suffix("demo-unready", "-unready"));
        assert!(image_has_suffix("demo-unready:1.0", "-unready"));
        assert!(image_has_suffix(
            "registry:5000/team/demo:1.0-unready",
            "-unready"
        ));
        assert!(image_has_suffix("demo:1.0-unready@sha256:abc", "-unready"));
        assert!(!image_has_suffix(
            "registry-unready:5000/demo:1.0",
            "-unready"
        ));
        assert!(!image_has_suffix("demo:1.0", "-unready"));
    }

    #[test]
    fn reads_annotations_and_commands_from_a_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "name": "p", "uid": "u", "resourceVersion": "42",
                "annotations": {"ramp.e2e/ready-after": "1500ms", "ramp.e2e/ready": "false"}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "a", "image": "busybox", "command": ["sh", "-c", "sleep 1; exit 2"]}
            ]}
        }))
        .unwrap();
        let view = PodView::from_pod(&pod).unwrap();
        assert_eq!(view.ready_after, Some(Duration::from_millis(1500)));
        assert!(view.held_unready);
        assert_eq!(view.restart_policy, RestartPolicy::Never);
        assert_eq!(view.resource_version, Some(42));
        assert_eq!(
            view.containers[0].program,
            Program::Exits {
                after: Duration::from_secs(1),
                code: 2
            }
        );
        assert_eq!(view.node_name, None);
    }

    #[test]
    fn bad_ready_after_annotation_is_reported_not_fatal() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "name": "p", "annotations": {"ramp.e2e/ready-after": "soon"}},
            "spec": {"containers": [{"name": "a", "image": "x"}]}
        }))
        .unwrap();
        let view = PodView::from_pod(&pod).unwrap();
        assert_eq!(view.ready_after, None);
        assert!(
            view.ready_after_error
                .unwrap()
                .contains("ramp.e2e/ready-after")
        );
    }
}
