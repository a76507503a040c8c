//! `kiln usage`: metered units and what they cost; `kiln quota`: a tenant's limits
//! and its month so far (admins set them).

use crate::client::{Client, Role, ServerArgs};
use crate::human_size;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::process::ExitCode;

/// Show metered usage and its cost (this tenant's; every tenant's with --all-tenants)
#[derive(clap::Args, Debug)]
pub struct UsageArgs {
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

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum By {
    Hour,
    Day,
    Function,
}

#[derive(Deserialize)]
struct Report {
    since: String,
    until: String,
    prices: Prices,
    rows: Vec<Line>,
    total: Line,
}

#[derive(Deserialize)]
struct Prices {
    currency: String,
}

#[derive(Deserialize)]
struct Line {
    tenant: Option<String>,
    function: Option<String>,
    period: Option<String>,
    units: Units,
    cost: Cost,
}

#[derive(Deserialize)]
struct Units {
    requests: u64,
    failures: u64,
    wall_us: u64,
    cpu_us: u64,
    instantiation_us: u64,
    gb_seconds: f64,
    peak_memory_bytes: u64,
    bytes_in: u64,
    bytes_out: u64,
}

#[derive(Deserialize)]
struct Cost {
    requests: f64,
    cpu: f64,
    memory: f64,
    egress: f64,
    total: f64,
}

pub fn usage(args: UsageArgs) -> anyhow::Result<ExitCode> {
    let admin = args.all_tenants || args.tenant.is_some();
    let client = Client::new(&args.server, if admin { Role::Admin } else { Role::Tenant })?;
    let by = match args.by {
        By::Hour => "hour",
        By::Day => "day",
        By::Function => "function",
    };
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
    let report: Report = serde_json::from_value(answer)?;
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

fn print_table(report: &Report, with_tenant: bool, by: &str) {
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
        "{what:<20} {:>10} {:>8} {:>12} {:>12} {:>10} {:>10} {:>12}",
        "REQUESTS",
        "FAILED",
        "CPU MS",
        "GB-S",
        "IN",
        "OUT",
        format!("COST {currency}")
    ));
    println!("{header}");
    let row = |tenant: &str, label: &str, l: &Line| {
        let mut line = String::new();
        if with_tenant {
            line.push_str(&format!("{tenant:<16} "));
        }
        line.push_str(&format!(
            "{label:<20} {:>10} {:>8} {:>12.1} {:>12.6} {:>10} {:>10} {:>12.6}",
            l.units.requests,
            l.units.failures,
            l.units.cpu_us as f64 / 1000.0,
            l.units.gb_seconds,
            human_size(l.units.bytes_in),
            human_size(l.units.bytes_out),
            l.cost.total
        ));
        println!("{line}");
    };
    for l in &report.rows {
        let label = match by {
            "function" => l.function.as_deref().unwrap_or(""),
            _ => l.period.as_deref().unwrap_or(""),
        };
        row(l.tenant.as_deref().unwrap_or(""), label, l);
    }
    row("", "TOTAL", &report.total);
}

fn print_csv(report: &Report) {
    println!(
        "tenant,function,period,requests,failures,wall_us,cpu_us,instantiation_us,gb_seconds,\
         peak_memory_bytes,bytes_in,bytes_out,cost_requests,cost_cpu,cost_memory,cost_egress,\
         cost_total,currency"
    );
    let csv = |l: &Line, tenant: &str| {
        let u = &l.units;
        let c = &l.cost;
        println!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            field(tenant),
            field(l.function.as_deref().unwrap_or("")),
            field(l.period.as_deref().unwrap_or("")),
            u.requests,
            u.failures,
            u.wall_us,
            u.cpu_us,
            u.instantiation_us,
            u.gb_seconds,
            u.peak_memory_bytes,
            u.bytes_in,
            u.bytes_out,
            c.requests,
            c.cpu,
            c.memory,
            c.egress,
            c.total,
            field(&report.prices.currency),
        );
    };
    for l in &report.rows {
        csv(l, l.tenant.as_deref().unwrap_or(""));
    }
    csv(&report.total, "TOTAL");
}

/// A CSV field, quoted when it needs to be.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Show a tenant's quota and its usage this month; with flags (admin), change it
#[derive(clap::Args, Debug)]
pub struct QuotaArgs {
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
    #[command(flatten)]
    server: ServerArgs,
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

pub fn quota(args: QuotaArgs) -> anyhow::Result<ExitCode> {
    let Some(tenant) = &args.tenant else {
        let client = Client::new(&args.server, Role::Tenant)?;
        print_quota(&client.get("/v1/quota")?);
        return Ok(ExitCode::SUCCESS);
    };
    let client = Client::new(&args.server, Role::Admin)?;
    let path = format!("/v1/tenants/{tenant}/quota");
    let mut status: Value = client.get(&path)?;
    let changes = [
        ("requests_per_month", &args.requests_per_month, true),
        ("cost_per_month", &args.cost_per_month, false),
        ("max_concurrent", &args.max_concurrent, true),
        ("requests_per_second", &args.requests_per_second, true),
    ];
    if changes.iter().any(|(_, change, _)| change.is_some()) {
        let mut quota = status["quota"].as_object().cloned().unwrap_or_default();
        for (name, change, whole) in changes {
            apply(&mut quota, name, change, whole)?;
        }
        status = client.put_json(&path, Value::Object(quota))?;
    }
    print_quota(&status);
    Ok(ExitCode::SUCCESS)
}

fn apply(
    quota: &mut Map<String, Value>,
    name: &str,
    change: &Option<Limit>,
    whole: bool,
) -> anyhow::Result<()> {
    match change {
        None => {}
        Some(Limit::None) => {
            quota.remove(name);
        }
        Some(Limit::Value(v)) if whole => {
            if v.fract() != 0.0 {
                anyhow::bail!("--{} must be a whole number", name.replace('_', "-"));
            }
            quota.insert(name.into(), json!(*v as u64));
        }
        Some(Limit::Value(v)) => {
            quota.insert(name.into(), json!(v));
        }
    }
    Ok(())
}

fn print_quota(status: &Value) {
    let quota = &status["quota"];
    let limit = |name: &str| match &quota[name] {
        Value::Null => "unlimited".to_owned(),
        v => v.to_string(),
    };
    let used = &status["used"];
    let currency = status["currency"].as_str().unwrap_or("");
    println!("tenant {}", status["tenant"].as_str().unwrap_or(""));
    println!(
        "requests per month   {:>14}   used since {}: {}",
        limit("requests_per_month"),
        status["month_start"].as_str().unwrap_or(""),
        used["requests"]
    );
    println!(
        "cost per month       {:>14}   used: {:.6} {currency}",
        limit("cost_per_month"),
        status["cost"]["total"].as_f64().unwrap_or(0.0)
    );
    println!("max concurrent       {:>14}", limit("max_concurrent"));
    println!("requests per second  {:>14}", limit("requests_per_second"));
}
