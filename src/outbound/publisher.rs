//! Group commit for published events ([`crate::group_commit`]). A publish hands its event and
//! deliveries, planned from the endpoints it read, to a writer and waits for the answer; the
//! writer writes every event waiting at that moment together: on PostgreSQL in one statement
//! (one round trip and one commit for the batch), on SQLite in one transaction of the single
//! writer connection (whose commits, writing the log pages, were half of SQLite's time at full
//! load). At a low rate a batch is the one event and nothing waits longer than before.
//!
//! Every event is committed before its publisher is answered. When a batch fails, each of its
//! events is written alone, so an endpoint deleted under one publish (a foreign key fails) or
//! another bad event cannot fail the others; that publish is answered with the error and plans
//! again.

use tokio::sync::{Mutex, mpsc, oneshot};

use std::sync::Arc;

use crate::group_commit::{self, Next, Taken, next_batch};
use crate::store::outbound::{self as queue, EventToPublish};
use crate::store::{Store, StoreError, StoreResult};

/// Events written together at most: a batch's statement carries every one of their deliveries.
const MAX_BATCH: usize = 64;

/// What to run once an event's write committed, before its publisher is answered; run by the
/// writer, so it runs even when the publisher stopped waiting.
pub type OnCommit = Box<dyn FnOnce() + Send>;

struct Job {
    event: EventToPublish,
    /// Notify the other nodes with this write.
    announce: bool,
    on_commit: Option<OnCommit>,
    reply: oneshot::Sender<StoreResult<()>>,
}

impl Job {
    fn answer(self, result: StoreResult<()>) {
        if result.is_ok()
            && let Some(on_commit) = self.on_commit
        {
            on_commit();
        }
        let _ = self.reply.send(result);
    }
}

impl Taken for Job {}

/// The handle publishes go through.
#[derive(Clone)]
pub struct PublishWriter {
    sender: mpsc::Sender<Job>,
}

impl PublishWriter {
    /// Starts the writers: one on SQLite (one writer connection), a few on PostgreSQL, so one
    /// batch's commit does not hold up the next.
    pub fn start(store: Store) -> std::io::Result<PublishWriter> {
        let writers = match store.backend() {
            crate::config::Backend::Sqlite => 1,
            crate::config::Backend::Postgres => 2,
        };
        let (sender, receiver) = mpsc::channel::<Job>(MAX_BATCH * 8);
        group_commit::start_writers("publish-writer", writers, receiver, move |receiver| {
            run_writer(store.clone(), receiver)
        })?;
        Ok(PublishWriter { sender })
    }

    /// Writes `event` and its deliveries; runs `on_commit` once they are committed, then answers.
    pub async fn write(
        &self,
        event: EventToPublish,
        announce: bool,
        on_commit: Option<OnCommit>,
    ) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Database(sqlx::Error::PoolClosed);
        let job = Job {
            event,
            announce,
            on_commit,
            reply,
        };
        if self.sender.send(job).await.is_err() {
            return Err(closed());
        }
        answer.await.unwrap_or_else(|_| Err(closed()))
    }
}

async fn run_writer(store: Store, receiver: Arc<Mutex<mpsc::Receiver<Job>>>) {
    while let Next::Jobs(batch) = next_batch(&receiver, MAX_BATCH, None, None).await {
        write(&store, batch).await;
    }
}

async fn write(store: &Store, batch: Vec<Job>) {
    metrics::histogram!("hookline_publish_write_batch_size").record(batch.len() as f64);
    let announce = batch.iter().any(|job| job.announce);
    let events: Vec<&EventToPublish> = batch.iter().map(|job| &job.event).collect();
    let result = queue::insert_events_with_deliveries(store, &events, announce).await;
    drop(events);
    match result {
        Ok(()) => {
            for job in batch {
                job.answer(Ok(()));
            }
        }
        Err(error) if batch.len() == 1 => {
            if let Some(job) = batch.into_iter().next() {
                job.answer(Err(error));
            }
        }
        Err(error) => {
            if matches!(error, StoreError::Conflict(_)) {
                tracing::debug!(%error, events = batch.len(), "a publish batch failed; writing its events one by one");
            } else {
                tracing::warn!(%error, events = batch.len(), "a publish batch failed; writing its events one by one");
            }
            for job in batch {
                let alone =
                    queue::insert_events_with_deliveries(store, &[&job.event], job.announce).await;
                job.answer(alone);
            }
        }
    }
}
