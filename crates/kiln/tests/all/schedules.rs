//! Scheduled functions (`kiln deploy --schedule`): refused when malformed or
//! more frequent than the operator allows; each tick run once, as an empty
//! `POST` carrying its time, metered and logged like a request; ticks missed
//! while the server was down caught up with one run; and in a cluster of three
//! nodes, each tick run exactly once, a node killed mid-run leaving its tick
//! `node-lost` (not run again) while the others go on.
//!
//! Schedules with a seconds field (`*/2 * * * * *`) keep these tests short;
//! the servers allow them with `--schedule-min-interval 1s`.

use crate::cluster::Cluster;
use crate::support::*;
use kiln_api::{ScheduleInfo, ScheduledRun};

/// The function's runs, oldest first.
fn runs(server: &KilnServer, token: &str, function: &str) -> Vec<ScheduledRun> {
    let answer = get_as(
        &format!("{}/v1/schedules/{function}?limit=200", server.url),
        token,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut runs: Vec<ScheduledRun> = serde_json::from_str(&answer.body).expect("runs");
    runs.reverse();
    runs
}

/// The runs once at least `n` have ended, oldest first.
fn ended(server: &KilnServer, token: &str, function: &str, n: usize) -> Vec<ScheduledRun> {
    eventually(&format!("{n} runs of {function}"), || {
        let runs = runs(server, token, function);
        let done = runs.iter().filter(|r| r.finished_at.is_some()).count();
        (done >= n).then_some(runs)
    })
}

/// Every tick once, `every` seconds apart: none skipped, none repeated.
fn assert_consecutive(runs: &[ScheduledRun], every: i64) {
    for pair in runs.windows(2) {
        assert_eq!(pair[1].tick - pair[0].tick, every, "{runs:#?}");
    }
}

#[test]
fn malformed_and_too_frequent_schedules_are_refused_and_a_schedule_is_listed_with_its_next_tick() {
    let home = Home::new();
    let server = home.start(&[]);
    let hello = guest("hello");
    for (schedule, why) in [
        ("61 * * * *", "invalid schedule \"61 * * * *\""),
        ("@sometimes", "invalid schedule"),
        ("* * *", "invalid schedule"),
        // Valid, but more often than the default minimum of a minute.
        ("*/2 * * * * *", "more often than this server allows (1m;"),
    ] {
        let out = server.cli(
            &["deploy", "--name", "job", "--schedule", schedule, &hello],
            &[],
            b"",
        );
        assert!(!out.status.success(), "{schedule}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{schedule}: {stderr}");
    }
    // The API checks too, with a 400 that names the option.
    let refused = http()
        .post(format!(
            "{}/v1/functions/job/versions?schedule=61+*+*+*+*",
            server.url
        ))
        .header("Authorization", format!("Bearer {}", home.token()))
        .send(std::fs::read(&hello).expect("hello"));
    let refused = answer(refused);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("deploy option schedule: invalid schedule"),
        "{}",
        refused.body
    );
    // Nothing was deployed.
    assert!(!server.ok(&["list"]).contains("job"));

    let before = kiln_store::now();
    server.ok(&["deploy", "--name", "job", "--schedule", "@hourly", &hello]);
    let after = kiln_store::now();
    let listed = server.ok(&["schedules"]);
    let next = |t: i64| kiln_api::rfc3339((t / 3600 + 1) * 3600);
    assert!(
        listed.contains("job") && listed.contains("@hourly"),
        "{listed}"
    );
    assert!(
        listed.contains(&next(before)) || listed.contains(&next(after)),
        "{listed}"
    );
    assert!(listed.contains("never ran"), "{listed}");
    let info = server.ok(&["info", "job"]);
    assert!(info.contains("schedule: @hourly (UTC)"), "{info}");
    let info: Vec<ScheduleInfo> =
        serde_json::from_str(&get_as(&format!("{}/v1/schedules", server.url), &home.token()).body)
            .expect("schedules");
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].version, 1);
}

