//! The `kiln_kv` host module's boundary with a hostile core module: wild
//! pointers, negative lengths, unknown handles and buffers outside memory are
//! error codes, never a host fault, and every call is counted. The key-value
//! store behind it is a small in-memory [`KeyValue`] (the server's, over SQLite
//! and PostgreSQL, is tested end to end in `crates/kiln/tests/all/kv.rs`).

use crate::{runtime, wasm};
use kiln_api::{KvKeys, KvWrite};
use kiln_runtime::{KeyValue, KvError, Limits, Outcome, Request};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Bucket `granted` only, in memory.
#[derive(Debug, Default)]
struct InMemory(Mutex<BTreeMap<String, Vec<u8>>>);

#[async_trait::async_trait]
impl KeyValue for InMemory {
    fn open(&self, bucket: &str) -> Result<(), KvError> {
        match bucket {
            "granted" => Ok(()),
            other => Err(KvError::NotGranted(other.to_owned())),
        }
    }
    async fn get(&self, _: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn get_many(&self, _: &str, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let map = self.0.lock().unwrap();
        Ok(keys.iter().map(|k| map.get(k).cloned()).collect())
    }
    async fn exists(&self, _: &str, key: &str) -> Result<bool, KvError> {
        Ok(self.0.lock().unwrap().contains_key(key))
    }
    async fn write(&self, _: &str, writes: Vec<KvWrite>) -> Result<(), KvError> {
        let mut map = self.0.lock().unwrap();
        for w in writes {
            match w {
                KvWrite::Set { key, value } => map.insert(key, value),
                KvWrite::Delete { key } => map.remove(&key),
            };
        }
        Ok(())
    }
    async fn increment(&self, _: &str, _: &str, _: u64) -> Result<u64, KvError> {
        Err(KvError::Refused("not a number".into()))
    }
    async fn list(&self, _: &str, _: Option<u64>) -> Result<KvKeys, KvError> {
        Ok(KvKeys {
            keys: self.0.lock().unwrap().keys().cloned().collect(),
            cursor: None,
        })
    }
}

/// Exits with `$code` unless the i32 on the stack equals `$want`.
const HOSTILE: &str = r#"
(module
  (import "kiln_kv" "open" (func $open (param i32 i32) (result i32)))
  (import "kiln_kv" "get" (func $get (param i32 i32 i32 i32 i32) (result i64)))
  (import "kiln_kv" "set" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "kiln_kv" "increment" (func $inc (param i32 i32 i32 i64) (result i64)))
  (import "kiln_kv" "list" (func $list (param i32 i64 i32 i32 i32) (result i64)))
  (import "kiln_kv" "error" (func $error (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "granted")
  (data (i32.const 16) "other")
  (data (i32.const 32) "key")
  (data (i32.const 48) "value")
  (func $expect32 (param $got i32) (param $want i32) (param $code i32)
    (if (i32.ne (local.get $got) (local.get $want)) (then (call $exit (local.get $code)))))
  (func $expect64 (param $got i64) (param $want i64) (param $code i32)
    (if (i64.ne (local.get $got) (local.get $want)) (then (call $exit (local.get $code)))))
  (func (export "_start")
    ;; A name past the end of memory, a negative length, a name not granted.
    (call $expect32 (call $open (i32.const 65530) (i32.const 100)) (i32.const -5) (i32.const 10))
    (call $expect32 (call $open (i32.const 0) (i32.const -1)) (i32.const -5) (i32.const 11))
    (call $expect32 (call $open (i32.const 16) (i32.const 5)) (i32.const -2) (i32.const 12))
    ;; A handle never opened.
    (call $expect64 (call $get (i32.const 7) (i32.const 32) (i32.const 3) (i32.const 0) (i32.const 0))
      (i64.const -5) (i32.const 13))
    ;; Open, set, then get into a buffer outside memory, then into a real one.
    (call $expect32 (call $open (i32.const 0) (i32.const 7)) (i32.const 0) (i32.const 14))
    (call $expect32 (call $set (i32.const 0) (i32.const 32) (i32.const 3) (i32.const 48) (i32.const 5))
      (i32.const 0) (i32.const 15))
    (call $expect64 (call $get (i32.const 0) (i32.const 32) (i32.const 3) (i32.const 65534) (i32.const 100))
      (i64.const -5) (i32.const 16))
    (call $expect64 (call $get (i32.const 0) (i32.const 32) (i32.const 3) (i32.const 1024) (i32.const 2))
      (i64.const 5) (i32.const 17))
    (call $expect32 (i32.load16_u (i32.const 1024)) (i32.const 0x6176) (i32.const 18)) ;; "va"
    ;; A refusal from the store is -3, with its message.
    (call $expect64 (call $inc (i32.const 0) (i32.const 32) (i32.const 3) (i64.const 1))
      (i64.const -3) (i32.const 19))
    (call $expect32 (call $error (i32.const 2048) (i32.const 64)) (i32.const 12) (i32.const 20))
    ;; A cursor out of range, and `next` outside memory.
    (call $expect64 (call $list (i32.const 0) (i64.const -1) (i32.const 0) (i32.const 0) (i32.const 0))
      (i64.const -5) (i32.const 21))
    (call $expect64 (call $list (i32.const 0) (i64.const 0) (i32.const 4096) (i32.const 64) (i32.const 65535))
      (i64.const -5) (i32.const 22))
    (call $expect64 (call $list (i32.const 0) (i64.const 0) (i32.const 4096) (i32.const 64) (i32.const 8))
      (i64.const 4) (i32.const 23))))
"#;

#[tokio::test]
async fn hostile_pointers_and_handles_are_error_codes_and_every_call_is_counted() {
    let rt = runtime();
    let (function, _) = rt.runtime.load_wasm(&wasm(HOSTILE)).expect("load");
    let kv: Arc<dyn KeyValue> = Arc::new(InMemory::default());
    let inv = rt
        .runtime
        .invoke(
            &function,
            Request {
                args: ["kv".to_owned()].into(),
                limits: Limits::default(),
                kv: Some(kv),
                ..Default::default()
            },
        )
        .await
        .expect("invoke");
    assert_eq!(inv.outcome, Outcome::Success, "{:?}", inv.detail);
    // Counted: the two gets and two lists that reached the store (a bad handle
    // or cursor is refused before), the set and the increment.
    assert_eq!((inv.stats.kv_reads, inv.stats.kv_writes), (4, 2));
}

#[tokio::test]
async fn without_a_grant_every_open_is_refused() {
    let rt = runtime();
    let (function, _) = rt.runtime.load_wasm(&wasm(HOSTILE)).expect("load");
    let inv = rt
        .runtime
        .invoke(
            &function,
            Request {
                args: ["kv".to_owned()].into(),
                ..Default::default()
            },
        )
        .await
        .expect("invoke");
    // Bad pointers are still -5 and "other" -2; then a call on a handle is
    // refused as not granted (-2) before its handle is looked at.
    assert_eq!(inv.outcome, Outcome::Exit(13));
}
