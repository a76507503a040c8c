//! `kiln usage`: metered units and what they cost; `kiln quota`: a tenant's limits
//! and its month so far (admins set them).

use super::{function_name, tenant_name};
use crate::client::{Client, Role, ServerArgs};
use kiln_api::{
    ByteCount, GIB, Quota, QuotaStatus, STORAGE, UsageGrouping, UsageLine, UsageReport,
};
use serde_json::Value;
use std::process::ExitCode;

/// Show metered usage and its cost (this tenant's; every tenant's with --all-tenants)
#[derive(clap::Args, Debug)]
pub(crate) struct UsageArgs {
    /// From this time: YYYY-MM-DD, RFC 3339 or Unix seconds [default: start of this month]
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Until this time (exclusive) [default: now]
    #[arg(long, value_name = "DATE")]
    until: Option<String>,
    /// Only this function
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// One line per function, hour or day
    #[arg(long, value_enum, default_value = "function")]
    by: By,
    /// Every tenant (uses the admin token)
    #[arg(long, conflicts_with = "tenant")]
    all_tenants: bool,
    /// Another tenant (uses the admin token)
    #[arg(long, value_name = "NAME")]
    tenant: Option<String>,
    /// Print the server's JSON answer
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV, one row per line plus a total
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// `--by`: a command-line face for [`UsageGrouping`].
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum By {
    Hour,
    Day,
    Function,
}

impl From<By> for UsageGrouping {
    fn from(by: By) -> UsageGrouping {
        match by {
            By::Hour => UsageGrouping::Hour,
            By::Day => UsageGrouping::Day,
            By::Function => UsageGrouping::Function,
        }
    }
}

pub(crate) fn usage(args: UsageArgs) -> anyhow::Result<ExitCode> {
    if let Some(function) = &args.function {
        function_name(function)?;
    }
    if let Some(tenant) = &args.tenant {
        tenant_name(tenant)?;
    }
    let admin = args.all_tenants || args.tenant.is_some();
    let client = Client::new(&args.server, if admin { Role::Admin } else { Role::Tenant })?;
    let by = UsageGrouping::from(args.by).as_str();
    let mut query = form_query(&[
        ("since", args.since.as_deref()),
        ("until", args.until.as_deref()),
        ("function", args.function.as_deref()),
        ("tenant", args.tenant.as_deref()),
    ]);
    query.push_str(&format!("by={by}"));
    let answer: Value = client.get(&format!("/v1/usage?{query}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let report: UsageReport = serde_json::from_value(answer)?;
    if args.csv {
        print_csv(&report);
    } else {
        print_table(&report, args.all_tenants, by);
    }
    Ok(ExitCode::SUCCESS)
}

fn form_query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        if let Some(value) = value {
            out.append_pair(key, value);
        }
    }
    let mut query = out.finish();
    if !query.is_empty() {
        query.push('&');
    }
    query
}

fn print_table(report: &UsageReport, with_tenant: bool, by: &str) {
    let currency = &report.prices.currency;
    println!("usage from {} until {}", report.since, report.until);
    let what = if by == "function" {
        "FUNCTION"
    } else {
        "PERIOD"
    };
    let mut header = String::new();
    if with_tenant {
        header.push_str(&format!("{:<16} ", "TENANT"));
    }
    header.push_str(&format!(
        "{what:<20} {:>10} {:>8} {:>12} {:>12} {:>10} {:>10} {:>9} {:>9} {:>10} {:>12}",
        "REQUESTS",
        "FAILED",
        "CPU MS",
        "GB-S",
        "IN",
        "OUT",
        "KV READS",
        "KV WRITES",
        "KV GB-H",
        format!("COST {currency}")
    ));
    println!("{header}");
    let row = |tenant: &str, label: &str, l: &UsageLine| {
        let mut line = String::new();
        if with_tenant {
            line.push_str(&format!("{tenant:<16} "));
        }
        line.push_str(&format!(
            "{label:<20} {:>10} {:>8} {:>12.1} {:>12.6} {:>10} {:>10} {:>9} {:>9} {:>10.4} {:>12.6}",
            l.units.totals.requests,
            l.units.totals.failures,
            l.units.totals.cpu_us as f64 / 1000.0,
            l.units.gb_seconds,
            ByteCount(l.units.totals.bytes_in).to_string(),
            ByteCount(l.units.totals.bytes_out).to_string(),
            l.units.totals.kv_reads,
            l.units.totals.kv_writes,
            l.units.totals.kv_byte_hours as f64 / GIB as f64,
            l.cost.total
        ));
        println!("{line}");
    };
    for l in &report.rows {
        let label = match by {
            "function" => match l.function.as_deref() {
                Some(STORAGE) => "(stored data)",
                function => function.unwrap_or(""),
            },
            _ => l.period.as_deref().unwrap_or(""),
        };
        row(l.tenant.as_deref().unwrap_or(""), label, l);
    }
    row("", "TOTAL", &report.total);
}

fn print_csv(report: &UsageReport) {
    print!("{}", report.to_csv());
}

/// Show a tenant's quota and its usage this month; with flags (admin), change it
#[derive(clap::Args, Debug)]
pub(crate) struct QuotaArgs {
    /// The tenant (uses the admin token) [default: this tenant]
    tenant: Option<String>,
    /// Invocations per calendar month (UTC), or `none`
    #[arg(long, value_name = "N|none", requires = "tenant")]
    requests_per_month: Option<Limit>,
    /// Spending per calendar month (UTC), in the price list's currency, or `none`
    #[arg(long, value_name = "AMOUNT|none", requires = "tenant")]
    cost_per_month: Option<Limit>,
    /// Instances of the tenant's functions running at once, or `none`
    #[arg(long, value_name = "N|none", requires = "tenant")]
    max_concurrent: Option<Limit>,
    /// Invocations per second (in bursts of at most this many), or `none`
    #[arg(long, value_name = "N|none", requires = "tenant")]
    requests_per_second: Option<Limit>,
    /// Keys in all the tenant's key-value buckets, or `default` (the server's)
    #[arg(long, value_name = "N|default", requires = "tenant", value_parser = parse_kv_limit)]
    kv_keys: Option<OrDefault>,
    /// Bytes of keys and values in all its buckets (e.g. 100MiB), or `default`
    #[arg(long, value_name = "SIZE|default", requires = "tenant", value_parser = parse_kv_size)]
    kv_bytes: Option<OrDefault>,
    /// Its weight in the sharing of CPU when the machine is saturated (1 to
    /// 1000; 2 gets twice the share of 1), or `default` (1)
    #[arg(long, value_name = "N|default", requires = "tenant", value_parser = parse_cpu_weight)]
    cpu_weight: Option<OrDefault>,
    #[command(flatten)]
    server: ServerArgs,
}

/// A cap or weight given on the command line: a number, or `default` for the
/// server's.
#[derive(Clone, Copy, Debug)]
struct OrDefault(Option<u64>);

fn parse_kv_limit(text: &str) -> Result<OrDefault, String> {
    match text {
        "default" => Ok(OrDefault(None)),
        _ => text
            .parse()
            .map(|n| OrDefault(Some(n)))
            .map_err(|_| format!("expected a number of keys or `default`, got {text:?}")),
    }
}

fn parse_cpu_weight(text: &str) -> Result<OrDefault, String> {
    let max = kiln_api::MAX_CPU_WEIGHT;
    match text {
        "default" => Ok(OrDefault(None)),
        _ => match text.parse::<u32>() {
            Ok(weight) if (1..=max).contains(&weight) => Ok(OrDefault(Some(weight.into()))),
            _ => Err(format!(
                "expected a weight from 1 to {max} or `default`, got {text:?}"
            )),
        },
    }
}

fn parse_kv_size(text: &str) -> Result<OrDefault, String> {
    match text {
        "default" => Ok(OrDefault(None)),
        _ => kiln_api::parse_size(text)
            .map(|n| OrDefault(Some(n)))
            .map_err(|e| e.to_string()),
    }
}

/// A limit given on the command line: a number, or `none` to lift it.
#[derive(Clone, Debug)]
enum Limit {
    None,
    Value(f64),
}

impl std::str::FromStr for Limit {
    type Err = String;
    fn from_str(text: &str) -> Result<Limit, String> {
        match text {
            "none" => Ok(Limit::None),
            _ => match text.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(Limit::Value(v)),
                _ => Err(format!("expected a number ≥ 0 or `none`, got {text:?}")),
            },
        }
    }
}

