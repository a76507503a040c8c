//! Key-value state for core modules: the host module `kiln_kv`, a handful of
//! functions over linear memory that a WASI preview 1 program imports with no
//! SDK (C: `__attribute__((import_module("kiln_kv"), import_name("get")))`;
//! Rust: `#[link(wasm_import_module = "kiln_kv")]`). Same store, grants and
//! limits as `wasi:keyvalue` ([`crate::kv_component`]). `examples/c/counter.c`
//! and `examples/state/counter` are a C and a Rust counter; `docs/state.md`
//! is the reference.
//!
//! Pointers and lengths are i32; a negative result is an error code, and
//! `error(buf, cap)` copies the last error's message:
//!
//! | function | result |
//! |---|---|
//! | `open(name, name_len) -> i32` | a bucket handle (0, 1, ...) |
//! | `get(bucket, key, key_len, buf, cap) -> i64` | the value's length (copied up to `cap`: call again with a larger buffer if it is more), or -1 if absent |
//! | `set(bucket, key, key_len, value, value_len) -> i32` | 0 |
//! | `delete(bucket, key, key_len) -> i32` | 0 |
//! | `increment(bucket, key, key_len, delta: i64) -> i64` | the sum |
//! | `list(bucket, cursor: i64, buf, cap, next: *i64) -> i64` | the page's length: its keys, each ended by a NUL byte (copied up to `cap`), and the cursor of the next page at `next` (0: none); cursor 0 starts |
//! | `error(buf, cap) -> i32` | the message's length |
//!
//! Codes: -2 the bucket is not granted, -3 refused (a limit, a quota, not a
//! number), -4 the store is unavailable, -5 a bad handle or argument.

use crate::function::CoreHost;
use crate::kv::{KeyValue, KvError};
use kiln_api::KvWrite;
use std::sync::Arc;
use wasmtime::{Caller, Extern, Linker};

/// The import module's name.
pub const MODULE: &str = "kiln_kv";

/// The bucket is not granted to the function.
const NOT_GRANTED: i32 = -2;
/// Refused, nothing changed.
const REFUSED: i32 = -3;
/// The store failed or is unreachable.
const UNAVAILABLE: i32 = -4;
/// A handle, pointer or length that is not valid.
const BAD_ARGUMENT: i32 = -5;

/// Most buckets one invocation may open (handles are never reused).
const MAX_OPEN: usize = 256;

