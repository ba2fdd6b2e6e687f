//! Group commit for verified inbound deliveries. Receivers hand their delivery (and, for a push,
//! the rows it records, prepared on the receiving task) to a writer and wait for its answer; the
//! writer takes every delivery waiting at that moment and records them in one transaction
//! (deliveries, then commits, branches and analysis jobs: a few multi-row statements, or, on the
//! writer's own SQLite connection, prepared single-row ones), instead of one transaction each. On
//! SQLite, whose single writer connection is the bottleneck, this is what lets verified pushes
//! keep up with the HTTP layer.
//!
//! A delivery's row is written first, with its idempotency key: a repeat (also within one batch)
//! writes nothing and is answered as a duplicate. When a batch fails, each of its deliveries is
//! retried alone, so one bad delivery cannot fail the others.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use super::forge::ForgeEvent;
use super::process::apply;
use crate::store::direct::DirectSqlite;
use crate::store::inbound::{self as kept, InboundDelivery};
use crate::store::record::PushRows;
use crate::store::services::Service;
use crate::store::{HeldConnection, Store, StoreError, StoreResult, Tx};

/// Deliveries taken into one transaction at most.
const MAX_BATCH: usize = 128;

/// One verified delivery to record for one tenant.
pub struct Work {
    pub tenant_id: String,
    /// The tenant's services the delivery is for.
    pub services: Vec<Service>,
    pub repository: Option<String>,
    /// Shared: one request may feed several tenants.
    pub event: Arc<ForgeEvent>,
    /// The row to keep, with its result, summary and idempotency key filled in.
    pub delivery: InboundDelivery,
    /// For a push: what it records, written with the delivery (see [`super::push_rows`]).
    pub push_rows: Option<PushRows>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Stored,
    /// A delivery with the same idempotency key was recorded before: nothing changed.
    Duplicate,
}

/// Why a delivery was not written, with the delivery handed back to be kept as failed (`None`
/// when the writer ended with it, which only happens at shutdown).
pub type NotWritten = (StoreError, Option<Box<Work>>);

struct Job {
    work: Work,
    /// A written delivery's work comes back with the answer, to be dropped by the receiver that
    /// sent it: freeing it is not the one writer's time to spend.
    reply: oneshot::Sender<Result<(Written, Work), NotWritten>>,
    /// Counts the delivery as on its way until a writer takes it.
    on_its_way: Option<OnItsWay>,
}

/// A job a writer takes from the queue.
trait Taken {
    /// Called as the writer takes the job: it is no longer on its way.
    fn taken(&mut self);
}

impl Taken for Job {
    fn taken(&mut self) {
        self.on_its_way = None;
    }
}

/// The handle receivers send deliveries through.
#[derive(Clone)]
pub struct InboundWriter {
    sender: mpsc::Sender<Job>,
    on_their_way: Arc<OnTheirWay>,
}

/// Deliveries on their way to the writer: receivers that have a body in hand and are verifying
/// and reading it, or have queued it and wait for a writer to take it (see [`LINGER_AT_MOST`]).
#[derive(Default)]
struct OnTheirWay {
    count: AtomicUsize,
    /// Woken when the count falls to zero, so a lingering writer need not wait out its time for
    /// a request that failed on the way.
    none_left: Notify,
}

/// Counts one delivery as on its way to the writer until it is dropped.
pub struct OnItsWay(Arc<OnTheirWay>);

impl Drop for OnItsWay {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

impl InboundWriter {
    /// Starts `writers` writer tasks (one suits SQLite; PostgreSQL takes several). They end when
    /// every handle is dropped.
    ///
    /// The writers run on a runtime of their own, on their own thread. A batch takes several
    /// round trips to the database, and on the shared runtime each one waited behind every
    /// request task for a worker to resume the writer: the one writer all receivers wait for
    /// sat idle while the machine had cores to spare (bench/README.md).
    pub fn start(store: Store, writers: usize) -> std::io::Result<InboundWriter> {
        let (sender, receiver) = mpsc::channel::<Job>(MAX_BATCH * 8);
        let receiver = Arc::new(Mutex::new(receiver));
        let on_their_way = Arc::new(OnTheirWay::default());
        let coming = on_their_way.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("inbound-writer".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let loops: Vec<_> = (0..writers.max(1))
                        .map(|_| {
                            let (store, receiver) = (store.clone(), receiver.clone());
                            tokio::spawn(run_writer(store, receiver, coming.clone()))
                        })
                        .collect();
                    for writer in loops {
                        let _ = writer.await;
                    }
                });
            })?;
        Ok(InboundWriter {
            sender,
            on_their_way,
        })
    }

    /// Counts a delivery as on its way, from when its body is read until a writer takes it
    /// (the guard goes with [`InboundWriter::write`]) or the request fails (the guard is
    /// dropped): a writer that has just written a batch waits a moment for such deliveries
    /// rather than commit a small one.
    pub fn on_its_way(&self) -> OnItsWay {
        self.on_their_way.count.fetch_add(1, Ordering::AcqRel);
        OnItsWay(self.on_their_way.clone())
    }

    /// Records `work` and answers once it is committed (or found to be a repeat).
    pub async fn write(
        &self,
        work: Work,
        on_its_way: Option<OnItsWay>,
    ) -> Result<Written, NotWritten> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Database(sqlx::Error::PoolClosed);
        let job = Job {
            work,
            reply,
            on_its_way,
        };
        if let Err(refused) = self.sender.send(job).await {
            return Err((closed(), Some(Box::new(refused.0.work))));
        }
        let (written, work) = answer.await.unwrap_or_else(|_| Err((closed(), None)))?;
        drop(work);
        Ok(written)
    }
}

