//! Group commit, shared by the writers that use it (verified inbound deliveries, published
//! events): callers queue a job and wait for its answer; a writer takes every job waiting at that
//! moment, up to a batch, and writes them in one transaction or statement instead of one each.
//! While the database is busy with one batch the next one gathers, so batches grow with the load
//! and a lone job waits for nothing.
//!
//! The writers run on a runtime of their own, on their own thread. A batch takes round trips to
//! the database, and on the shared runtime each one waited behind every request task for a worker
//! to resume the writer: the writer all requests wait for sat idle while the machine had cores to
//! spare (bench/README.md).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc};

/// A job a writer takes from the queue.
pub trait Taken {
    /// Called as the writer takes the job: it is no longer on its way.
    fn taken(&mut self) {}
}

/// The longest a writer that has just written a batch waits for jobs on their way before it
/// writes the next. Each commit costs about as much as several jobs (the log pages of the tables'
/// and indexes' last pages), and while the machine is busy the callers behind a small batch are
/// moments away; waiting for them keeps batches large.
pub const LINGER_AT_MOST: Duration = Duration::from_millis(1);

/// Jobs on their way to a writer: callers that have a request in hand and are checking it, or
/// have queued it and wait for a writer to take it (see [`LINGER_AT_MOST`]).
#[derive(Default)]
pub struct OnTheirWay {
    count: AtomicUsize,
    /// Woken when the count falls to zero, so a lingering writer need not wait out its time for
    /// a request that failed on the way.
    none_left: Notify,
}

