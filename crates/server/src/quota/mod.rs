//! Quotas and spending caps per tenant: requests per month, cost per month,
//! instances running at once and requests per second. Every invocation is
//! admitted here first; a refusal is a 429 that names the limit, and costs nothing.
//!
//! The book keeps each tenant's usage of the current calendar month (UTC) in
//! memory: loaded from the store at start-up, then added to as invocations end.
//! A request cap is exact under concurrency (invocations running count against
//! it); a cost cap admits while the month's cost so far is below it, so the
//! invocations already running when it is reached may end just past it. With
//! metering off, only the concurrency and rate limits apply. The rate limit is a
//! token bucket per tenant and node: it holds one second of requests, refills
//! continuously, and is full again whenever the quota is set.
//!
//! **In a cluster** (a store the nodes share, `kiln_store::QuotaGrants`) the
//! request cap and the rate limit hold for all nodes together: a node admits
//! only requests it holds a lease of ([`lease`]), taken from a counter per
//! tenant and month, or per tenant and second, that never grants past the
//! limit. So the cluster never admits more than a month's cap, nor more than
//! the rate in any calendar second (a burst straddling two seconds may reach
//! twice the rate); a lease a node held when it stopped is lost (at most 100
//! requests, or a fiftieth of the cap). The cost cap is checked against the
//! month's usage every node recorded, read again every second ([`Quotas::sync`],
//! which also brings quotas set through other nodes): the cluster may overspend
//! by what it meters in about two seconds (the usage flush and this read).
//! The concurrency limit stays per node. Should the database be unreachable, a
//! node admits as a node alone does until it is back.

mod lease;

use kiln_api::{PriceList, Quota, TenantId, UsageTotals};
use kiln_store::{MetadataStore, QuotaGrants, StoreResult, now};
use lease::{Lease, Leased, chunk};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use time::OffsetDateTime;

/// A limit an invocation would cross.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum QuotaExceeded {
    #[error("quota reached: {limit} requests per month")]
    Requests { limit: u64 },
    #[error("spending cap reached: {limit} {currency} per month")]
    Cost { limit: f64, currency: String },
    #[error("concurrency limit reached: {limit} instances at once")]
    Concurrency { limit: u32 },
    #[error("rate limit reached: {limit} requests per second")]
    Rate { limit: u32 },
}

/// Requests a tenant may still make under its rate limit: up to a second's
/// worth, refilled at the rate as time passes.
#[derive(Debug, Clone, Copy)]
struct RateBucket {
    tokens: f64,
    at: Instant,
}

impl RateBucket {
    fn full(rate: u32, at: Instant) -> RateBucket {
        RateBucket {
            tokens: f64::from(rate),
            at,
        }
    }

