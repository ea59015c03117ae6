//! How Ramp's watches are paced after errors.
//!
//! kube's `default_backoff()` pauses a watch after every error, `410 Gone` included, and
//! resets only on the next `Ok`; a kube `Controller` adds one more backoff over all its trigger
//! streams together. With watches cut and etcd compacted (every re-watch from the last seen
//! version answered 410), both grow to ~30 s, and while they sleep nothing is relisted and no
//! reconcile is triggered. A 410 has already sent kube's watcher back to a fresh list, so here
//! that list follows at once, as in client-go; other errors back off as before. The backoff
//! resets when the watch delivers again (a listed object, an event, the end of a list), not
//! merely when a new list is started, so a list that keeps failing backs off too.
//!
//! ```text
//!   watcher ──▶ paced ──▶ reflect / index / triggers
//!                 410 Gone            → poll again now (a relist), at most every 250 ms;
//!                                       a warning if it cut a list short
//!                 other errors        → exponential backoff, 0.8 s … 30 s, jittered; a warning
//!                                       naming the kind (a list that keeps failing is no secret)
//!                 objects, InitDone   → backoff reset
//! ```
//!
//! A `Controller`'s own stream errors are mostly these watch errors again, so how loud they are
//! is decided here too ([`log_controller_error`]).

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::controller;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, DefaultBackoff, Event};
use tokio::time::Instant;

/// Shortest time between two relists caused by 410s, so a watch that is gone every time it
/// starts is relisted promptly but not in a hot loop.
pub const MIN_RELIST_INTERVAL: Duration = Duration::from_millis(250);

/// Whether `error` means the watcher's resource version is gone (410) and the watcher has
/// started over with a fresh list. A 410 answer to the watch request itself leaves kube's
/// watcher retrying the same version, so that one is backed off like any other error.
pub fn is_gone(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// Whether `error` is part of a healthy watch's life: the watch's version expired (410) and
/// the watcher relists. Any other error (a list that fails or outlives etcd's compaction, a
/// watch refused) leaves the controller blind to that kind until it clears, so it is logged
/// as a warning, never silently retried.
pub fn is_routine(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchError(status) if status.code == 410)
}

/// `Rollout` for `ramp_analysis::api::Rollout`: the name a log line gives a watch.
fn kind_name<K>() -> &'static str {
    let full = std::any::type_name::<K>();
    let outer = full.split('<').next().unwrap_or(full);
    outer.rsplit("::").next().unwrap_or(outer)
}

/// The pacing state of one watch.
pub struct WatchPacing<B = DefaultBackoff> {
    backoff: B,
    last_relist: Option<Instant>,
}

impl Default for WatchPacing {
    fn default() -> Self {
        WatchPacing::new(DefaultBackoff::default())
    }
}

impl<B: Backoff> WatchPacing<B> {
    pub fn new(backoff: B) -> Self {
        WatchPacing {
            backoff,
            last_relist: None,
        }
    }

    /// How long to wait before polling the watch again, having received `item` at `now`.
    pub fn pause_after<K>(
        &mut self,
        item: &Result<Event<K>, watcher::Error>,
        now: Instant,
    ) -> Option<Duration> {
        match item {
            // Only the start of a list: says nothing about whether the API answers.
            Ok(Event::Init) => None,
            Ok(_) => {
                self.backoff.reset();
                None
            }
            Err(error) if is_gone(error) => {
                let wait = self
                    .last_relist
                    .map(|last| {
                        MIN_RELIST_INTERVAL.saturating_sub(now.saturating_duration_since(last))
                    })
                    .filter(|wait| !wait.is_zero());
                self.last_relist = Some(now + wait.unwrap_or_default());
                wait
            }
            // A backoff that gives up would end the watch; keep retrying at its slowest.
            Err(_) => Some(self.backoff.next().unwrap_or(Duration::from_secs(30))),
        }
    }
}

