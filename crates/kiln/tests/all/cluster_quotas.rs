//! Quotas that hold for a cluster as a whole, on three nodes sharing the
//! project's throwaway PostgreSQL and S3 server: a monthly request cap admits
//! exactly its count through all nodes together, a rate limit admits at most
//! its rate in each calendar second, a quota set through one node is applied
//! by the others, and a spending cap reached through one node stops the others.

use crate::cluster::Cluster;
use crate::support::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Waits until every node applies `check` to the quota its book holds
/// (`GET /v1/quota`, this node's own view).
fn every_node_applies(cluster: &Cluster, token: &str, check: impl Fn(&serde_json::Value) -> bool) {
    for i in 0..3 {
        let url = format!("{}/v1/quota", cluster.node(i).url);
        eventually(&format!("node {i} to apply the quota"), || {
            let got = get_as(&url, token);
            let status: serde_json::Value = serde_json::from_str(&got.body).ok()?;
            check(&status["quota"]).then_some(())
        });
    }
}

fn unix_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn a_request_cap_and_a_rate_limit_hold_for_three_nodes_together() {
    let cluster = Cluster::start_with(3, &[]);
    let token = cluster.homes[0].token();
    cluster.cli(0, &["deploy", "--name", "hello", &guest("hello")]);
    let urls: Vec<String> = (0..3)
        .map(|i| cluster.node(i).function_url("default", "hello"))
        .collect();

    // 30 requests a month, set through node 0, asked of the nodes in turn:
    // exactly 30 are served, by the three together.
    cluster.cli(0, &["quota", "default", "--requests-per-month", "30"]);
    every_node_applies(&cluster, &token, |q| q["requests_per_month"] == 30);
    let answers: Vec<u16> = (0..90).map(|k| post(&urls[k % 3], "x").status).collect();
    let served = answers.iter().filter(|&&s| s == 200).count();
    let refused = answers.iter().filter(|&&s| s == 429).count();
    assert_eq!((served, refused), (30, 60), "{answers:?}");
    // A node started later counts the same month.
    let late = Home::new();
    let node = cluster.start_on(&late);
    assert_eq!(
        post(&node.function_url("default", "hello"), "x").status,
        429
    );

    // 20 a second, and no monthly cap: one client per node, each sending as
    // fast as it is answered (a node alone would let 20 a second through).
    cluster.cli(
        0,
        &[
            "quota",
            "default",
            "--requests-per-month",
            "none",
            "--requests-per-second",
            "20",
        ],
    );
    every_node_applies(&cluster, &token, |q| {
        q["requests_per_second"] == 20 && q["requests_per_month"].is_null()
    });
    let first = unix_second();
    let served: Vec<usize> = std::thread::scope(|scope| {
        let clients: Vec<_> = urls
            .iter()
            .map(|url| {
                scope.spawn(move || {
                    let until = std::time::Instant::now() + Duration::from_millis(2500);
                    let mut served = 0;
                    while std::time::Instant::now() < until {
                        match post(url, "x").status {
                            200 => served += 1,
                            429 => {}
                            other => panic!("{url} answered {other}"),
                        }
                    }
                    served
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().expect("client"))
            .collect()
    });
    let seconds = (unix_second() - first + 1) as usize;
    let total: usize = served.iter().sum();
    // At most 20 in each calendar second the run touched, for all nodes.
    assert!(total <= 20 * seconds, "{served:?} in {seconds} seconds");
    // And the limit was what held them back: they reached it.
    assert!(
        total >= 20 * (seconds - 2),
        "{served:?} in {seconds} seconds"
    );
}

#[test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
fn a_spending_cap_reached_through_one_node_stops_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        "currency = \"EUR\"\nper_million_requests = 1000000.0\nper_million_cpu_ms = 0.0\n\
         per_gb_second = 0.0\nper_gb_out = 0.0\n",
    )
    .expect("prices");
    let prices = prices.display().to_string();
    let cluster = Cluster::start_with(3, &["--prices", &prices]);
    let token = cluster.homes[0].token();
    cluster.cli(0, &["deploy", "--name", "hello", &guest("hello")]);
    cluster.cli(0, &["quota", "default", "--cost-per-month", "3"]);
    every_node_applies(&cluster, &token, |q| q["cost_per_month"] == 3.0);
    // 1 EUR a request: node 0 serves 3, then refuses.
    let url = |i: usize| cluster.node(i).function_url("default", "hello");
    for _ in 0..3 {
        assert_eq!(post(&url(0), "x").status, 200);
    }
    assert_eq!(post(&url(0), "x").status, 429);
    // The others learn of the spending within about two seconds (the usage
    // flush, then their reading of it), and refuse from then on.
    for i in 1..3 {
        let refused = eventually(&format!("node {i} to stop the tenant"), || {
            let got = post(&url(i), "x");
            (got.status == 429).then_some(got.body)
        });
        assert_eq!(refused, "spending cap reached: 3 EUR per month\n");
    }
}
