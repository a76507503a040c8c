//! Cluster: hello through nginx to three `kiln up` nodes sharing a PostgreSQL
//! and an S3 bucket (the project's throwaway services), against the same nginx
//! in front of one of those nodes; wrk at 64 connections, runs alternated
//! [`ROUNDS`] times, medians compared. Each node's CPU time over the three-node
//! runs shows how the load spread. On a machine with fewer cores than nodes the
//! ratio is below one: the nodes, nginx and wrk share the same cores.

use super::client;
use super::kiln::Kiln;
use super::nginx::{Nginx, free_address};
use super::report::{Report, median, runs};
use super::wrk;
use kiln_guests::services;
use std::path::Path;
use std::time::Duration;

const ROUNDS: usize = 3;
const NODES: usize = 3;

/// nginx in front of the nodes: one address balancing over all of them, one
/// proxying to the first only.
struct Balancer {
    _nginx: Nginx,
    all: String,
    first: String,
}

impl Balancer {
    fn start(dir: &Path, nodes: &[Kiln]) -> anyhow::Result<Balancer> {
        let (all, first) = (free_address()?, free_address()?);
        let servers: String = nodes
            .iter()
            .map(|n| format!("        server {};\n", n.addr))
            .collect();
        let proxy = "proxy_http_version 1.1; proxy_set_header Connection \"\"; \
                     proxy_request_buffering off; proxy_buffering off;";
        let http = format!(
            "    upstream all {{\n{servers}        keepalive 128;\n    }}\n\
             upstream first {{\n        server {first_node};\n        keepalive 128;\n    }}\n\
             server {{ listen {all}; location / {{ proxy_pass http://all; {proxy} }} }}\n\
             server {{ listen {first}; location / {{ proxy_pass http://first; {proxy} }} }}\n",
            first_node = nodes[0].addr,
        );
        let nginx = Nginx::start(dir, &http, &all)?;
        Ok(Balancer {
            _nginx: nginx,
            all,
            first,
        })
    }
}

/// Three nodes on a fresh PostgreSQL database and S3 bucket (named after
/// `name`), and nginx in front of them; everything stops when it is dropped.
pub(super) struct Cluster {
    /// Dropped first: nginx stops before the nodes it proxies to.
    balancer: Balancer,
    pub nodes: Vec<Kiln>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub(super) fn start(binary: &Path, name: &str) -> anyhow::Result<Cluster> {
        let database = services::postgres_database(name);
        let (endpoint, bucket) = services::s3_bucket(&name.replace('_', "-"));
        let blobs = format!("s3://{bucket}");
        let flags = [
            "--database",
            &database,
            "--blobs",
            &blobs,
            "--s3-endpoint",
            &endpoint,
        ];
        let dir = tempfile::tempdir()?;
        let mut nodes: Vec<Kiln> = Vec::new();
        for i in 0..NODES {
            let home = dir.path().join(format!("node{i}"));
            nodes.push(match nodes.first() {
                None => Kiln::start(binary, &home, &flags)?,
                Some(first) => {
                    let tokens = (first.token.as_str(), first.admin_token.as_str());
                    Kiln::join(binary, &home, &flags, tokens)?
                }
            });
        }
        let balancer = Balancer::start(dir.path(), &nodes)?;
        Ok(Cluster {
            balancer,
            nodes,
            _dir: dir,
        })
    }

    /// `path` through nginx, balanced over every node.
    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.balancer.all)
    }
}

pub(super) fn run(
    binary: &Path,
    hello: &[u8],
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    let cluster = Cluster::start(binary, "kiln_bench")?;
    let nodes = &cluster.nodes;
    client::deploy(
        &client::agent(),
        nodes[0].addr,
        &nodes[0].token,
        "hello",
        hello,
    )?;
    for node in nodes {
        client::expect(node.addr, "/fn/default/hello", b"n", b"Hello, n!\n")?;
    }
    let balancer = &cluster.balancer;
    let url = |addr: &str| format!("http://{addr}/fn/default/hello");

    let (mut one, mut three) = (Vec::new(), Vec::new());
    let mut cpu = [Duration::ZERO; NODES];
    for round in 0..ROUNDS {
        for three_first in [round % 2 == 0, round % 2 != 0] {
            if three_first {
                let before: Vec<Duration> =
                    nodes.iter().map(Kiln::cpu_time).collect::<Result<_, _>>()?;
                three.push(wrk::run(&url(&balancer.all), "n", 64, duration)?.requests_per_sec);
                for (i, node) in nodes.iter().enumerate() {
                    cpu[i] += node.cpu_time()? - before[i];
                }
            } else {
                one.push(wrk::run(&url(&balancer.first), "n", 64, duration)?.requests_per_sec);
            }
        }
    }
    report.add(
        "cluster",
        "1 node behind nginx: req/s of the runs",
        runs(&one, 0),
    );
    report.add(
        "cluster",
        "3 nodes behind nginx: req/s of the runs",
        runs(&three, 0),
    );
    let total: f64 = cpu.iter().map(Duration::as_secs_f64).sum();
    let shares = cpu
        .iter()
        .map(|c| {
            format!(
                "{:.0}%",
                c.as_secs_f64() / total.max(f64::MIN_POSITIVE) * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    report.add(
        "cluster",
        "3 nodes: each node's share of the nodes' CPU time",
        format!("{shares} ({total:.1} s in all)"),
    );
    let (one, three) = (median(one), median(three));
    report.add(
        "cluster",
        "3 nodes ÷ 1 node, req/s (medians, 64 connections)",
        format!(
            "{:.2}× ({three:.0} vs {one:.0}); {} cores here",
            three / one,
            cores()
        ),
    );
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
