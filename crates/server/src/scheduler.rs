//! Scheduled functions: every node runs this loop, and each tick of each
//! schedule runs on exactly one of them.
//!
//! Once a second the loop looks at every function whose current version has a
//! schedule (the list is read from the store every [`REFRESH_EVERY`], and
//! at once after a deploy, rollback or delete seen by this node), and for
//! each asks for the latest tick due and not yet seen here. It *claims* that
//! tick in the store (`kiln_store::ScheduleStore::claim_tick`): the store
//! records it for one node only, and never a tick older than one claimed, so
//! ticks missed while the cluster was down run once, the latest. The node
//! that claimed it runs the function through the invoke pipeline (an empty
//! `POST` with `Kiln-Scheduled-Time`), which meters, counts and logs it like
//! a request, and records how it ended.
//!
//! A run's claim holds a lease: its time limit plus [`LEASE_MARGIN`]. If the
//! node dies mid-run, the lease passes unfinished; any node then marks the run
//! `node-lost` and logs it. It is not run again: it may have done part of its
//! work, and a tick runs at most once. Checked every [`REAP_EVERY`] (every
//! [`REAP_IDLE`] on a node with nothing scheduled).

use crate::invoke;
use crate::state::AppState;
use http_body_util::BodyExt;
use kiln_api::{NODE_LOST, SCHEDULED_TIME_HEADER, Schedule, rfc3339};
use kiln_store::{NewLogEntry, ScheduledFunction, TickClaim};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the list of scheduled functions is read again.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(10);

/// How long past its time limit a run is presumed alive.
pub(crate) const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// How often runs whose node died are looked for.
pub(crate) const REAP_EVERY: Duration = Duration::from_secs(2);

/// How often, on a node with no scheduled function (whose lost runs can only
/// be those of functions unscheduled since).
pub(crate) const REAP_IDLE: Duration = Duration::from_secs(60);

/// One scheduled function, parsed once per refresh.
struct Entry {
    function: ScheduledFunction,
    schedule: Schedule,
    /// Its next tick, once computed: until then the entry is skipped (one cron
    /// search per tick, not one a second).
    next: Option<i64>,
}