pub(crate) fn quota(args: QuotaArgs) -> anyhow::Result<ExitCode> {
    let Some(tenant) = &args.tenant else {
        let client = Client::new(&args.server, Role::Tenant)?;
        print_quota(&client.get("/v1/quota")?);
        return Ok(ExitCode::SUCCESS);
    };
    tenant_name(tenant)?;
    let client = Client::new(&args.server, Role::Admin)?;
    let path = format!("/v1/tenants/{tenant}/quota");
    let mut status: QuotaStatus = client.get(&path)?;
    let changes = [
        &args.requests_per_month,
        &args.cost_per_month,
        &args.max_concurrent,
        &args.requests_per_second,
    ];
    let kv_changes = args.kv_keys.is_some() || args.kv_bytes.is_some() || args.cpu_weight.is_some();
    if changes.iter().any(|change| change.is_some()) || kv_changes {
        let mut quota = status.quota;
        if let Some(OrDefault(keys)) = args.kv_keys {
            quota.kv_keys = keys;
        }
        if let Some(OrDefault(bytes)) = args.kv_bytes {
            quota.kv_bytes = bytes;
        }
        if let Some(OrDefault(weight)) = args.cpu_weight {
            // Parsed within 1..=MAX_CPU_WEIGHT.
            quota.cpu_weight = weight.and_then(|w| u32::try_from(w).ok());
        }
        set_whole(
            &mut quota.requests_per_month,
            &args.requests_per_month,
            "requests-per-month",
        )?;
        match &args.cost_per_month {
            None => {}
            Some(Limit::None) => quota.cost_per_month = None,
            Some(Limit::Value(v)) => quota.cost_per_month = Some(*v),
        }
        set_whole(
            &mut quota.max_concurrent,
            &args.max_concurrent,
            "max-concurrent",
        )?;
        set_whole(
            &mut quota.requests_per_second,
            &args.requests_per_second,
            "requests-per-second",
        )?;
        status = client.put_json(&path, &quota)?;
    }
    print_quota(&status);
    Ok(ExitCode::SUCCESS)
}

