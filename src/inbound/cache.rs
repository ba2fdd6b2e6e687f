//! Short-lived caches the shared receivers read instead of the database for every webhook: the
//! services linked to each repository, and whether a repository has repository hooks. This node
//! drops a whole cache whenever it changes what the cache holds (secret rotations included), so
//! here a change is seen at once; another node sharing a PostgreSQL database sees it within
//! `inbound.service_cache_ms`.

use std::time::Duration;

use crate::store::services::{self, Service};
use crate::store::{Store, StoreResult};
pub use crate::ttl_cache::TtlCache;

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
