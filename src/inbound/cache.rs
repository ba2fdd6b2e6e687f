//! A short-lived cache of the services linked to each repository, so the shared receivers do not
//! read the database for every webhook. This node drops the whole cache whenever it changes a
//! service (secret rotations included), so here a change is seen at once; another node sharing a
//! PostgreSQL database sees it within `inbound.service_cache_ms`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::services::{self, Service};
use crate::store::{Store, StoreResult};

/// Repositories remembered at most; past that the cache starts over.
const MAX_ENTRIES: usize = 10_000;

pub struct ServiceCache {
    ttl: Duration,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// Bumped by every [`ServiceCache::clear`]: a read that began before a change must not put
    /// what it read back into the cache.
    generation: u64,
    by_repository: HashMap<String, (Instant, Vec<Service>)>,
}

impl ServiceCache {
    pub fn new(ttl: Duration) -> ServiceCache {
        ServiceCache {
            ttl,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Every tenant's services linked to `repository` (without regard to case).
    pub async fn by_repository(
        &self,
        store: &Store,
        repository: &str,
    ) -> StoreResult<Vec<Service>> {
        let key = repository.to_lowercase();
        if self.ttl.is_zero() {
            return services::by_repository(store, &key).await;
        }
        let generation = {
            let entries = self.entries.lock().expect("cache lock");
            if let Some((at, found)) = entries.by_repository.get(&key)
                && at.elapsed() < self.ttl
            {
                return Ok(found.clone());
            }
            entries.generation
        };
        let fetched_at = Instant::now();
        let found = services::by_repository(store, &key).await?;
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.generation == generation {
            if entries.by_repository.len() >= MAX_ENTRIES {
                entries.by_repository.clear();
            }
            entries
                .by_repository
                .insert(key, (fetched_at, found.clone()));
        }
        Ok(found)
    }

    /// Forgets everything: called after this node changed any service.
    pub fn clear(&self) {
        let mut entries = self.entries.lock().expect("cache lock");
        entries.generation += 1;
        entries.by_repository.clear();
    }
}
