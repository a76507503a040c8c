//! WAT guests, each doing one thing. Offsets in memory are spelled out in comments.

/// Prints its mutable global, incremented once per run: "1" on a fresh instance.
pub(crate) const COUNTER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $count (mut i32) (i32.const 0))
  (func (export "_start")
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    ;; the digit at 100, an iovec {100, 1} at 0, nwritten at 8
    (i32.store8 (i32.const 100) (i32.add (i32.const 48) (global.get $count)))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

/// Copies stdin to stdout. Two pages of memory: a 64 KiB buffer at 1024.
pub(crate) const ECHO: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (local $n i32)
    (loop $copy
      ;; iovec {1024, 65536} at 0, count at 8
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 65536))
      (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $n (i32.load (i32.const 8)))
      (if (i32.gt_u (local.get $n) (i32.const 0))
        (then
          (i32.store (i32.const 4) (local.get $n))
          (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
          (br $copy))))))
"#;

/// Calls `proc_exit` with the given code.
pub(crate) fn exit(code: i32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const {code}))))"#
    )
}

pub(crate) const TRAP: &str =
    r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#;

pub(crate) const LOOP: &str =
    r#"(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))"#;

/// Grows memory one page at a time, forever.
pub(crate) const MEMORY_BOMB: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop (drop (memory.grow (i32.const 1))) (br 0))))
"#;

/// Asks for 512 pages (32 MiB) before running any code.
pub(crate) const BIG_INITIAL_MEMORY: &str =
    r#"(module (memory (export "memory") 512) (func (export "_start")))"#;

/// Writes 64 KiB of stdout (or stderr, with fd 2) per call, `times` times (0 = forever).
pub(crate) fn flood(fd: u32, times: u32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (local $i i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 65536))
    (loop $again
      (drop (call $fd_write (i32.const {fd}) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.or (i32.eqz (i32.const {times})) (i32.lt_u (local.get $i) (i32.const {times})))))))"#
    )
}

/// Sleeps through `poll_oneoff` on a relative clock subscription of `nanos`.
pub(crate) fn sleep(nanos: u64) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; subscription at 0: userdata 0, tag 0 (clock), clock id 1 (monotonic) at 16,
    ;; timeout at 24, precision 0, flags 0 (relative); event out at 64, count at 128
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const {nanos}))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#
    )
}

/// Calls the WASI functions a plain program relies on besides stdio (random, both
/// clocks, args and environment sizes) and exits with the sum of their errnos.
pub(crate) const WASI_BASICS: &str = r#"
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; 16 random bytes at 0; clocks at 32 and 40; sizes at 48..64
    (call $exit
      (i32.add
        (i32.add (call $random (i32.const 0) (i32.const 16))
                 (i32.add (call $clock (i32.const 0) (i64.const 1) (i32.const 32))
                          (call $clock (i32.const 1) (i64.const 1) (i32.const 40))))
        (i32.add (call $args (i32.const 48) (i32.const 52))
                 (call $environ (i32.const 56) (i32.const 60)))))))
"#;