/// The node's scheduler: runs until its task is aborted.
pub(crate) async fn run(state: Arc<AppState>, node: String) {
    let mut entries: Vec<Entry> = Vec::new();
    // The latest tick this node saw claimed, by function: a tick is claimed
    // (or found taken) once per node, not once a second.
    let mut seen: HashMap<i64, i64> = HashMap::new();
    let mut refreshed: Option<Instant> = None;
    let mut reaped = Instant::now();
    loop {
        // Just after the next whole second: a tick is due from its second on.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let to_next = Duration::from_secs(1)
            .saturating_sub(Duration::from_nanos(u64::from(now.subsec_nanos())));
        // A change is read at the next second, with the ticks.
        let tick = tokio::time::sleep(to_next + Duration::from_millis(5));
        tokio::pin!(tick);
        loop {
            tokio::select! {
                _ = &mut tick => break,
                _ = state.schedules_changed.notified() => refreshed = None,
            }
        }
        if refreshed.is_none_or(|at| at.elapsed() >= REFRESH_EVERY) {
            match state.store.scheduled_functions().await {
                Ok(functions) => {
                    entries = functions
                        .into_iter()
                        .filter_map(|function| {
                            let schedule = function.deployment.config.schedule.clone()?;
                            Some(Entry {
                                function,
                                schedule,
                                next: None,
                            })
                        })
                        .collect();
                    let ids: HashSet<i64> = entries
                        .iter()
                        .map(|e| e.function.deployment.function_id)
                        .collect();
                    seen.retain(|id, _| ids.contains(id));
                    refreshed = Some(Instant::now());
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the scheduled functions"),
            }
        }
        let now = kiln_store::now();
        for entry in &mut entries {
            if entry.next.is_some_and(|next| now < next) {
                continue;
            }
            let id = entry.function.deployment.function_id;
            let after = seen
                .get(&id)
                .copied()
                .unwrap_or(i64::MIN)
                .max(entry.function.since);
            let Some(tick) = entry.schedule.latest_due(after, now) else {
                entry.next = entry.schedule.next_after(now.max(after));
                continue;
            };
            match claim(&state, &node, &entry.function, tick, now).await {
                Ok(claimed) => {
                    seen.insert(id, tick);
                    entry.next = entry.schedule.next_after(now.max(tick));
                    if claimed {
                        // Tracked: a shutdown waits for the runs in progress.
                        state
                            .settling
                            .spawn(run_tick(state.clone(), entry.function.clone(), tick));
                    }
                }
                // Tried again next second.
                Err(e) => tracing::warn!(error = %e, "cannot claim a scheduled tick"),
            }
        }
        let reap_every = match entries.is_empty() {
            true => REAP_IDLE,
            false => REAP_EVERY,
        };
        if reaped.elapsed() >= reap_every {
            reaped = Instant::now();
            reap(&state, now).await;
        }
    }
}

/// Claims `tick` of `function` for `node`, with a lease of its time limit.
async fn claim(
    state: &AppState,
    node: &str,
    function: &ScheduledFunction,
    tick: i64,
    now: i64,
) -> kiln_store::StoreResult<bool> {
    let limits = crate::state::limits_of(
        &function.deployment.config,
        state.deployments.default_limits(),
    );
    let lease = (limits.wall_time + LEASE_MARGIN).as_secs();
    state
        .store
        .claim_tick(TickClaim {
            function_id: function.deployment.function_id,
            tick,
            version: function.deployment.version,
            node: node.to_owned(),
            started_at: now,
            lease_until: now.saturating_add(i64::try_from(lease).unwrap_or(i64::MAX)),
        })
        .await
}

/// Runs a claimed tick through the invoke pipeline and records how it ended.
async fn run_tick(state: Arc<AppState>, function: ScheduledFunction, tick: i64) {
    let deployment = &function.deployment;
    let (tenant, name) = (&deployment.tenant, &deployment.function);
    let request = axum::http::Request::post(format!("/fn/{tenant}/{name}"))
        .header(SCHEDULED_TIME_HEADER, rfc3339(tick))
        .body(());
    let (outcome, status) = match request {
        Ok(request) => {
            let (parts, ()) = request.into_parts();
            let (response, kind) = invoke::scheduled(&state, tenant, name, parts).await;
            let status = response.status().as_u16();
            // Settling waits for the body's end (a streamed run's output).
            let _ = response.into_body().collect().await;
            (kind.as_str().to_owned(), status)
        }
        Err(e) => {
            tracing::error!(%tenant, function = %name, error = %e, "cannot build a scheduled request");
            ("internal".to_owned(), 500)
        }
    };
    let finished = state
        .store
        .finish_run(
            deployment.function_id,
            tick,
            kiln_store::now(),
            &outcome,
            status,
        )
        .await;
    if let Err(e) = finished {
        tracing::warn!(%tenant, function = %name, error = %e, "cannot record how a scheduled run ended");
    }
}

/// Marks the runs whose node died as lost, and logs each with its function.
async fn reap(state: &AppState, now: i64) {
    let lost = match state.store.reap_lost_runs(now).await {
        Ok(lost) => lost,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for scheduled runs whose node stopped");
            return;
        }
    };
    for run in lost {
        tracing::warn!(
            function_id = run.function_id,
            tick = %rfc3339(run.tick),
            node = %run.node,
            "a scheduled run's node stopped before it ended; the tick is not run again"
        );
        state.logs.record(NewLogEntry {
            function_id: run.function_id,
            version: run.version,
            at: now,
            outcome: format!(
                "{NODE_LOST}: node {} stopped while running the tick of {}; it is not run again",
                run.node,
                rfc3339(run.tick)
            ),
            status: 0,
            ..Default::default()
        });
    }
}
