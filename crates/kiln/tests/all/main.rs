//! The `kiln` binary as users and operators run it: each module starts real
//! `kiln up` processes on ephemeral loopback ports (or runs `kiln run`), and
//! speaks real HTTP and the real CLI to them. One test binary, so that the
//! server and wasmtime are linked once rather than once per file.

mod browser;
mod cli;
mod cluster;
mod cluster_quotas;
mod console;
mod crash;
mod domains;
mod files;
mod fuzz;
mod gc;
mod hostile;
mod http;
mod isolation;
mod kv;
mod operator;
mod programs;
mod realworld;
mod schedules;
mod scripts;
mod secrets;
mod server;
mod support;
mod tiers;
mod tls;
mod toolchains;
mod usage;