/// The longest a writer keeps the writing connection while deliveries keep coming: others
/// that write (the outbound queue, the API) wait at most about this long behind a flood.
const HOLD_AT_MOST: Duration = Duration::from_millis(25);

/// How long a writer keeps the connection waiting for the next delivery before giving it back:
/// receivers answered a moment ago are about to send more.
const IDLE_BEFORE_RELEASE: Duration = Duration::from_millis(2);

/// The longest a writer that has just written a batch waits for deliveries on their way before
/// it writes the next. Each commit costs about as much as several deliveries (the log pages of
/// the tables' and indexes' last pages), and while the machine is busy the receivers behind a
/// small batch are moments away; waiting for them keeps batches large.
const LINGER_AT_MOST: Duration = Duration::from_millis(1);

/// One writer: takes a batch, then keeps the writing connection for the batches that follow
/// close behind it, within [`HOLD_AT_MOST`].
async fn run_writer(
    store: Store,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    on_their_way: Arc<OnTheirWay>,
) {
    let mut direct = match store.open_direct() {
        Ok(direct) => direct,
        Err(error) => {
            tracing::warn!(%error, "the inbound writer's own SQLite connection did not open; writing through sqlx");
            None
        }
    };
    while let Next::Jobs(batch) = next_batch(&receiver, None, None).await {
        let mut held = match store.hold_writer().await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, "no writing connection held for an inbound batch; writing it through the pool");
                write(&mut Connection::Pool(&store), batch).await;
                continue;
            }
        };
        let since = Instant::now();
        let mut connection = Connection::Held(&mut held, direct.as_mut());
        write(&mut connection, batch).await;
        while since.elapsed() < HOLD_AT_MOST {
            match next_batch(&receiver, Some(IDLE_BEFORE_RELEASE), Some(&on_their_way)).await {
                Next::Jobs(batch) => write(&mut connection, batch).await,
                Next::Idle | Next::Closed => break,
            }
        }
        if direct.as_ref().is_some_and(|direct| !direct.is_idle()) {
            tracing::error!(
                "a failed inbound batch left the writer's own SQLite connection in a transaction; closing it and writing through sqlx"
            );
            direct = None;
        }
    }
}

enum Next<J = Job> {
    Jobs(Vec<J>),
    /// Nothing came within the wait.
    Idle,
    /// Every handle is gone: the writer ends.
    Closed,
}

