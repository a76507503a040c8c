//! `kiln kv ...`: the tenant's key-value buckets, as its functions see them.

use crate::client::{Client, Role, ServerArgs};
use anyhow::Context;
use kiln_api::{ByteCount, KvKeys, KvOverview, check_bucket};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use std::io::{Read, Write};
use std::process::ExitCode;

/// Read and write this tenant's key-value buckets
#[derive(clap::Args, Debug)]
pub(crate) struct KvArgs {
    #[command(subcommand)]
    command: KvCommand,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Subcommand, Debug)]
enum KvCommand {
    /// The buckets that hold keys, and what the tenant stores against its quota
    Buckets,
    /// Print a key's value (raw bytes); exit status 1 if it is not set
    Get { bucket: String, key: String },
    /// Set a key: to VALUE, or to what stdin holds
    Set {
        bucket: String,
        key: String,
        value: Option<String>,
    },
    /// Delete a key, or with no key every key of the bucket
    Delete { bucket: String, key: Option<String> },
    /// List a bucket's keys, in the order they were first set
    List { bucket: String },
}

/// Largest value `kiln kv get` reads (the server's own limit is lower by
/// default).
const MAX_VALUE: u64 = 1 << 30;

/// A URL path segment holding `text` whatever its characters.
fn segment(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

pub(crate) fn run(args: KvArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server, Role::Tenant)?;
    let value_path = |bucket: &str, key: &str| -> anyhow::Result<String> {
        check_bucket(bucket)?;
        Ok(format!("/v1/kv/{bucket}/{}", segment(key)))
    };
    match args.command {
        KvCommand::Buckets => {
            let overview: KvOverview = client.get("/v1/kv")?;
            println!("{:<24} {:>10} {:>12}", "BUCKET", "KEYS", "BYTES");
            for b in &overview.buckets {
                println!(
                    "{:<24} {:>10} {:>12}",
                    b.name,
                    b.keys,
                    ByteCount(b.bytes).to_string()
                );
            }
            println!(
                "stored: {} keys of {}, {} of {}",
                overview.used.keys,
                overview.quota.keys,
                ByteCount(overview.used.bytes),
                ByteCount(overview.quota.bytes)
            );
        }
        KvCommand::Get { bucket, key } => {
            let Some(value) = client.get_bytes(&value_path(&bucket, &key)?, MAX_VALUE)? else {
                eprintln!("kiln: bucket {bucket} has no key {key:?}");
                return Ok(ExitCode::FAILURE);
            };
            std::io::stdout().write_all(&value)?;
        }
        KvCommand::Set { bucket, key, value } => {
            let value = match value {
                Some(value) => value.into_bytes(),
                None => {
                    let mut bytes = Vec::new();
                    std::io::stdin()
                        .take(MAX_VALUE)
                        .read_to_end(&mut bytes)
                        .context("cannot read the value from stdin")?;
                    bytes
                }
            };
            client.put_bytes(&value_path(&bucket, &key)?, &value)?;
        }
        KvCommand::Delete {
            bucket,
            key: Some(key),
        } => {
            client.delete(&value_path(&bucket, &key)?)?;
        }
        KvCommand::Delete { bucket, key: None } => {
            check_bucket(&bucket)?;
            client.delete(&format!("/v1/kv/{bucket}"))?;
            eprintln!("deleted every key of bucket {bucket}");
        }
        KvCommand::List { bucket } => {
            check_bucket(&bucket)?;
            let mut cursor: Option<u64> = None;
            let mut out = std::io::stdout().lock();
            loop {
                let path = match cursor {
                    Some(c) => format!("/v1/kv/{bucket}?cursor={c}"),
                    None => format!("/v1/kv/{bucket}"),
                };
                let page: KvKeys = client.get(&path)?;
                for key in &page.keys {
                    writeln!(out, "{key}")?;
                }
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