impl OnTheirWay {
    /// Counts one more job as on its way, until the guard is dropped.
    pub fn one_more(self: &Arc<Self>) -> OnItsWay {
        self.count.fetch_add(1, Ordering::AcqRel);
        OnItsWay(self.clone())
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// Counts one job as on its way to a writer until it is dropped.
pub struct OnItsWay(Arc<OnTheirWay>);

impl Drop for OnItsWay {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

pub enum Next<J> {
    Jobs(Vec<J>),
    /// Nothing came within the wait.
    Idle,
    /// Every sender is gone: the writer ends.
    Closed,
}

/// Waits for one job (at most `wait`, if given), then takes every other job already waiting (up
/// to `max` in all), and, given the jobs on their way, those that arrive while any are on their
/// way, within [`LINGER_AT_MOST`].
pub async fn next_batch<J: Taken>(
    receiver: &Mutex<mpsc::Receiver<J>>,
    max: usize,
    wait: Option<Duration>,
    on_their_way: Option<&OnTheirWay>,
) -> Next<J> {
    let mut receiver = receiver.lock().await;
    let first = match wait {
        None => receiver.recv().await,
        Some(wait) => match tokio::time::timeout(wait, receiver.recv()).await {
            Ok(first) => first,
            Err(_) => return Next::Idle,
        },
    };
    let Some(first) = first else {
        return Next::Closed;
    };
    let mut batch = Vec::new();
    let take = |mut job: J, batch: &mut Vec<J>| {
        job.taken();
        batch.push(job);
    };
    take(first, &mut batch);
    let take_waiting = |receiver: &mut mpsc::Receiver<J>, batch: &mut Vec<J>| {
        while batch.len() < max {
            match receiver.try_recv() {
                Ok(job) => take(job, batch),
                Err(_) => break,
            }
        }
    };
    take_waiting(&mut receiver, &mut batch);
    let Some(on_their_way) = on_their_way else {
        return Next::Jobs(batch);
    };
    let until = tokio::time::Instant::now() + LINGER_AT_MOST;
    while batch.len() < max {
        // Registered before the count is read, so a fall to zero in between is not missed.
        let none_left = on_their_way.none_left.notified();
        tokio::pin!(none_left);
        none_left.as_mut().enable();
        if on_their_way.count() == 0 {
            break;
        }
        tokio::select! {
            job = receiver.recv() => match job {
                Some(job) => {
                    take(job, &mut batch);
                    take_waiting(&mut receiver, &mut batch);
                }
                None => break,
            },
            () = &mut none_left => {}
            () = tokio::time::sleep_until(until) => break,
        }
    }
    Next::Jobs(batch)
}

/// Starts `writers` writer loops, each made by `writer` from the shared queue, on a runtime of
/// their own on a thread named `name` (see the module's note). They end when every sender is
/// dropped.
pub fn start_writers<J, F, W>(
    name: &str,
    writers: usize,
    receiver: mpsc::Receiver<J>,
    writer: W,
) -> std::io::Result<()>
where
    J: Send + 'static,
    F: Future<Output = ()> + Send + 'static,
    W: Fn(Arc<Mutex<mpsc::Receiver<J>>>) -> F + Send + 'static,
{
    let receiver = Arc::new(Mutex::new(receiver));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                let loops: Vec<_> = (0..writers.max(1))
                    .map(|_| tokio::spawn(writer(receiver.clone())))
                    .collect();
                for running in loops {
                    let _ = running.await;
                }
            });
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 128;
    const IDLE: Duration = Duration::from_millis(2);

    /// A job as the queue sees one: a number, and the count it is on its way in.
    struct TestJob(u32, Option<OnItsWay>);

    impl Taken for TestJob {
        fn taken(&mut self) {
            self.1 = None;
        }
    }

    fn queue(jobs: Vec<TestJob>) -> (mpsc::Sender<TestJob>, Mutex<mpsc::Receiver<TestJob>>) {
        let (sender, receiver) = mpsc::channel(MAX);
        for job in jobs {
            assert!(sender.try_send(job).is_ok());
        }
        (sender, Mutex::new(receiver))
    }

    async fn next(
        receiver: &Mutex<mpsc::Receiver<TestJob>>,
        on_their_way: Option<&OnTheirWay>,
    ) -> Vec<u32> {
        match next_batch(receiver, MAX, Some(IDLE), on_their_way).await {
            Next::Jobs(jobs) => jobs.into_iter().map(|job| job.0).collect(),
            Next::Idle => panic!("idle"),
            Next::Closed => panic!("closed"),
        }
    }

    // Time is paused: it moves only when every task waits, so waits are exact, not slept.

    #[tokio::test(start_paused = true)]
    async fn a_batch_takes_what_waits_and_waits_for_nothing_when_nothing_is_on_its_way() {
        let on_their_way = Arc::new(OnTheirWay::default());
        let (_sender, receiver) = queue(vec![TestJob(1, None), TestJob(2, None)]);
        let started = tokio::time::Instant::now();
        assert_eq!(next(&receiver, Some(&on_their_way)).await, vec![1, 2]);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_takes_at_most_its_size() {
        let jobs = (0..5).map(|n| TestJob(n, None)).collect();
        let (_sender, receiver) = queue(jobs);
        let first = match next_batch(&receiver, 3, Some(IDLE), None).await {
            Next::Jobs(jobs) => jobs.into_iter().map(|job| job.0).collect::<Vec<_>>(),
            _ => panic!("no jobs"),
        };
        assert_eq!(first, vec![0, 1, 2]);
        assert_eq!(next(&receiver, None).await, vec![3, 4]);
        assert!(matches!(
            next_batch(&receiver, 3, Some(IDLE), None).await,
            Next::Idle
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn queued_jobs_stop_being_on_their_way_when_taken() {
        let on_their_way = Arc::new(OnTheirWay::default());
        let queued = vec![
            TestJob(1, Some(on_their_way.one_more())),
            TestJob(2, Some(on_their_way.one_more())),
        ];
        let (_sender, receiver) = queue(queued);
        let started = tokio::time::Instant::now();
        assert_eq!(next(&receiver, Some(&on_their_way)).await, vec![1, 2]);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "nothing else was on its way"
        );
        assert_eq!(on_their_way.count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_a_job_on_its_way() {
        let on_their_way = Arc::new(OnTheirWay::default());
        let (sender, receiver) = queue(vec![TestJob(1, None)]);
        let coming = on_their_way.one_more();
        // The caller still checking its request finishes after the writer has begun to wait.
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            assert!(sender.send(TestJob(2, Some(coming))).await.is_ok());
        });
        let started = tokio::time::Instant::now();
        assert_eq!(next(&receiver, Some(&on_their_way)).await, vec![1, 2]);
        assert!(
            started.elapsed() < LINGER_AT_MOST,
            "it came before the linger ended"
        );
        assert_eq!(on_their_way.count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_that_fails_on_its_way_ends_the_wait_at_once() {
        let on_their_way = Arc::new(OnTheirWay::default());
        let (_sender, receiver) = queue(vec![TestJob(1, None)]);
        let failing = on_their_way.one_more();
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            drop(failing);
        });
        let started = tokio::time::Instant::now();
        assert_eq!(next(&receiver, Some(&on_their_way)).await, vec![1]);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_that_never_arrives_delays_a_batch_at_most_the_linger() {
        let on_their_way = Arc::new(OnTheirWay::default());
        let (_sender, receiver) = queue(vec![TestJob(1, None)]);
        let _stuck = on_their_way.one_more();
        let started = tokio::time::Instant::now();
        assert_eq!(next(&receiver, Some(&on_their_way)).await, vec![1]);
        assert!(
            started.elapsed() <= LINGER_AT_MOST,
            "{:?}",
            started.elapsed()
        );
        // Without a count (a writer's first batch), nothing is waited for.
        let (_sender, receiver) = queue(vec![TestJob(1, None)]);
        let started = tokio::time::Instant::now();
        assert_eq!(next(&receiver, None).await, vec![1]);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
