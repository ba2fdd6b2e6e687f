//! The publish plans a node keeps: for each tenant, its webhook endpoints as read at one publish
//! version (migration 0017), and for each event type published, its registration and the
//! endpoints subscribed to it. A publish plans from what is kept, without a read; the statement
//! that writes it checks the version and refuses a plan that is no longer current, which is then
//! forgotten and read anew, and an event a kept plan would refuse is judged again by one read
//! now ([`super::publish`]). So a kept plan is never acted on once stale, on this node or any
//! other, and nothing has to tell this node that another changed an endpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::outbound::{self as queue, Endpoint, EventType};
use crate::store::{Store, StoreResult};

/// Tenants whose plans a node keeps at most; past that it starts over.
const MAX_TENANTS: usize = 10_000;
/// Event types kept per tenant at most; past that the tenant's types start over.
const MAX_TYPES_PER_TENANT: usize = 1_000;

/// How to publish one event type for a tenant.
#[derive(Debug)]
pub struct Plan {
    /// The tenant's publish version the plan was read at.
    pub version: i64,
    /// The tenant's registration of the type; `None` for a built-in type or an unknown one.
    pub registered: Option<EventType>,
    /// The webhook endpoints, active or not, whose filter wants the type.
    pub targets: Vec<Arc<Endpoint>>,
}

/// The plans kept, by tenant.
#[derive(Default)]
pub struct Plans {
    tenants: Mutex<HashMap<String, TenantPlans>>,
}

struct TenantPlans {
    version: i64,
    endpoints: Vec<Arc<Endpoint>>,
    by_type: HashMap<String, Arc<Plan>>,
}

impl Plans {
    /// The plan kept for publishing `event_type` for the tenant, if any: current when it was
    /// read, perhaps not any more.
    pub fn kept(&self, tenant_id: &str, event_type: &str) -> Option<Arc<Plan>> {
        let tenants = self.tenants.lock().expect("plans lock");
        tenants.get(tenant_id)?.by_type.get(event_type).cloned()
    }

    /// Reads the plan for publishing `event_type` for the tenant now, and keeps it.
    pub async fn read(
        &self,
        store: &Store,
        tenant_id: &str,
        event_type: &str,
    ) -> StoreResult<Arc<Plan>> {
        let read = queue::publish_plan(store, tenant_id, event_type).await?;
        Ok(self.keep(tenant_id, event_type, read))
    }

    /// Forgets the tenant's plans read at `version` or before: a write refused them.
    pub fn forget(&self, tenant_id: &str, version: i64) {
        let mut tenants = self.tenants.lock().expect("plans lock");
        if tenants
            .get(tenant_id)
            .is_some_and(|kept| kept.version <= version)
        {
            tenants.remove(tenant_id);
        }
    }

    /// Keeps a plan just read, unless one of a newer version is kept for the tenant (then the
    /// plan read is used once, as read, and its write refused).
    fn keep(&self, tenant_id: &str, event_type: &str, read: queue::PublishPlan) -> Arc<Plan> {
        let mut tenants = self.tenants.lock().expect("plans lock");
        let kept_version = tenants.get(tenant_id).map(|kept| kept.version);
        if kept_version != Some(read.version) {
            let endpoints: Vec<Arc<Endpoint>> = read.endpoints.into_iter().map(Arc::new).collect();
            if kept_version.is_some_and(|kept| kept > read.version) {
                return Arc::new(plan_of(
                    read.version,
                    read.registered,
                    &endpoints,
                    event_type,
                ));
            }
            if tenants.len() >= MAX_TENANTS {
                tenants.clear();
            }
            tenants.insert(
                tenant_id.to_owned(),
                TenantPlans {
                    version: read.version,
                    endpoints,
                    by_type: HashMap::new(),
                },
            );
        }
        // Read at the version kept: its endpoints are the ones kept, shared between types.
        let kept = tenants.get_mut(tenant_id).expect("kept just now");
        let plan = Arc::new(plan_of(
            read.version,
            read.registered,
            &kept.endpoints,
            event_type,
        ));
        if kept.by_type.len() >= MAX_TYPES_PER_TENANT {
            kept.by_type.clear();
        }
        kept.by_type.insert(event_type.to_owned(), plan.clone());
        plan
    }
}

