//! `kiln schedules [FUNCTION]`: this tenant's scheduled functions with their
//! next and last runs, or one function's recent runs.

use crate::client::{Client, Role, ServerArgs};
use kiln_api::{NameKind, ScheduleInfo, ScheduledRun, check_name, rfc3339};
use std::process::ExitCode;

/// Scheduled functions (`kiln deploy --schedule`) with their next and last runs
#[derive(clap::Args, Debug)]
pub(crate) struct SchedulesArgs {
    /// Show this function's recent runs instead
    function: Option<String>,
    /// How many runs to show
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
    runs: u32,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn run(args: SchedulesArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Tenant)?;
    match &args.function {
        None => {
            let schedules: Vec<ScheduleInfo> = client.get("/v1/schedules")?;
            println!(
                "{:<24} {:<16} {:<22} LAST",
                "FUNCTION", "SCHEDULE", "NEXT (UTC)"
            );
            for s in schedules {
                let next = s.next_at.map(rfc3339).unwrap_or_else(|| "-".into());
                let last = s
                    .last
                    .as_ref()
                    .map(describe)
                    .unwrap_or_else(|| "never ran".into());
                println!("{:<24} {:<16} {:<22} {last}", s.function, s.schedule, next);
            }
        }
        Some(function) => {
            check_name(NameKind::Function, function)?;
            let runs: Vec<ScheduledRun> =
                client.get(&format!("/v1/schedules/{function}?limit={}", args.runs))?;
            for run in &runs {
                println!("{}", describe(run));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One run on one line: its tick, how it ended, where, how long it took.
fn describe(run: &ScheduledRun) -> String {
    let ended = match (&run.outcome, run.finished_at) {
        (Some(outcome), Some(at)) => match run.status {
            Some(status) => format!("{outcome} {status} in {}s", (at - run.started_at).max(0)),
            None => outcome.clone(),
        },
        _ => "running".into(),
    };
    format!(
        "{} v{} {ended} on {}",
        rfc3339(run.tick),
        run.version,
        run.node
    )
}