/// Waits for one job (at most `wait`, if given), then takes every other job already waiting (up
/// to the batch size), and, given the deliveries on their way, those that arrive while any are
/// on their way, within [`LINGER_AT_MOST`].
async fn next_batch<J: Taken>(
    receiver: &Mutex<mpsc::Receiver<J>>,
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
        while batch.len() < MAX_BATCH {
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
    while batch.len() < MAX_BATCH {
        // Registered before the count is read, so a fall to zero in between is not missed.
        let none_left = on_their_way.none_left.notified();
        tokio::pin!(none_left);
        none_left.as_mut().enable();
        if on_their_way.count.load(Ordering::Acquire) == 0 {
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

/// Where a batch's transaction runs: a connection the writer holds (with, on SQLite, the
/// writer's own connection that writes while it is held), or one from the pool.
enum Connection<'a> {
    Held(&'a mut HeldConnection, Option<&'a mut DirectSqlite>),
    Pool(&'a Store),
}

impl Connection<'_> {
    async fn begin(&mut self) -> StoreResult<Tx<'_>> {
        match self {
            Connection::Held(held, _) => held.begin().await,
            Connection::Pool(store) => store.begin().await,
        }
    }
}

async fn write(connection: &mut Connection<'_>, batch: Vec<Job>) {
    metrics::histogram!("hookline_inbound_write_batch_size").record(batch.len() as f64);
    let started = Instant::now();
    let works: Vec<&Work> = batch.iter().map(|job| &job.work).collect();
    let result = write_batch(connection, &works).await;
    metrics::histogram!("hookline_inbound_write_batch_seconds")
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(written) => {
            for (job, written) in batch.into_iter().zip(written) {
                let _ = job.reply.send(Ok((written, job.work)));
            }
        }
        Err(error) => {
            if batch.len() > 1 {
                tracing::warn!(%error, deliveries = batch.len(), "an inbound batch failed; writing its deliveries one by one");
            }
            let alone = batch.len() == 1;
            let mut first_error = Some(error);
            for Job { work, reply, .. } in batch {
                let result = if alone {
                    Err(first_error.take().expect("one error for one job"))
                } else {
                    write_batch(connection, &[&work])
                        .await
                        .map(|mut written| written.remove(0))
                };
                let _ = reply.send(match result {
                    Ok(written) => Ok((written, work)),
                    Err(error) => Err((error, Some(Box::new(work)))),
                });
            }
        }
    }
}

/// Records `works` in one transaction; answers for each, in order.
async fn write_batch(
    connection: &mut Connection<'_>,
    works: &[&Work],
) -> StoreResult<Vec<Written>> {
    let rows: Vec<&InboundDelivery> = works.iter().map(|work| &work.delivery).collect();
    let pushes: Vec<&PushRows> = works
        .iter()
        .filter_map(|work| work.push_rows.as_ref())
        .collect();
    if let Connection::Held(held, direct) = connection
        && pushes.len() == works.len()
    {
        // Only pushes (the steady stream): nothing to apply one by one after the inserts.
        let inserted: HashSet<String> =
            kept::insert_many_alone(held, direct.as_deref_mut(), &rows, &pushes)
                .await?
                .into_iter()
                .collect();
        return Ok(works
            .iter()
            .map(|work| match inserted.contains(&work.delivery.id) {
                true => Written::Stored,
                false => Written::Duplicate,
            })
            .collect());
    }
    let mut tx = connection.begin().await?;
    let inserted: HashSet<String> = kept::insert_many_in(&mut tx, &rows, &pushes)
        .await?
        .into_iter()
        .collect();
    let mut written = Vec::with_capacity(works.len());
    for work in works {
        if !inserted.contains(&work.delivery.id) {
            written.push(Written::Duplicate);
            continue;
        }
        written.push(Written::Stored);
        if work.push_rows.is_some() {
            // Written above, with the delivery.
            continue;
        }
        let applied = apply(
            &mut tx,
            &work.delivery.id,
            &work.tenant_id,
            &work.services,
            work.repository.as_deref(),
            &work.event,
        )
        .await?;
        kept::set_outcome_in(
            &mut tx,
            &work.delivery.id,
            applied.result,
            &applied.summary.to_string(),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job as the queue sees one: a number, and the count it is on its way in.
    struct TestJob(u32, Option<OnItsWay>);

    impl Taken for TestJob {
        fn taken(&mut self) {
            self.1 = None;
        }
    }

    fn on_its_way(on_their_way: &Arc<OnTheirWay>) -> OnItsWay {
        on_their_way.count.fetch_add(1, Ordering::AcqRel);
        OnItsWay(on_their_way.clone())
    }

    fn queue(jobs: Vec<TestJob>) -> (mpsc::Sender<TestJob>, Mutex<mpsc::Receiver<TestJob>>) {
        let (sender, receiver) = mpsc::channel(MAX_BATCH);
        for job in jobs {
            assert!(sender.try_send(job).is_ok());
        }
        (sender, Mutex::new(receiver))
    }

    async fn next(
        receiver: &Mutex<mpsc::Receiver<TestJob>>,
        on_their_way: Option<&OnTheirWay>,
    ) -> Vec<u32> {
        match next_batch(receiver, Some(IDLE_BEFORE_RELEASE), on_their_way).await {
            Next::Jobs(jobs) => jobs.into_iter().map(|job| job.0).collect(),
            Next::Idle => panic!("idle"),
            Next::Closed => panic!("closed"),
        }
    }

    fn count(on_their_way: &OnTheirWay) -> usize {
        on_their_way.count.load(Ordering::Acquire)
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
    async fn queued_deliveries_stop_being_on_their_way_when_taken() {
        let on_their_way = Arc::new(OnTheirWay::default());
        let queued = vec![
            TestJob(1, Some(on_its_way(&on_their_way))),
            TestJob(2, Some(on_its_way(&on_their_way))),
        ];
        let (_sender, receiver) = queue(queued);
        let started = tokio::time::Instant::now();
        assert_eq!(next(&receiver, Some(&on_their_way)).await, vec![1, 2]);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "nothing else was on its way"
        );
        assert_eq!(count(&on_their_way), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_a_delivery_on_its_way() {
        let on_their_way = Arc::new(OnTheirWay::default());
        let (sender, receiver) = queue(vec![TestJob(1, None)]);
        let coming = on_its_way(&on_their_way);
        // The receiver still verifying finishes after the writer has begun to wait.
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
        assert_eq!(count(&on_their_way), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_that_fails_on_its_way_ends_the_wait_at_once() {
        let on_their_way = Arc::new(OnTheirWay::default());
        let (_sender, receiver) = queue(vec![TestJob(1, None)]);
        let failing = on_its_way(&on_their_way);
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
    async fn a_delivery_that_never_arrives_delays_a_batch_at_most_the_linger() {
        let on_their_way = Arc::new(OnTheirWay::default());
        let (_sender, receiver) = queue(vec![TestJob(1, None)]);
        let _stuck = on_its_way(&on_their_way);
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
