//! Group commit for verified inbound deliveries. Receivers hand their delivery to a writer task
//! and wait for its answer; the writer takes every delivery waiting at that moment and records
//! them in one transaction with a few multi-row statements (deliveries, then commits, branches
//! and analysis jobs through [`record_pushes_in`]), instead of one transaction of many statements each. On SQLite, whose single
//! writer connection is the bottleneck, this is what lets verified pushes keep up with the HTTP
//! layer.
//!
//! A delivery's row is written first, with its idempotency key: a repeat (also within one batch)
//! writes nothing and is answered as a duplicate. When a batch fails, each of its deliveries is
//! retried alone, so one bad delivery cannot fail the others.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::forge::ForgeEvent;
use super::process::{PushFor, apply, record_pushes_in};
use crate::store::inbound::{self as kept, InboundDelivery};
use crate::store::services::Service;
use crate::store::{Store, StoreError, StoreResult};

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
    reply: oneshot::Sender<Result<Written, NotWritten>>,
}

/// The handle receivers send deliveries through.
#[derive(Clone)]
pub struct InboundWriter {
    sender: mpsc::Sender<Job>,
}

impl InboundWriter {
    /// Starts `writers` writer tasks (one suits SQLite; PostgreSQL takes several). They end when
    /// every handle is dropped.
    pub fn start(store: Store, writers: usize) -> InboundWriter {
        let (sender, receiver) = mpsc::channel::<Job>(MAX_BATCH * 8);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..writers.max(1) {
            let (store, receiver) = (store.clone(), receiver.clone());
            tokio::spawn(async move {
                while let Some(batch) = next_batch(&receiver).await {
                    write(&store, batch).await;
                }
            });
        }
        InboundWriter { sender }
    }

    /// Records `work` and answers once it is committed (or found to be a repeat).
    pub async fn write(&self, work: Work) -> Result<Written, NotWritten> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Database(sqlx::Error::PoolClosed);
        if let Err(refused) = self.sender.send(Job { work, reply }).await {
            return Err((closed(), Some(Box::new(refused.0.work))));
        }
        answer.await.unwrap_or_else(|_| Err((closed(), None)))
    }
}

/// Waits for one job, then takes every other job already waiting (up to the batch size).
async fn next_batch(receiver: &Mutex<mpsc::Receiver<Job>>) -> Option<Vec<Job>> {
    let mut receiver = receiver.lock().await;
    let first = receiver.recv().await?;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn write(store: &Store, batch: Vec<Job>) {
    let works: Vec<&Work> = batch.iter().map(|job| &job.work).collect();
    match write_batch(store, &works).await {
        Ok(written) => {
            for (job, written) in batch.into_iter().zip(written) {
                let _ = job.reply.send(Ok(written));
            }
        }
        Err(error) => {
            if batch.len() > 1 {
                tracing::warn!(%error, deliveries = batch.len(), "an inbound batch failed; writing its deliveries one by one");
            }
            let alone = batch.len() == 1;
            let mut first_error = Some(error);
            for Job { work, reply } in batch {
                let result = if alone {
                    Err(first_error.take().expect("one error for one job"))
                } else {
                    write_batch(store, &[&work])
                        .await
                        .map(|mut written| written.remove(0))
                };
                let _ = reply.send(result.map_err(|error| (error, Some(Box::new(work)))));
            }
        }
    }
}

/// Records `works` in one transaction; answers for each, in order.
async fn write_batch(store: &Store, works: &[&Work]) -> StoreResult<Vec<Written>> {
    let mut tx = store.begin().await?;
    let rows: Vec<&InboundDelivery> = works.iter().map(|work| &work.delivery).collect();
    let inserted: HashSet<String> = kept::insert_many_in(&mut tx, &rows)
        .await?
        .into_iter()
        .collect();
    let mut written = Vec::with_capacity(works.len());
    let mut pushes: Vec<PushFor<'_>> = Vec::new();
    for work in works {
        if !inserted.contains(&work.delivery.id) {
            written.push(Written::Duplicate);
            continue;
        }
        written.push(Written::Stored);
        let ForgeEvent::Push(push) = work.event.as_ref() else {
            let applied = apply(
                &mut tx,
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
            continue;
        };
        pushes.push(PushFor {
            services: &work.services,
            repository: work.repository.as_deref(),
            push,
        });
    }
    record_pushes_in(&mut tx, &pushes).await?;
    tx.commit().await?;
    Ok(written)
}