/// Applies a whole-number limit given as `--FLAG N|none`.
fn set_whole<T: TryFrom<u64>>(
    field: &mut Option<T>,
    change: &Option<Limit>,
    flag: &str,
) -> anyhow::Result<()> {
    match change {
        None => {}
        Some(Limit::None) => *field = None,
        Some(Limit::Value(v)) => {
            if v.fract() != 0.0 {
                anyhow::bail!("--{flag} must be a whole number");
            }
            let value =
                T::try_from(*v as u64).map_err(|_| anyhow::anyhow!("--{flag} is too large"))?;
            *field = Some(value);
        }
    }
    Ok(())
}

fn print_quota(status: &QuotaStatus) {
    let quota: &Quota = &status.quota;
    let limit = |value: Option<String>| value.unwrap_or_else(|| "unlimited".to_owned());
    let currency = &status.currency;
    println!("tenant {}", status.tenant);
    println!(
        "requests per month   {:>14}   used since {}: {}",
        limit(quota.requests_per_month.map(|v| v.to_string())),
        status.month_start,
        status.used.totals.requests
    );
    println!(
        "cost per month       {:>14}   used: {:.6} {currency}",
        limit(quota.cost_per_month.map(|v| v.to_string())),
        status.cost.total
    );
    println!(
        "max concurrent       {:>14}",
        limit(quota.max_concurrent.map(|v| v.to_string()))
    );
    println!(
        "requests per second  {:>14}",
        limit(quota.requests_per_second.map(|v| v.to_string()))
    );
    let default = |value: Option<String>| value.unwrap_or_else(|| "server default".to_owned());
    println!(
        "key-value keys       {:>14}",
        default(quota.kv_keys.map(|v| v.to_string()))
    );
    println!(
        "key-value bytes      {:>14}",
        default(quota.kv_bytes.map(|v| kiln_api::ByteCount(v).to_string()))
    );
    println!(
        "CPU weight           {:>14}",
        quota.cpu_weight.unwrap_or(kiln_api::DEFAULT_CPU_WEIGHT)
    );
}
