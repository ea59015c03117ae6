//! A de-duplicating work queue (as client-go's): a key is queued at most once, and a key being
//! processed is not handed to a second worker; if it changes meanwhile it is queued again when
//! the first worker is done. Plus a timer task that queues keys when they are due.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue;

pub type Key = Arc<str>;

#[derive(Default)]
struct State {
    queue: VecDeque<Key>,
    dirty: HashSet<Key>,
    processing: HashSet<Key>,
}

#[derive(Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    notify: Notify,
}

impl WorkQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn add(&self, key: Key) {
        let mut state = self.lock();
        if !state.dirty.insert(key.clone()) {
            return;
        }
        if !state.processing.contains(&key) {
            state.queue.push_back(key);
            drop(state);
            self.notify.notify_one();
        }
    }

    /// The next key to work on; call [`Self::done`] with it afterwards.
    pub async fn next(&self) -> Key {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.lock();
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    let more = !state.queue.is_empty();
                    drop(state);
                    if more {
                        // Pass the baton: a notify_one may have been consumed by this worker.
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, key: &Key) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.queue.push_back(key.clone());
            drop(state);
            self.notify.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Requests to the timer task.
pub enum TimerRequest {
    /// Queue `key` after this long (an earlier pending wake-up for it wins).
    Wake(Key, Duration),
    /// Forget `key` (the pod is gone).
    Cancel(Key),
}

/// Runs until every sender is dropped: keeps one pending wake-up per key, queues keys when due.
pub async fn run_timers(
    queue: Arc<WorkQueue>,
    mut requests: mpsc::UnboundedReceiver<TimerRequest>,
) {
    let mut delays: DelayQueue<Key> = DelayQueue::new();
    let mut pending: HashMap<Key, (delay_queue::Key, Instant)> = HashMap::new();
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                None => return,
                Some(TimerRequest::Wake(key, after)) => {
                    let due = Instant::now() + after;
                    match pending.get(&key) {
                        Some((_, existing)) if *existing <= due => {}
                        Some((slot, _)) => {
                            delays.reset_at(slot, due);
                            pending.insert(key, (*slot, due));
                        }
                        None => {
                            let slot = delays.insert_at(key.clone(), due);
                            pending.insert(key, (slot, due));
                        }
                    }
                }
                Some(TimerRequest::Cancel(key)) => {
                    if let Some((slot, _)) = pending.remove(&key) {
                        delays.remove(&slot);
                    }
                }
            },
            Some(expired) = delays.next(), if !delays.is_empty() => {
                let key = expired.into_inner();
                pending.remove(&key);
                queue.add(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Arc::from(s)
    }

    #[tokio::test]
    async fn deduplicates_and_requeues_keys_changed_while_processing() {
        let queue = WorkQueue::default();
        queue.add(key("a"));
        queue.add(key("a"));
        queue.add(key("b"));
        assert_eq!(queue.len(), 2);
        let first = queue.next().await;
        assert_eq!(&*first, "a");
        queue.add(key("a")); // changed while being processed: not handed out twice
        assert_eq!(&*queue.next().await, "b");
        assert!(queue.is_empty());
        queue.done(&first);
        assert_eq!(&*queue.next().await, "a");
    }

    #[tokio::test]
    async fn timers_queue_keys_when_due_and_keep_the_earliest() {
        let queue = Arc::new(WorkQueue::default());
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_timers(queue.clone(), receiver));
        sender
            .send(TimerRequest::Wake(key("late"), Duration::from_secs(50)))
            .unwrap();
        sender
            .send(TimerRequest::Wake(key("late"), Duration::from_millis(100)))
            .unwrap();
        sender
            .send(TimerRequest::Wake(key("late"), Duration::from_secs(90)))
            .unwrap();
        sender
            .send(TimerRequest::Wake(key("gone"), Duration::from_millis(100)))
            .unwrap();
        sender.send(TimerRequest::Cancel(key("gone"))).unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(&*queue.next().await, "late");
        assert!(queue.is_empty());
        drop(sender);
        task.await.unwrap();
    }
}
