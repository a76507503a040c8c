//! Metered usage as the store keeps it: deltas added to tenant × function × hour
//! totals, and the rows read back. The totals themselves are `kiln_api::UsageTotals`.

use kiln_api::{TenantId, UsageTotals};

/// Usage to add to one tenant × function × hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The function's name (usage outlives a deleted function).
    pub function: String,
    /// Start of the hour, seconds since the Unix epoch.
    pub hour: i64,
    /// What to add.
    pub totals: UsageTotals,
}

/// One stored tenant × function × hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The tenant's name.
    pub tenant: String,
    /// The function's name.
    pub function: String,
    /// Start of the hour, seconds since the Unix epoch.
    pub hour: i64,
    /// Everything used in that hour.
    pub totals: UsageTotals,
}

/// Which usage to read: hours in `[since, until)`, of one tenant (all when
/// `None`, for admins), of one function name (all when `None`).
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    /// One tenant, or all.
    pub tenant: Option<TenantId>,
    /// One function name, or all.
    pub function: Option<String>,
    /// First second of the range (seconds since the Unix epoch).
    pub since: i64,
    /// End of the range, exclusive.
    pub until: i64,
}