/// The functions, as the linker's `kiln_kv` module. A module that does not
/// import them never sees them.
pub(crate) fn add_to_linker(linker: &mut Linker<CoreHost>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        MODULE,
        "open",
        |mut caller: Caller<'_, CoreHost>, (name, len): (i32, i32)| {
            Box::new(async move {
                let opened = (|| {
                    let name = string(&mut caller, name, len)?;
                    kv_of(&caller)?.open(&name)?;
                    let host = caller.data_mut();
                    if host.kv_core.buckets.len() >= MAX_OPEN {
                        return Err(Fail::BadArgument(format!("at most {MAX_OPEN} opens")));
                    }
                    host.kv_core.buckets.push(name);
                    Ok((host.kv_core.buckets.len() - 1) as i32)
                })();
                Ok(answer(&mut caller, opened.map(i64::from)) as i32)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "get",
        |mut caller: Caller<'_, CoreHost>,
         (bucket, key, key_len, buf, cap): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let result = async {
                    let (kv, bucket) = bucket_of(&caller, bucket)?;
                    let key = string(&mut caller, key, key_len)?;
                    caller.data_mut().kv_ops.reads += 1;
                    match kv.get(&bucket, &key).await? {
                        None => Ok(-1),
                        Some(value) => {
                            copy_out(&mut caller, buf, cap, &value)?;
                            Ok(value.len() as i64)
                        }
                    }
                }
                .await;
                Ok(answer(&mut caller, result))
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "set",
        |mut caller: Caller<'_, CoreHost>,
         (bucket, key, key_len, value, value_len): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let result = async {
                    let (kv, bucket) = bucket_of(&caller, bucket)?;
                    let key = string(&mut caller, key, key_len)?;
                    let value = bytes(&mut caller, value, value_len)?;
                    caller.data_mut().kv_ops.writes += 1;
                    kv.write(&bucket, vec![KvWrite::Set { key, value }]).await?;
                    Ok(0)
                }
                .await;
                Ok(answer(&mut caller, result) as i32)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "delete",
        |mut caller: Caller<'_, CoreHost>, (bucket, key, key_len): (i32, i32, i32)| {
            Box::new(async move {
                let result = async {
                    let (kv, bucket) = bucket_of(&caller, bucket)?;
                    let key = string(&mut caller, key, key_len)?;
                    caller.data_mut().kv_ops.writes += 1;
                    kv.write(&bucket, vec![KvWrite::Delete { key }]).await?;
                    Ok(0)
                }
                .await;
                Ok(answer(&mut caller, result) as i32)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "increment",
        |mut caller: Caller<'_, CoreHost>, (bucket, key, key_len, delta): (i32, i32, i32, i64)| {
            Box::new(async move {
                let result = async {
                    let (kv, bucket) = bucket_of(&caller, bucket)?;
                    let key = string(&mut caller, key, key_len)?;
                    let delta = u64::try_from(delta)
                        .map_err(|_| Fail::BadArgument("a negative delta".into()))?;
                    caller.data_mut().kv_ops.writes += 1;
                    let sum = kv.increment(&bucket, &key, delta).await?;
                    i64::try_from(sum).map_err(|_| {
                        Fail::Kv(KvError::Refused(format!(
                            "the sum {sum} is larger than this interface's i64 result"
                        )))
                    })
                }
                .await;
                Ok(answer(&mut caller, result))
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "list",
        |mut caller: Caller<'_, CoreHost>,
         (bucket, cursor, buf, cap, next): (i32, i64, i32, i32, i32)| {
            Box::new(async move {
                let result = async {
                    let (kv, bucket) = bucket_of(&caller, bucket)?;
                    let cursor = u64::try_from(cursor)
                        .map_err(|_| Fail::BadArgument("a negative cursor".into()))?;
                    caller.data_mut().kv_ops.reads += 1;
                    let page = kv.list(&bucket, (cursor > 0).then_some(cursor)).await?;
                    let mut text = Vec::new();
                    for key in &page.keys {
                        text.extend_from_slice(key.as_bytes());
                        text.push(0);
                    }
                    copy_out(&mut caller, buf, cap, &text)?;
                    let following = i64::try_from(page.cursor.unwrap_or(0)).unwrap_or(0);
                    write_at(&mut caller, next, &following.to_le_bytes())?;
                    Ok(text.len() as i64)
                }
                .await;
                Ok(answer(&mut caller, result))
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "error",
        |mut caller: Caller<'_, CoreHost>, buf: i32, cap: i32| -> wasmtime::Result<i32> {
            let message = caller.data().kv_core.last_error.clone().into_bytes();
            match copy_out(&mut caller, buf, cap, &message) {
                Ok(()) => Ok(message.len() as i32),
                Err(_) => Ok(BAD_ARGUMENT),
            }
        },
    )?;
    Ok(())
}

/// Why a call failed.
enum Fail {
    Kv(KvError),
    BadArgument(String),
}

impl From<KvError> for Fail {
    fn from(e: KvError) -> Fail {
        Fail::Kv(e)
    }
}

/// The call's result, or its error code with the message kept for `error`.
fn answer(caller: &mut Caller<'_, CoreHost>, result: Result<i64, Fail>) -> i64 {
    let (code, message) = match result {
        Ok(value) => return value,
        Err(Fail::Kv(e @ KvError::NotGranted(_))) => (NOT_GRANTED, e.to_string()),
        Err(Fail::Kv(e @ KvError::Refused(_))) => (REFUSED, e.to_string()),
        Err(Fail::Kv(e @ KvError::Unavailable(_))) => (UNAVAILABLE, e.to_string()),
        Err(Fail::BadArgument(why)) => (BAD_ARGUMENT, why),
    };
    caller.data_mut().kv_core.last_error = message;
    i64::from(code)
}

fn kv_of(caller: &Caller<'_, CoreHost>) -> Result<Arc<dyn KeyValue>, Fail> {
    caller
        .data()
        .kv
        .clone()
        .ok_or_else(|| KvError::NotGranted(String::new()).into())
}

fn bucket_of(
    caller: &Caller<'_, CoreHost>,
    handle: i32,
) -> Result<(Arc<dyn KeyValue>, String), Fail> {
    let kv = kv_of(caller)?;
    let name = usize::try_from(handle)
        .ok()
        .and_then(|i| caller.data().kv_core.buckets.get(i))
        .ok_or_else(|| Fail::BadArgument(format!("no open bucket has handle {handle}")))?;
    Ok((kv, name.clone()))
}

fn memory(caller: &mut Caller<'_, CoreHost>) -> Result<wasmtime::Memory, Fail> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(Fail::BadArgument("the module exports no memory".into())),
    }
}

fn range(ptr: i32, len: i32) -> Result<(usize, usize), Fail> {
    match (usize::try_from(ptr), usize::try_from(len)) {
        (Ok(ptr), Ok(len)) => Ok((ptr, len)),
        _ => Err(Fail::BadArgument("a negative pointer or length".into())),
    }
}

fn bytes(caller: &mut Caller<'_, CoreHost>, ptr: i32, len: i32) -> Result<Vec<u8>, Fail> {
    let (ptr, len) = range(ptr, len)?;
    let memory = memory(caller)?;
    let data = memory.data(&caller);
    data.get(ptr..ptr.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| Fail::BadArgument("a pointer and length outside memory".into()))
}

fn string(caller: &mut Caller<'_, CoreHost>, ptr: i32, len: i32) -> Result<String, Fail> {
    String::from_utf8(bytes(caller, ptr, len)?)
        .map_err(|_| Fail::BadArgument("a name or key that is not UTF-8".into()))
}

fn write_at(caller: &mut Caller<'_, CoreHost>, ptr: i32, bytes: &[u8]) -> Result<(), Fail> {
    let (ptr, _) = range(ptr, 0)?;
    let memory = memory(caller)?;
    memory
        .data_mut(caller)
        .get_mut(ptr..ptr.saturating_add(bytes.len()))
        .ok_or_else(|| Fail::BadArgument("a pointer outside memory".into()))?
        .copy_from_slice(bytes);
    Ok(())
}

/// Copies as much of `bytes` as `cap` allows to `buf`.
fn copy_out(
    caller: &mut Caller<'_, CoreHost>,
    buf: i32,
    cap: i32,
    bytes: &[u8],
) -> Result<(), Fail> {
    let (_, cap) = range(buf, cap)?;
    write_at(caller, buf, &bytes[..bytes.len().min(cap)])
}