fn plan_of(
    version: i64,
    registered: Option<EventType>,
    endpoints: &[Arc<Endpoint>],
    event_type: &str,
) -> Plan {
    Plan {
        version,
        registered,
        targets: endpoints
            .iter()
            .filter(|endpoint| endpoint.wants(event_type))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: &str, filter: Option<&str>) -> Endpoint {
        Endpoint {
            id: id.to_owned(),
            tenant_id: "ten_1".to_owned(),
            url: "https://example.test/hook".to_owned(),
            name: id.to_owned(),
            description: String::new(),
            event_types: filter.map(str::to_owned),
            active: true,
            secret: Vec::new(),
            previous_secret: None,
            previous_secret_until: None,
            consecutive_failures: 0,
            disabled_reason: None,
            disabled_at: None,
            created_at: 0,
            updated_at: 0,
            kind: queue::KIND_WEBHOOK.to_owned(),
            repository_key: None,
            payload_format: None,
            disabled_until: None,
            rate_limit_per_second: None,
        }
    }

    fn read(version: i64, endpoints: Vec<Endpoint>) -> queue::PublishPlan {
        queue::PublishPlan {
            version,
            registered: None,
            endpoints,
        }
    }

    fn target_ids(plan: &Plan) -> Vec<&str> {
        plan.targets
            .iter()
            .map(|target| target.id.as_str())
            .collect()
    }

    #[test]
    fn a_kept_plan_holds_the_subscribers_of_its_type_until_forgotten() {
        let plans = Plans::default();
        let endpoints = vec![
            endpoint("ep_all", None),
            endpoint("ep_orders", Some(r#"["order.paid"]"#)),
        ];
        let paid = plans.keep("ten_1", "order.paid", read(3, endpoints));
        assert_eq!(target_ids(&paid), ["ep_all", "ep_orders"]);
        let kept = plans.kept("ten_1", "order.paid").expect("kept");
        assert!(Arc::ptr_eq(&kept, &paid));
        assert!(plans.kept("ten_1", "order.shipped").is_none());
        assert!(plans.kept("ten_2", "order.paid").is_none());

        // Another type read at the same version shares the tenant's endpoints.
        let shipped = plans.keep(
            "ten_1",
            "order.shipped",
            read(3, vec![endpoint("ep_all", None)]),
        );
        assert_eq!(target_ids(&shipped), ["ep_all"]);
        assert!(Arc::ptr_eq(&shipped.targets[0], &paid.targets[0]));

        // A refused write of an older version forgets nothing newer; of this one, everything.
        plans.forget("ten_1", 2);
        assert!(plans.kept("ten_1", "order.paid").is_some());
        plans.forget("ten_1", 3);
        assert!(plans.kept("ten_1", "order.paid").is_none());
        assert!(plans.kept("ten_1", "order.shipped").is_none());
    }

    #[test]
    fn a_newer_version_replaces_the_tenants_plans_and_an_older_read_is_not_kept() {
        let plans = Plans::default();
        plans.keep("ten_1", "order.paid", read(3, vec![endpoint("ep_1", None)]));
        let newer = plans.keep(
            "ten_1",
            "order.shipped",
            read(5, vec![endpoint("ep_1", None), endpoint("ep_2", None)]),
        );
        assert_eq!(newer.version, 5);
        assert!(plans.kept("ten_1", "order.paid").is_none(), "read at 3");

        // A read that began before the change ends after it: used once as read, not kept.
        let late = plans.keep("ten_1", "order.paid", read(4, vec![endpoint("ep_1", None)]));
        assert_eq!(late.version, 4);
        assert_eq!(target_ids(&late), ["ep_1"]);
        assert!(plans.kept("ten_1", "order.paid").is_none());
        assert_eq!(
            plans.kept("ten_1", "order.shipped").expect("kept").version,
            5
        );
    }
}
