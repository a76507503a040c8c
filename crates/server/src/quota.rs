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

use kiln_api::{PriceList, Quota, TenantId, UsageTotals};
use kiln_store::{MetadataStore, StoreResult, now};
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
}

pub(crate) struct Quotas {
    prices: PriceList,
    metering: bool,
    book: Book,
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

    /// Admits one invocation of `tenant`'s, or names the limit it would cross.
    pub(crate) fn admit(&self, tenant: TenantId) -> Result<Admission, QuotaExceeded> {
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
}

impl Admission {
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
        let mut a = q.admit(1).unwrap();
        let b = q.admit(1).unwrap();
        assert_eq!(q.admit(1).err(), Some(QuotaExceeded::Requests { limit: 2 }));
        // One that did not run (refused later, e.g. 503) gives its place back.
        drop(b);
        a.ran(one_request());
        drop(a);
        let mut c = q.admit(1).unwrap();
        c.ran(one_request());
        drop(c);
        assert!(q.admit(1).is_err());
        assert_eq!(q.month_to_date(1).1.requests, 2);
        // Other tenants are not affected.
        assert!(q.admit(2).is_ok());
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
            q.admit(1).unwrap().ran(one_request());
        }
        let err = q.admit(1).err().unwrap();
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
        let a = q.admit(1).unwrap();
        assert_eq!(
            q.admit(1).err(),
            Some(QuotaExceeded::Concurrency { limit: 1 })
        );
        drop(a);
        assert!(q.admit(1).is_ok());
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
            drop(q.admit(1).unwrap());
        }
        let refused = q.admit(1).err();
        assert_eq!(refused, Some(QuotaExceeded::Rate { limit: 3 }));
        assert_eq!(
            refused.unwrap().to_string(),
            "rate limit reached: 3 requests per second"
        );
        // Other tenants have buckets of their own.
        assert!(q.admit(2).is_ok());
        // Setting the quota again fills the bucket.
        q.set(
            1,
            Quota {
                requests_per_second: Some(3),
                ..Default::default()
            },
        );
        assert!(q.admit(1).is_ok());
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