#[test]
fn each_tick_runs_once_as_a_logged_metered_post_and_missed_ticks_catch_up_with_one_run() {
    let home = Home::new();
    let flags = ["--schedule-min-interval", "1s"];
    let server = home.start(&flags);
    let token = home.token();
    server.ok(&[
        "deploy",
        "--name",
        "job",
        "--arg",
        "--stderr",
        "--schedule",
        "*/2 * * * * *",
        &guest("echo-env"),
    ]);
    let first = ended(&server, &token, "job", 3);
    let first: Vec<ScheduledRun> = first
        .into_iter()
        .filter(|r| r.finished_at.is_some())
        .collect();
    assert_consecutive(&first, 2);
    for run in &first {
        assert_eq!(run.outcome.as_deref(), Some("success"), "{run:?}");
        assert_eq!(run.status, Some(200));
        assert_eq!(run.tick % 2, 0);
    }

    // Logged like requests: what the guest saw, once per tick.
    let logs = get_as(
        &format!("{}/v1/functions/job/logs?limit=1000", server.url),
        &token,
    );
    let entries: Vec<kiln_api::LogEntry> = serde_json::from_str(&logs.body).expect("logs");
    for run in &first {
        let line = format!(
            "ENV HTTP_KILN_SCHEDULED_TIME={}\n",
            kiln_api::rfc3339(run.tick)
        );
        let seen = entries.iter().filter(|e| e.stderr.contains(&line)).count();
        assert_eq!(seen, 1, "{line}");
    }
    let entry = entries
        .iter()
        .find(|e| e.stderr.contains("HTTP_KILN_SCHEDULED_TIME"))
        .expect("a run");
    assert!(
        entry.stderr.contains("ENV REQUEST_METHOD=POST\n"),
        "{}",
        entry.stderr
    );
    assert!(
        entry.stderr.contains("ENV CONTENT_LENGTH=0\n"),
        "{}",
        entry.stderr
    );

    // Downtime of several ticks: one run catches up, for the latest of them.
    let status = server.stop();
    assert!(status.success());
    let stopped = kiln_store::now();
    eventually("three ticks missed", || {
        (kiln_store::now() >= stopped + 7).then_some(())
    });
    let server = home.start(&flags);
    let (last, after) = eventually("two runs after the restart", || {
        let runs = runs(&server, &token, "job");
        // Ticks up to the stop were claimed before it; the others after.
        let last = runs
            .iter()
            .filter(|r| r.tick <= stopped)
            .map(|r| r.tick)
            .max()?;
        let new: Vec<ScheduledRun> = runs.into_iter().filter(|r| r.tick > stopped).collect();
        (new.len() >= 2).then_some((last, new))
    });
    assert!(
        after[0].tick >= stopped + 6,
        "caught up with the latest tick: {after:#?}"
    );
    assert!(
        after[0].tick - last >= 6,
        "not one run per missed tick: {last} {after:#?}"
    );
    assert_consecutive(&after[1..], 2);

    // Metered like requests: every run ended is a request of the function.
    server.ok(&[
        "deploy",
        "--name",
        "job",
        "--arg",
        "--stderr",
        &guest("echo-env"),
    ]);
    eventually("the metered runs", || {
        let runs = runs(&server, &token, "job");
        if runs.iter().any(|r| r.finished_at.is_none()) {
            return None;
        }
        let csv = server.ok(&["usage", "--csv", "--function", "job"]);
        let line = csv.lines().find(|l| l.starts_with("default,job,"))?;
        let requests: usize = line.split(',').nth(3)?.parse().ok()?;
        (requests == runs.len()).then_some(())
    });
}

#[test]
#[ignore = "needs the test services: scripts/services/postgres and scripts/services/s3"]
fn each_tick_runs_exactly_once_across_three_nodes_and_a_node_killed_mid_run_loses_only_its_tick() {
    let mut cluster = Cluster::start_with(3, &["--schedule-min-interval", "1s"]);
    let token = cluster.homes[0].token();
    cluster.cli(
        1,
        &[
            "deploy",
            "--name",
            "tick",
            "--kv",
            "counter",
            "--schedule",
            "*/2 * * * * *",
            &guest("counter"),
        ],
    );
    let node = |i: usize| cluster.node(i);
    ended(node(2), &token, "tick", 10);
    // Unscheduled (through another node): the runs stop everywhere.
    cluster.cli(
        2,
        &[
            "deploy",
            "--name",
            "tick",
            "--kv",
            "counter",
            &guest("counter"),
        ],
    );
    let all = eventually("the runs to settle", || {
        let before = runs(node(0), &token, "tick");
        if before.iter().any(|r| r.finished_at.is_none()) {
            return None;
        }
        let hits: usize = cluster
            .cli(1, &["kv", "get", "counter", "hits"])
            .trim()
            .parse()
            .ok()?;
        let after = runs(node(0), &token, "tick");
        (after == before && hits == after.len()).then_some(after)
    });
    // Every tick once (the counter counted each run once), none skipped.
    assert!(all.len() >= 10, "{all:#?}");
    assert_consecutive(&all, 2);
    assert!(
        all.iter().all(|r| r.outcome.as_deref() == Some("success")),
        "{all:#?}"
    );

    // A run in progress on a node that dies.
    cluster.cli(
        1,
        &[
            "deploy",
            "--name",
            "sleepy",
            "--env",
            "SLEEP_MS=3000",
            "--timeout",
            "5s",
            "--schedule",
            "*/2 * * * * *",
            &guest("slow"),
        ],
    );
    let running = eventually("a run in progress", || {
        runs(node(1), &token, "sleepy")
            .into_iter()
            .find(|r| r.finished_at.is_none())
    });
    let victim = (0..3)
        .find(|&i| node(i).url.ends_with(&running.node))
        .unwrap_or_else(|| panic!("no node {}", running.node));
    let alive = (0..3).find(|&i| i != victim).expect("another node");
    cluster.kill(victim);
    let node = |i: usize| cluster.node(i);
    // Its lease passes (5 s + 10 s) and another node marks it lost...
    let lost = eventually("the run marked lost", || {
        runs(node(alive), &token, "sleepy")
            .into_iter()
            .find(|r| r.tick == running.tick && r.finished_at.is_some())
    });
    assert_eq!(
        lost.outcome.as_deref(),
        Some(kiln_api::NODE_LOST),
        "{lost:?}"
    );
    assert_eq!(lost.status, None);
    // ...and logs it; the tick is there once, and later ticks run on the others.
    // (Written by the node that found it: a read flushes the reading node's
    // queue only, so each survivor is asked.)
    eventually("the lost run in the logs", || {
        (0..3).filter(|&i| i != victim).find(|&i| {
            let logs = get_as(&format!("{}/v1/functions/sleepy/logs", node(i).url), &token);
            logs.body
                .contains(&format!("node-lost: node {}", running.node))
        })
    });
    let later = eventually("a later tick ended", || {
        let runs = runs(node(alive), &token, "sleepy");
        assert_eq!(runs.iter().filter(|r| r.tick == running.tick).count(), 1);
        runs.into_iter()
            .find(|r| r.tick > running.tick && r.outcome.as_deref() == Some("success"))
    });
    assert_ne!(later.node, running.node);
}