/// `events` paced by [`WatchPacing`]: the replacement for kube's `default_backoff()`.
pub fn paced<K, S>(events: S) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Send,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
{
    let state = (Box::pin(events), WatchPacing::default(), None::<Duration>);
    futures::stream::unfold(state, |(mut events, mut pacing, pause)| async move {
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        let item = events.next().await?;
        let pause = pacing.pause_after(&item, Instant::now());
        if let Err(error) = &item {
            let kind = kind_name::<K>();
            if is_routine(error) {
                tracing::debug!(kind, %error, ?pause, "watch expired; relisting");
            } else if is_gone(error) {
                tracing::warn!(kind, %error, ?pause, "the list expired before it was read to its end (it is slower than etcd's compaction); listing again");
            } else {
                tracing::warn!(kind, %error, ?pause, "watch failed; nothing of this kind is seen until it succeeds; retrying");
            }
        }
        Some((item, (events, pacing, pause)))
    })
}

/// How loud an error from a kube `Controller`'s stream is. A failed reconcile is the error
/// policy's to log, a queue error is a watch error [`paced`] has logged already, and an object
/// deleted before its turn is routine: debug. A runner error means the controller's store was
/// dropped before it was ready, so the controller reconciles nothing: a warning.
pub fn controller_error_level<R, Q>(error: &controller::Error<R, Q>) -> tracing::Level {
    match error {
        controller::Error::RunnerError(_) => tracing::Level::WARN,
        controller::Error::ObjectNotFound(_)
        | controller::Error::ReconcilerFailed(..)
        | controller::Error::QueueError(_) => tracing::Level::DEBUG,
    }
}

/// Logs an error from the stream of the `Controller` named `controller` at
/// [`controller_error_level`].
pub fn log_controller_error<R, Q>(controller: &str, error: &controller::Error<R, Q>)
where
    R: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    if controller_error_level(error) == tracing::Level::WARN {
        tracing::warn!(controller, %error, "controller stopped reconciling");
    } else {
        tracing::debug!(controller, %error, "controller event");
    }
}

/// The backoff for a kube `Controller`'s trigger streams when each of them is [`paced`]
/// already: none, so one watch's errors never hold back the triggers of the others.
#[derive(Clone, Copy, Debug, Default)]
pub struct PacedTriggers;

impl Iterator for PacedTriggers {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl Backoff for PacedTriggers {
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::core::Status;

    /// 1 s, 2 s, 4 s, … without jitter, so tests can name the pauses.
    struct Doubling(u32);

    impl Iterator for Doubling {
        type Item = Duration;
        fn next(&mut self) -> Option<Duration> {
            self.0 += 1;
            Some(Duration::from_secs(1 << (self.0 - 1)))
        }
    }

    impl Backoff for Doubling {
        fn reset(&mut self) {
            self.0 = 0;
        }
    }

    type Item = Result<Event<ConfigMap>, watcher::Error>;

    fn status(code: u16) -> Box<Status> {
        Box::new(
            Status::failure(
                "The resourceVersion for the provided watch is too old.",
                "Expired",
            )
            .with_code(code),
        )
    }

    fn gone() -> Item {
        Err(watcher::Error::WatchError(status(410)))
    }

    fn list_failed(code: u16) -> Item {
        Err(watcher::Error::InitialListFailed(kube::Error::Api(status(
            code,
        ))))
    }

    fn init() -> Item {
        Ok(Event::Init)
    }

    fn init_done() -> Item {
        Ok(Event::InitDone)
    }

