//! Scheduled runs in the store: the functions whose current version has a
//! schedule, and one row per tick a node claimed. The claim is the whole of
//! "exactly once across the cluster": a tick's row is inserted by one node
//! only (the primary key, under a per-function lock), and never for a tick
//! older than one already claimed (so a catch-up after downtime is one run).
//!
//! A run holds a lease (its function's time limit plus a margin). A node that
//! dies mid-run leaves its row unfinished; once the lease has passed, another
//! node marks it [`kiln_api::NODE_LOST`] and logs it ([`ScheduleStore::reap_lost_runs`]).
//! The tick is not run again: its side effects may have happened.

use crate::error::StoreResult;
use crate::model::Deployment;
use async_trait::async_trait;
use kiln_api::{ScheduledRun, TenantId};

/// Runs kept per function; older ones are pruned as new ones are claimed.
pub const RUNS_KEPT: i64 = 200;

/// A function with a schedule, as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct ScheduledFunction {
    /// What runs (the current version).
    pub deployment: Deployment,
    /// When it became current (deploy or rollback), seconds: no tick at or
    /// before it runs.
    pub since: i64,
}

/// A tick a node wants to run.
#[derive(Debug, Clone)]
pub struct TickClaim {
    /// The function.
    pub function_id: i64,
    /// The tick, seconds since the Unix epoch.
    pub tick: i64,
    /// The version that will run.
    pub version: u32,
    /// The node claiming it.
    pub node: String,
    /// Now.
    pub started_at: i64,
    /// Until when the run is presumed alive.
    pub lease_until: i64,
}

/// A run whose node stopped before it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostRun {
    /// The function.
    pub function_id: i64,
    /// The version that was running.
    pub version: u32,
    /// The tick.
    pub tick: i64,
    /// The node that had claimed it.
    pub node: String,
}

/// Schedules and their runs. A supertrait of [`crate::MetadataStore`].
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Every function whose current version has a schedule.
    async fn scheduled_functions(&self) -> StoreResult<Vec<ScheduledFunction>>;
    /// Claims a tick: true if this call recorded it (no run of this function
    /// has this tick or a later one). Prunes the function's old runs.
    async fn claim_tick(&self, claim: TickClaim) -> StoreResult<bool>;
    /// Records how a claimed run ended.
    async fn finish_run(
        &self,
        function_id: i64,
        tick: i64,
        finished_at: i64,
        outcome: &str,
        status: u16,
    ) -> StoreResult<()>;
    /// Marks every unfinished run whose lease ended before `now` as lost and
    /// answers them (each to one caller only).
    async fn reap_lost_runs(&self, now: i64) -> StoreResult<Vec<LostRun>>;
    /// The runs of `tenant`'s `function`, newest first, at most `limit`.
    async fn runs(
        &self,
        tenant: TenantId,
        function: &str,
        limit: u32,
    ) -> StoreResult<Vec<ScheduledRun>>;
}
