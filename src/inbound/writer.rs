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
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc, oneshot};

use super::forge::ForgeEvent;
use super::process::apply;
pub use crate::group_commit::OnItsWay;
use crate::group_commit::{self, Next, OnTheirWay, Taken, next_batch};
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

impl InboundWriter {
    /// Starts `writers` writer tasks (one suits SQLite; PostgreSQL takes several), on a thread of
    /// their own ([`group_commit`]). They end when every handle is dropped.
    pub fn start(store: Store, writers: usize) -> std::io::Result<InboundWriter> {
        let (sender, receiver) = mpsc::channel::<Job>(MAX_BATCH * 8);
        let on_their_way = Arc::new(OnTheirWay::default());
        let coming = on_their_way.clone();
        group_commit::start_writers("inbound-writer", writers, receiver, move |receiver| {
            run_writer(store.clone(), receiver, coming.clone())
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
        self.on_their_way.one_more()
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
    while let Next::Jobs(batch) = next_batch(&receiver, MAX_BATCH, None, None).await {
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
            match next_batch(
                &receiver,
                MAX_BATCH,
                Some(IDLE_BEFORE_RELEASE),
                Some(&on_their_way),
            )
            .await
            {
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
