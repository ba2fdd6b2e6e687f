//! Short-lived caches the shared receivers read instead of the database for every webhook: the
//! services linked to each repository, and whether a repository has repository hooks. This node
//! drops a whole cache whenever it changes what the cache holds (secret rotations included), so
//! here a change is seen at once; another node sharing a PostgreSQL database sees it within
//! `inbound.service_cache_ms`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::services::{self, Service};
use crate::store::{Store, StoreResult};

/// Keys remembered at most; past that a cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// Values by key for `ttl`, cleared by [`TtlCache::clear`].
pub struct TtlCache<V> {
    ttl: Duration,
    entries: Mutex<Entries<V>>,
}

struct Entries<V> {
    /// Bumped by every [`TtlCache::clear`]: a read that began before a change must not put what
    /// it read back into the cache.
    generation: u64,
    values: HashMap<String, (Instant, V)>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration) -> TtlCache<V> {
        TtlCache {
            ttl,
            entries: Mutex::new(Entries {
                generation: 0,
                values: HashMap::new(),
            }),
        }
    }

    /// The value for `key`, loading it when missing or older than the ttl.
    pub async fn get_or_load<F, Fut>(&self, key: String, load: F) -> StoreResult<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = StoreResult<V>>,
    {
        if self.ttl.is_zero() {
            return load().await;
        }
        let generation = {
            let entries = self.entries.lock().expect("cache lock");
            if let Some((at, found)) = entries.values.get(&key)
                && at.elapsed() < self.ttl
            {
                return Ok(found.clone());
            }
            entries.generation
        };
        let fetched_at = Instant::now();
        let found = load().await?;
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.generation == generation {
            if entries.values.len() >= MAX_ENTRIES {
                entries.values.clear();
            }
            entries.values.insert(key, (fetched_at, found.clone()));
        }
        Ok(found)
    }

    /// Forgets everything: called after this node changed what the cache holds.
    pub fn clear(&self) {
        let mut entries = self.entries.lock().expect("cache lock");
        entries.generation += 1;
        entries.values.clear();
    }
}

/// Every tenant's services linked to each repository.
pub struct ServiceCache(TtlCache<Vec<Service>>);

impl ServiceCache {
    pub fn new(ttl: Duration) -> ServiceCache {
        ServiceCache(TtlCache::new(ttl))
    }

    /// Every tenant's services linked to `repository` (without regard to case).
    pub async fn by_repository(
        &self,
        store: &Store,
        repository: &str,
    ) -> StoreResult<Vec<Service>> {
        let key = repository.to_lowercase();
        self.0
            .get_or_load(key.clone(), || services::by_repository(store, &key))
            .await
    }

    /// Forgets everything: called after this node changed any service.
    pub fn clear(&self) {
        self.0.clear();
    }
}