    fn object() -> Item {
        Ok(Event::InitApply(ConfigMap::default()))
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn a_410_relists_at_once_and_does_not_grow_the_backoff() {
        let mut pacing = WatchPacing::new(Doubling(0));
        let start = Instant::now();
        let mut now = start;
        for _ in 0..5 {
            assert_eq!(pacing.pause_after(&gone(), now), None);
            assert_eq!(pacing.pause_after(&init(), now), None);
            now += Duration::from_secs(1);
        }
        // A real error after all those 410s takes the first step of the backoff.
        assert_eq!(pacing.pause_after(&list_failed(500), now), secs(1));
    }

    #[test]
    fn back_to_back_410s_are_spaced_by_the_minimum_relist_interval() {
        let mut pacing = WatchPacing::new(Doubling(0));
        let now = Instant::now();
        assert_eq!(pacing.pause_after(&gone(), now), None);
        let soon = now + Duration::from_millis(50);
        assert_eq!(
            pacing.pause_after(&gone(), soon),
            Some(MIN_RELIST_INTERVAL - Duration::from_millis(50))
        );
        // The next relist is counted from when the delayed one happens.
        let after = now + MIN_RELIST_INTERVAL + Duration::from_millis(10);
        assert_eq!(
            pacing.pause_after(&gone(), after),
            Some(MIN_RELIST_INTERVAL - Duration::from_millis(10))
        );
    }

    #[test]
    fn an_expired_list_continuation_is_a_410_too() {
        assert!(is_gone(&list_failed(410).unwrap_err()));
        assert!(!is_gone(&list_failed(500).unwrap_err()));
        // kube's watcher retries a watch request answered 410 with the same version.
        let start = watcher::Error::WatchStartFailed(kube::Error::Api(status(410)));
        assert!(!is_gone(&start));
    }

    #[test]
    fn only_an_expired_watch_is_routine() {
        assert!(is_routine(&gone().unwrap_err()));
        // A list that outlived compaction, a forbidden or failing list, a refused watch:
        // each leaves the controller blind, so each is worth a warning.
        assert!(!is_routine(&list_failed(410).unwrap_err()));
        assert!(!is_routine(&list_failed(403).unwrap_err()));
        assert!(!is_routine(&list_failed(500).unwrap_err()));
        let start = watcher::Error::WatchStartFailed(kube::Error::Api(status(410)));
        assert!(!is_routine(&start));
    }

    #[test]
    fn a_watch_is_named_by_its_kind() {
        assert_eq!(kind_name::<ConfigMap>(), "ConfigMap");
        assert_eq!(
            kind_name::<kube::core::PartialObjectMeta<ConfigMap>>(),
            "PartialObjectMeta"
        );
    }

    #[test]
    fn what_others_log_or_a_deletion_explains_is_a_debug_line() {
        type Error = controller::Error<std::io::Error, watcher::Error>;
        let gone = kube::runtime::reflector::ObjectRef::<ConfigMap>::new("demo").erase();
        let levels = [
            Error::ObjectNotFound(Box::new(gone.clone())),
            Error::ReconcilerFailed(std::io::Error::other("conflict"), Box::new(gone)),
            Error::QueueError(watcher::Error::WatchError(status(500))),
        ]
        .map(|error| controller_error_level(&error));
        assert_eq!(levels, [tracing::Level::DEBUG; 3]);
    }

    #[test]
    fn real_errors_back_off_further_until_the_watch_delivers() {
        let mut pacing = WatchPacing::new(Doubling(0));
        let now = Instant::now();
        // A list that keeps failing: starting the next list is no success.
        assert_eq!(pacing.pause_after(&list_failed(500), now), secs(1));
        assert_eq!(pacing.pause_after(&init(), now), None);
        assert_eq!(pacing.pause_after(&list_failed(429), now), secs(2));
        assert_eq!(pacing.pause_after(&init(), now), None);
        assert_eq!(pacing.pause_after(&list_failed(500), now), secs(4));
        // A 410 in between neither waits nor resets.
        assert_eq!(pacing.pause_after(&gone(), now), None);
        assert_eq!(pacing.pause_after(&list_failed(500), now), secs(8));
        // The list answers: the next error starts over.
        assert_eq!(pacing.pause_after(&object(), now), None);
        assert_eq!(pacing.pause_after(&list_failed(500), now), secs(1));
        assert_eq!(pacing.pause_after(&init_done(), now), None);
        assert_eq!(pacing.pause_after(&list_failed(500), now), secs(1));
    }

    #[test]
    fn controller_triggers_are_never_held_back() {
        let mut triggers = PacedTriggers;
        assert_eq!(triggers.next(), Some(Duration::ZERO));
        assert_eq!(triggers.nth(100), Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn the_stream_relists_after_a_410_without_sleeping() {
        let events: Vec<Item> = vec![
            object(),
            gone(),
            init(),
            object(),
            init_done(),
            list_failed(500),
            object(),
        ];
        let start = Instant::now();
        let mut stream = std::pin::pin!(paced(futures::stream::iter(events)));
        let mut at = Vec::new();
        while stream.next().await.is_some() {
            at.push(Instant::now() - start);
        }
        // Everything up to the 500 comes without a pause (well under the backoff's first
        // step); after it, that step: 0.8 s to 1.6 s with jitter.
        assert_eq!(at.len(), 7);
        assert!(at[5] < Duration::from_millis(500), "{at:?}");
        assert!(at[6] - at[5] >= Duration::from_millis(800), "{at:?}");
    }
}
