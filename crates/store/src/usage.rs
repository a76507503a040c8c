//! Metered usage as the store keeps it: deltas added to tenant × function × hour
//! totals, and the rows read back. The totals themselves are `kiln_api::UsageTotals`.

use kiln_api::{TenantId, UsageTotals};

/// Usage to add to one tenant × function × hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub tenant_id: TenantId,
    pub function: String,
    /// Start of the hour, seconds since the Unix epoch.
    pub hour: i64,
    pub totals: UsageTotals,
}

/// One stored tenant × function × hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub tenant: String,
    pub function: String,
    pub hour: i64,
    pub totals: UsageTotals,
}

/// Which usage to read: hours in `[since, until)`, of one tenant (all when
/// `None`, for admins), of one function name (all when `None`).
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    pub tenant: Option<TenantId>,
    pub function: Option<String>,
    pub since: i64,
    pub until: i64,
}