    /// Refills for the time since the last call, then takes one request's token
    /// if there is one.
    fn take(&mut self, rate: u32, now: Instant) -> bool {
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[derive(Default)]
struct TenantBook {
    quota: Quota,
    /// Start of the month `used` counts, seconds since the Unix epoch.
    month: i64,
    used: UsageTotals,
    running: u32,
    /// Present while the quota has a rate limit.
    bucket: Option<RateBucket>,
    /// In a cluster: this node's lease of the month's requests.
    month_lease: Lease,
    /// In a cluster: this node's lease of the current second's requests.
    second_lease: Lease,
}

pub(crate) struct Quotas {
    prices: PriceList,
    metering: bool,
    book: Book,
    /// The cluster's shared counters; `None` for a node alone.
    grants: Option<Arc<dyn QuotaGrants>>,
}

/// What admitting one request needs from the cluster's counters first.
#[derive(Debug, Default)]
struct Asks {
    /// The month (its start) and the cap.
    month: Option<(i64, u64)>,
    /// The second and the rate.
    second: Option<(i64, u32)>,
}

/// One attempt at admitting in a cluster.
enum Attempt {
    Done(Result<Admission, QuotaExceeded>),
    Ask(Asks),
}

/// The start of the calendar month (UTC) that `at` falls in.
pub(crate) fn month_start(at: i64) -> i64 {
    let Ok(moment) = OffsetDateTime::from_unix_timestamp(at) else {
        return at;
    };
    let first = moment.date().replace_day(1).unwrap_or(moment.date());
    first.midnight().assume_utc().unix_timestamp()
}

impl Quotas {
    /// Every tenant's quota, and its usage this month as stored.
    pub(crate) async fn load(
        store: &dyn MetadataStore,
        grants: Option<Arc<dyn QuotaGrants>>,
        prices: PriceList,
        metering: bool,
    ) -> StoreResult<Quotas> {
        let month = month_start(now());
        let mut book: HashMap<TenantId, TenantBook> = HashMap::new();
        for (tenant, quota) in store.quotas().await? {
            book.entry(tenant).or_default().quota = quota;
        }
        for (tenant, used) in store.usage_by_tenant(month).await? {
            book.entry(tenant).or_default().used = used;
        }
        for entry in book.values_mut() {
            entry.month = month;
        }
        Ok(Quotas {
            prices,
            metering,
            book: Arc::new(Mutex::new(book)),
            grants,
        })
    }

    pub(crate) fn prices(&self) -> &PriceList {
        &self.prices
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TenantId, TenantBook>> {
        lock(&self.book)
    }

    /// The tenant's entry, its month rolled over if a new one has begun.
    fn entry(book: &mut HashMap<TenantId, TenantBook>, tenant: TenantId) -> &mut TenantBook {
        let month = month_start(now());
        let entry = book.entry(tenant).or_insert_with(|| TenantBook {
            month,
            ..Default::default()
        });
        if entry.month != month {
            entry.month = month;
            entry.used = UsageTotals::default();
        }
        entry
    }

    /// Admits one invocation of `tenant`'s, or names the limit it would cross:
    /// on this node's book alone, or in a cluster with leases from its shared
    /// counters.
    pub(crate) async fn admit(&self, tenant: TenantId) -> Result<Admission, QuotaExceeded> {
        let Some(grants) = &self.grants else {
            return self.admit_here(tenant);
        };
        // Other requests of this node may spend a lease this one asked for:
        // a few rounds, then the limit stands.
        for _ in 0..4 {
            let asks = match self.attempt(tenant) {
                Attempt::Done(result) => return result,
                Attempt::Ask(asks) => asks,
            };
            if let Err(e) = self.ask(&**grants, tenant, asks).await {
                tracing::warn!(error = %e, "cannot reach the cluster's quota counters; admitting on this node's book");
                return self.admit_here(tenant);
            }
        }
        let quota = self
            .lock()
            .get(&tenant)
            .map(|e| e.quota)
            .unwrap_or_default();
        Err(
            match (quota.requests_per_second, quota.requests_per_month) {
                (Some(limit), _) => QuotaExceeded::Rate { limit },
                (None, Some(limit)) => QuotaExceeded::Requests { limit },
                (None, None) => QuotaExceeded::Rate { limit: 0 },
            },
        )
    }

    /// One try at admitting in a cluster: done, or what to ask the counters.
    fn attempt(&self, tenant: TenantId) -> Attempt {
        let mut book = self.lock();
        let entry = Self::entry(&mut book, tenant);
        let quota = entry.quota;
        if let Some(limit) = quota.max_concurrent
            && entry.running >= limit
        {
            return Attempt::Done(Err(QuotaExceeded::Concurrency { limit }));
        }
        if self.metering
            && let Some(limit) = quota.cost_per_month
            && self.prices.cost(&entry.used).total >= limit
        {
            return Attempt::Done(Err(QuotaExceeded::Cost {
                limit,
                currency: self.prices.currency.clone(),
            }));
        }
        let mut asks = Asks::default();
        let month = entry.month;
        if self.metering
            && let Some(limit) = quota.requests_per_month
        {
            match entry.month_lease.check(month) {
                Leased::Granted => {}
                Leased::Exhausted => return Attempt::Done(Err(QuotaExceeded::Requests { limit })),
                Leased::Ask => asks.month = Some((month, limit)),
            }
        }
        let second = now();
        if let Some(rate) = quota.requests_per_second {
            match entry.second_lease.check(second) {
                Leased::Granted => {}
                Leased::Exhausted => {
                    return Attempt::Done(Err(QuotaExceeded::Rate { limit: rate }));
                }
                Leased::Ask => asks.second = Some((second, rate)),
            }
        }
        if asks.month.is_some() || asks.second.is_some() {
            return Attempt::Ask(asks);
        }
        if self.metering && quota.requests_per_month.is_some() {
            entry.month_lease.take();
        }
        if quota.requests_per_second.is_some() {
            entry.second_lease.take();
        }
        entry.running += 1;
        Attempt::Done(Ok(Admission {
            book: self.book.clone(),
            metering: self.metering,
            tenant,
            used: None,
            cpu_weight: quota.cpu_weight,
        }))
    }

    /// Takes the leases `asks` names from the cluster's counters.
    async fn ask(&self, grants: &dyn QuotaGrants, tenant: TenantId, asks: Asks) -> StoreResult<()> {
        if let Some((month, cap)) = asks.month {
            let granted = grants
                .grant_requests(tenant, month, chunk(cap), cap)
                .await?;
            Self::entry(&mut self.lock(), tenant)
                .month_lease
                .add(month, granted);
        }
        if let Some((second, rate)) = asks.second {
            let rate = u64::from(rate);
            let granted = grants
                .grant_rate(tenant, second, chunk(rate * 5), rate)
                .await?;
            Self::entry(&mut self.lock(), tenant)
                .second_lease
                .add(second, granted);
        }
        Ok(())
    }

    /// In a cluster: brings every tenant's quota (set through any node) and
    /// the month's usage every node recorded into this node's book.
    pub(crate) async fn sync(&self, store: &dyn MetadataStore) -> StoreResult<()> {
        let month = month_start(now());
        let quotas = store.quotas().await?;
        let used = store.usage_by_tenant(month).await?;
        let mut book = self.lock();
        for (tenant, quota) in quotas {
            let entry = Self::entry(&mut book, tenant);
            if entry.quota != quota {
                entry.quota = quota;
                entry.bucket = None;
                entry.month_lease.reopen();
                entry.second_lease.reopen();
            }
        }
        for (tenant, recorded) in used {
            let entry = Self::entry(&mut book, tenant);
            // What every node recorded, unless this node has counted more
            // (its own usage not yet written).
            if recorded.requests >= entry.used.requests {
                entry.used = recorded;
            }
        }
        Ok(())
    }

    /// Drops the cluster's counters of past months and seconds.
    pub(crate) async fn forget_past_grants(&self) {
        let Some(grants) = &self.grants else {
            return;
        };
        let now = now();
        if let Err(e) = grants.forget_grants(month_start(now), now - 60).await {
            tracing::warn!(error = %e, "cannot drop past quota counters");
        }
    }

    /// Admits one invocation on this node's book alone.
    fn admit_here(&self, tenant: TenantId) -> Result<Admission, QuotaExceeded> {
        let mut book = self.lock();
        let entry = Self::entry(&mut book, tenant);
        let quota = entry.quota;
        if let Some(limit) = quota.max_concurrent
            && entry.running >= limit
        {
            return Err(QuotaExceeded::Concurrency { limit });
        }
        if self.metering {
            if let Some(limit) = quota.requests_per_month
                && entry.used.requests + u64::from(entry.running) >= limit
            {
                return Err(QuotaExceeded::Requests { limit });
            }
            if let Some(limit) = quota.cost_per_month
                && self.prices.cost(&entry.used).total >= limit
            {
                return Err(QuotaExceeded::Cost {
                    limit,
                    currency: self.prices.currency.clone(),
                });
            }
        }
        if let Some(rate) = quota.requests_per_second {
            let now = Instant::now();
            let bucket = entry
                .bucket
                .get_or_insert_with(|| RateBucket::full(rate, now));
            if !bucket.take(rate, now) {
                return Err(QuotaExceeded::Rate { limit: rate });
            }
        }
        entry.running += 1;
        Ok(Admission {
            cpu_weight: quota.cpu_weight,
            book: self.book.clone(),
            metering: self.metering,
            tenant,
            used: None,
        })
    }

    /// Replaces a tenant's quota (usage so far is kept).
    pub(crate) fn set(&self, tenant: TenantId, quota: Quota) {
        let mut book = self.lock();
        let entry = Self::entry(&mut book, tenant);
        entry.quota = quota;
        entry.bucket = None;
        entry.month_lease.reopen();
        entry.second_lease.reopen();
    }

    /// A handle on every tenant's quota as it is now (for the key-value
    /// store's caps).
    pub(crate) fn book(&self) -> QuotaBook {
        QuotaBook(self.book.clone())
    }

    /// The tenant's quota and its usage this month.
    pub(crate) fn month_to_date(&self, tenant: TenantId) -> (Quota, UsageTotals) {
        let mut book = self.lock();
        let entry = Self::entry(&mut book, tenant);
        (entry.quota, entry.used)
    }
}

type Book = Arc<Mutex<HashMap<TenantId, TenantBook>>>;

/// Reads tenants' quotas as [`Quotas::set`] leaves them.
#[derive(Clone)]
pub(crate) struct QuotaBook(Book);

impl QuotaBook {
    pub(crate) fn quota(&self, tenant: TenantId) -> Quota {
        lock(&self.0)
            .get(&tenant)
            .map(|entry| entry.quota)
            .unwrap_or_default()
    }
}

fn lock(book: &Book) -> MutexGuard<'_, HashMap<TenantId, TenantBook>> {
    book.lock().unwrap_or_else(|p| p.into_inner())
}

/// One admitted invocation. Dropping it frees its concurrency slot; what it used
/// (if it ran) is added to the month's usage at the same moment. It may outlive
/// the request handler (a streamed response ends later).
pub(crate) struct Admission {
    book: Book,
    metering: bool,
    tenant: TenantId,
    used: Option<UsageTotals>,
    /// The tenant's weight in the sharing of CPU, as its quota says now.
    cpu_weight: Option<u32>,
}

impl Admission {
    /// The tenant's weight in the sharing of CPU.
    pub(crate) fn cpu_weight(&self) -> u32 {
        self.cpu_weight.unwrap_or(kiln_api::DEFAULT_CPU_WEIGHT)
    }

    /// Records what the invocation used, counted when the admission is dropped.
    pub(crate) fn ran(&mut self, used: UsageTotals) {
        self.used = Some(used);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut book = lock(&self.book);
        let entry = Quotas::entry(&mut book, self.tenant);
        entry.running = entry.running.saturating_sub(1);
        if let Some(used) = &self.used
            && self.metering
        {
            entry.used.add(used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(quota: Quota, prices: PriceList) -> Quotas {
        let q = Quotas {
            prices,
            metering: true,
            book: Book::default(),
            grants: None,
        };
        q.set(1, quota);
        q
    }

    fn one_request() -> UsageTotals {
        UsageTotals {
            requests: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_request_cap_counts_running_invocations() {
        let q = quotas(
            Quota {
                requests_per_month: Some(2),
                ..Default::default()
            },
            PriceList::default(),
        );
        let mut a = q.admit_here(1).unwrap();
        let b = q.admit_here(1).unwrap();
        assert_eq!(
            q.admit_here(1).err(),
            Some(QuotaExceeded::Requests { limit: 2 })
        );
        // One that did not run (refused later, e.g. 503) gives its place back.
        drop(b);
        a.ran(one_request());
        drop(a);
        let mut c = q.admit_here(1).unwrap();
        c.ran(one_request());
        drop(c);
        assert!(q.admit_here(1).is_err());
        assert_eq!(q.month_to_date(1).1.requests, 2);
        // Other tenants are not affected.
        assert!(q.admit_here(2).is_ok());
    }

    #[test]
    fn a_cost_cap_admits_until_the_cost_reaches_it() {
        let prices = PriceList {
            per_million_requests: 1_000_000.0, // 1 per request
            ..Default::default()
        };
        let q = quotas(
            Quota {
                cost_per_month: Some(2.0),
                ..Default::default()
            },
            prices,
        );
        for _ in 0..2 {
            q.admit_here(1).unwrap().ran(one_request());
        }
        let err = q.admit_here(1).err().unwrap();
        assert_eq!(err.to_string(), "spending cap reached: 2 USD per month");
    }

    #[test]
    fn concurrency_is_limited_while_running() {
        let q = quotas(
            Quota {
                max_concurrent: Some(1),
                ..Default::default()
            },
            PriceList::default(),
        );
        let a = q.admit_here(1).unwrap();
        assert_eq!(
            q.admit_here(1).err(),
            Some(QuotaExceeded::Concurrency { limit: 1 })
        );
        drop(a);
        assert!(q.admit_here(1).is_ok());
    }

    #[test]
    fn a_rate_limit_admits_a_burst_then_refills_with_time() {
        let q = quotas(
            Quota {
                requests_per_second: Some(3),
                ..Default::default()
            },
            PriceList::default(),
        );
        for _ in 0..3 {
            drop(q.admit_here(1).unwrap());
        }
        let refused = q.admit_here(1).err();
        assert_eq!(refused, Some(QuotaExceeded::Rate { limit: 3 }));
        assert_eq!(
            refused.unwrap().to_string(),
            "rate limit reached: 3 requests per second"
        );
        // Other tenants have buckets of their own.
        assert!(q.admit_here(2).is_ok());
        // Setting the quota again fills the bucket.
        q.set(
            1,
            Quota {
                requests_per_second: Some(3),
                ..Default::default()
            },
        );
        assert!(q.admit_here(1).is_ok());
    }

    #[test]
    fn a_rate_bucket_refills_at_the_rate_up_to_one_second_of_requests() {
        let start = Instant::now();
        let at = |ms: u64| start + std::time::Duration::from_millis(ms);
        let mut bucket = RateBucket::full(10, start);
        assert_eq!((0..20).filter(|_| bucket.take(10, start)).count(), 10);
        // 100 ms at 10 per second is one request; 50 ms more is half of one.
        assert!(bucket.take(10, at(100)));
        assert!(!bucket.take(10, at(150)));
        assert!(bucket.take(10, at(200)));
        // A long pause refills to a full second's worth, no more.
        assert_eq!((0..20).filter(|_| bucket.take(10, at(60_000))).count(), 10);
    }

    #[test]
    fn months_start_on_the_first_at_midnight_utc() {
        // 2026-11-25T09:30:00Z → 2026-11-01T00:00:00Z
        assert_eq!(month_start(1_795_599_000), 1_793_491_200);
        assert_eq!(month_start(1_793_491_200), 1_793_491_200);
    }
}
