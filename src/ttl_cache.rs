//! A small in-memory cache whose values expire after a fixed time and which a node clears when it
//! changes what the cache holds: a node sees its own changes at once, other nodes sharing a
//! PostgreSQL database within the time to live. Used for the services linked to a repository,
//! repository hooks, and API tokens.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::StoreResult;

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
