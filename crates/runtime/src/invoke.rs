//! One invocation: a fresh instance of a [`Function`], fed a [`Request`], run to its
//! end under [`Limits`], and reported as an [`Invocation`].

use crate::cpu_share::CpuShare;
use crate::cpu_time::{ChargeCpu, MeasureCpu};
use crate::files::{Files, FilesError, InvocationDir, ScratchLimitExceeded, ScratchRoot};
use crate::function::{
    ComponentCtx, Entry, Function, Host, run_command as run_command_component, run_core,
};
use crate::kv::KvGrant;
use crate::limiter::{GuestLimiter, MemoryLimitExceeded};
use crate::limits::Limits;
use crate::outbound::{AllowedHosts, OutboundHooks};
use crate::output::{CapturedOutput, OutputLimitExceeded, Overflow};
use bytes::Bytes;
use kiln_api::ByteCount;
use std::fmt;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

/// The input of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Bytes the guest reads from stdin (the HTTP request body).
    pub stdin: Bytes,
    /// `argv`: by convention the function name first. Shared: a deployment
    /// builds it once for all its requests.
    pub args: Arc<[String]>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// What the invocation may use.
    pub limits: Limits,
    /// Hosts a command component may send HTTP requests to (none by default).
    pub allowed_hosts: Arc<AllowedHosts>,
    /// Directories the guest sees (none by default).
    pub files: Arc<Files>,
    /// Key-value buckets the guest may open (none by default).
    pub kv: KvGrant,
    /// What a component's `wasi:config/store` holds (none by default).
    pub config: Arc<[(String, String)]>,
    /// The tenant's share of CPU (none: never delayed, never counted).
    pub cpu: Option<CpuShare>,
}

/// How an invocation ended. Each way of failing is its own variant so that callers
/// (the HTTP server, `kiln run`) can answer each distinctly.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// `_start` returned, or the guest called `proc_exit(0)`.
    Success,
    /// The guest called `proc_exit` with a non-zero code.
    Exit(i32),
    /// The guest trapped (`unreachable`, out-of-bounds access, stack overflow, a
    /// Rust panic...). `message` is the trap's one-line description.
    Trap {
        /// The trap's one-line description.
        message: String,
    },
    /// The wall-time limit passed before the guest finished.
    WallTimeLimit {
        /// The limit that passed.
        limit: Duration,
    },
    /// The guest asked for more linear memory than its limit.
    MemoryLimit {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The guest wrote more stdout (or, for a wasi:http component, more response
    /// body) than its limit.
    OutputLimit {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A wasi:http component ended without a response, or answered with a
    /// `wasi:http` error code instead of one. `reason` says which.
    NoResponse {
        /// What the component did instead.
        reason: String,
    },
    /// The guest's scratch directory (with its writable copies) went past a
    /// bound.
    ScratchLimit(ScratchLimitExceeded),
}

impl Outcome {
    /// Whether the guest ended successfully.
    pub fn is_success(&self) -> bool {
        *self == Outcome::Success
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => write!(f, "exited successfully"),
            Outcome::Exit(code) => write!(f, "exited with code {code}"),
            Outcome::Trap { message } => write!(f, "trapped: {message}"),
            Outcome::WallTimeLimit { limit } => {
                write!(f, "stopped: wall-time limit of {limit:?} exceeded")
            }
            Outcome::MemoryLimit { limit } => {
                write!(f, "stopped: memory limit of {} exceeded", ByteCount(*limit))
            }
            Outcome::OutputLimit { limit } => {
                write!(f, "stopped: output limit of {} exceeded", ByteCount(*limit))
            }
            Outcome::NoResponse { reason } => write!(f, "sent no response: {reason}"),
            Outcome::ScratchLimit(exceeded) => write!(f, "stopped: {exceeded}"),
        }
    }
}

/// What one run cost. Everything a bill or a benchmark needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// From the start of instantiation to the guest's end.
    pub wall: Duration,
    /// CPU time spent running the guest (and the host calls it made), excluding
    /// time it was blocked.
    pub cpu: Duration,
    /// Time to create the fresh instance from the pre-linked function.
    pub instantiation: Duration,
    /// Largest linear memory the instance had, in bytes.
    pub peak_memory_bytes: u64,
    /// Bytes given on stdin.
    pub bytes_in: u64,
    /// Bytes the guest wrote to stdout.
    pub bytes_out: u64,
    /// Key-value reads it made (each key read, each page listed).
    pub kv_reads: u64,
    /// Key-value writes it made (each key set, deleted or incremented).
    pub kv_writes: u64,
}

/// The result of an invocation that ran (whether or not the guest succeeded).
#[derive(Debug, Clone)]
pub struct Invocation {
    /// How it ended.
    pub outcome: Outcome,
    /// Everything the guest wrote to stdout (up to the output limit).
    pub stdout: Bytes,
    /// The first [`Limits::stderr_bytes`] of what the guest wrote to stderr.
    pub stderr: Bytes,
    /// Whether stderr was cut at its limit.
    pub stderr_truncated: bool,
    /// For failures: the full error, with the guest's backtrace when there is one.
    /// Meant for logs, not for clients.
    pub detail: Option<String>,
    /// What it cost.
    pub stats: Stats,
}

/// Why an invocation could not run at all. Nothing of the guest executed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The body is larger than the function's input limit.
    #[error("request body of {size} bytes is over the limit of {}", ByteCount(*.limit))]
    StdinTooLarge {
        /// The body's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The function's memory limit is more than an instance slot holds.
    #[error(
        "memory limit of {} is over this server's maximum of {}",
        ByteCount(*.limit),
        ByteCount(*.max)
    )]
    MemoryLimitTooLarge {
        /// The function's memory limit.
        limit: u64,
        /// What the engine's instance slots hold.
        max: u64,
    },
    /// Every instance slot stayed busy for the whole wait (the number of slots).
    #[error("no free instance slot: all {0} were in use for the whole wait; retry shortly")]
    AtCapacity(u32),
    /// A buffered or streamed command invocation of a wasi:http component.
    #[error(
        "this is a wasi:http component: it answers HTTP requests, it does not read stdin \
         (deploy it and send it a request)"
    )]
    NotACommand,
    /// `handle_http` of something that is not a wasi:http component.
    #[error("this function is not a wasi:http component")]
    NotHttp,
    /// The request cannot be handed to the guest (e.g. a bad target).
    #[error("the request cannot be given to the function: {0}")]
    BadRequest(String),
    /// The task running the guest went away before it reported.
    #[error("the invocation was interrupted before it ended")]
    Interrupted,
    /// The invocation's files could not be prepared (a mount missing on this
    /// node, a copy that failed).
    #[error("{0}")]
    Files(String),
    /// Scratch directories already hold the server's whole scratch budget.
    #[error(
        "no room for a scratch directory of {}: this server's {} are in use; retry shortly",
        ByteCount(*.bytes),
        ByteCount(*.total)
    )]
    ScratchBusy {
        /// What this invocation needs.
        bytes: u64,
        /// The server-wide budget.
        total: u64,
    },
}

impl From<FilesError> for InvokeError {
    fn from(error: FilesError) -> InvokeError {
        match error {
            FilesError::Busy { bytes, total } => InvokeError::ScratchBusy { bytes, total },
            FilesError::Prepare(message) => InvokeError::Files(message),
        }
    }
}

/// Raised by the epoch callback when the deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("wall-time limit exceeded")]
pub(crate) struct WallTimeExceeded;

pub(crate) struct Invoker {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) max_memory_bytes: u64,
    pub(crate) max_instances: u32,
    /// One permit per pool slot: invocations queue here (up to `instance_wait`)
    /// instead of failing the moment the pool is full.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    pub(crate) instance_wait: Duration,
    /// Where invocations make their own directories.
    pub(crate) scratch: Arc<ScratchRoot>,
    /// How often the epoch advances (the epoch callback runs at that pace).
    pub(crate) epoch_tick: Duration,
    /// Where outbound requests may connect.
    pub(crate) egress: Arc<crate::egress::EgressPolicy>,
    /// Keeps the epoch ticker running while a store lives.
    pub(crate) awake: Arc<crate::ticker::Awake>,
}

/// An instance slot, held until the store using it is dropped.
pub(crate) type Slot = tokio::sync::OwnedSemaphorePermit;

impl Invoker {
    /// Checks `limits` against the server's maxima and waits (up to `instance_wait`)
    /// for a free instance slot.
    pub(crate) async fn admit(&self, limits: &Limits) -> Result<Slot, InvokeError> {
        if limits.memory_bytes > self.max_memory_bytes {
            return Err(InvokeError::MemoryLimitTooLarge {
                limit: limits.memory_bytes,
                max: self.max_memory_bytes,
            });
        }
        match tokio::time::timeout(self.instance_wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(InvokeError::AtCapacity(self.max_instances)),
        }
    }

    /// A store for one instance: `wasi` as its host state, the memory limiter, and
    /// the wall-time deadline (and the bounds of the invocation's own directory)
    /// enforced at every epoch tick.
    pub(crate) fn store<W: Send>(
        &self,
        engine: &wasmtime::Engine,
        wasi: W,
        limits: &Limits,
        dir: Option<Arc<InvocationDir>>,
        kv: KvGrant,
        share: Option<CpuShare>,
    ) -> Store<Host<W>> {
        let host = Host {
            wasi,
            limiter: GuestLimiter::new(limits.memory_bytes),
            dir,
            kv,
            kv_core: Default::default(),
            kv_ops: Default::default(),
            share,
            _live: self.awake.guest(),
        };
        let mut store = Store::new(engine, host);
        store.limiter(|host| &mut host.limiter);
        let deadline = Instant::now() + limits.wall_time;
        let tick = self.epoch_tick;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |store| {
            if Instant::now() >= deadline {
                return Err(wasmtime::Error::new(WallTimeExceeded));
            }
            if let Some(dir) = &store.data().dir {
                dir.check_on_tick(tick).map_err(wasmtime::Error::new)?;
            }
            // A tenant over its share of a saturated machine waits for its
            // turn, its instance suspended and its thread free.
            if let Some(share) = &store.data().share
                && share.must_wait()
            {
                return Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(share.clone().wait_turn()),
                ));
            }
            {
                // Hand the thread back to the executor once per tick so that a busy
                // guest never monopolises it. tokio's own yield lets the tasks
                // already queued run first and, unlike a plain self-wake, does not
                // wake an idle worker to steal the guest: an uncontended guest
                // keeps its core and costs no scheduler work beyond its own.
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store
    }

    pub(crate) async fn invoke(
        &self,
        function: &Function,
        request: Request,
    ) -> Result<Invocation, InvokeError> {
        let limits = request.limits;
        let bytes_in = request.stdin.len() as u64;
        if bytes_in > limits.stdin_bytes {
            return Err(InvokeError::StdinTooLarge {
                size: bytes_in,
                limit: limits.stdin_bytes,
            });
        }
        // Declared first, so dropped last: the slot is free again only once the
        // store (and with it the instance) is gone.
        let _slot = self.admit(&limits).await?;
        let stdout = CapturedOutput::new(limits.stdout_bytes, Overflow::Trap);
        let stderr = CapturedOutput::new(limits.stderr_bytes, Overflow::Truncate);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(request.stdin))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&request.args)
            .envs(&request.env);
        let dir = self.scratch.prepare(&request.files, &mut wasi).await?;
        let ran = run_command(
            self,
            function,
            wasi,
            &limits,
            Reach {
                allowed_hosts: request.allowed_hosts,
                kv: request.kv,
                config: request.config,
                cpu: request.cpu,
            },
            dir,
        )
        .await?;
        let (stdout, _) = stdout.take();
        let (stderr, stderr_truncated) = stderr.take();
        let mut ended = ran.end(self.max_instances, &limits)?;
        ended.stats.bytes_in = bytes_in;
        ended.stats.bytes_out = stdout.len() as u64;
        Ok(Invocation {
            outcome: ended.outcome,
            stdout,
            stderr,
            stderr_truncated,
            detail: ended.detail,
            stats: ended.stats,
        })
    }
}

/// What a command's guest may reach besides its files.
pub(crate) struct Reach {
    /// Hosts a component may send HTTP requests to.
    pub(crate) allowed_hosts: Arc<AllowedHosts>,
    /// Key-value buckets it may open.
    pub(crate) kv: KvGrant,
    /// What a component's `wasi:config/store` holds.
    pub(crate) config: Arc<[(String, String)]>,
    /// The tenant's share of CPU.
    pub(crate) cpu: Option<CpuShare>,
}

/// Runs a command (core module or command component) to its end in a store made
/// from `wasi`.
pub(crate) async fn run_command(
    invoker: &Invoker,
    function: &Function,
    mut wasi: WasiCtxBuilder,
    limits: &Limits,
    reach: Reach,
    dir: Option<Arc<InvocationDir>>,
) -> Result<Ran, InvokeError> {
    let Reach {
        allowed_hosts,
        kv,
        config,
        cpu,
    } = reach;
    Ok(match &function.entry {
        Entry::Core { pre, start } => {
            let store = invoker.store(function.engine(), wasi.build_p1(), limits, dir, kv, cpu);
            // The entry future owns its (reference-counted) copies of what it runs.
            let (pre, start) = (pre.clone(), *start);
            drive(store, limits, move |store, instantiation| {
                Box::pin(async move { run_core(&pre, &start, store, instantiation).await })
            })
            .await
        }
        Entry::Command(pre) => {
            let outbound = OutboundHooks::new(allowed_hosts, invoker.egress.clone());
            let wasi = ComponentCtx::new(wasi.build(), outbound).with_config(&config);
            let store = invoker.store(function.engine(), wasi, limits, dir, kv, cpu);
            let pre = pre.clone();
            drive(store, limits, move |store, instantiation| {
                Box::pin(async move { run_command_component(&pre, store, instantiation).await })
            })
            .await
        }
        Entry::Http(_) => return Err(InvokeError::NotACommand),
    })
}

/// A guest run that ended, before its outcome is classified.
pub(crate) struct Ran {
    /// `None`: stopped at the wall-time deadline.
    result: Option<wasmtime::Result<()>>,
    stats: Stats,
}

/// How a guest run ended, and what it cost (without the byte counts, which the
/// caller knows).
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) outcome: Outcome,
    pub(crate) detail: Option<String>,
    pub(crate) stats: Stats,
}

impl Ran {
    pub(crate) fn end(self, max_instances: u32, limits: &Limits) -> Result<Ended, InvokeError> {
        let (outcome, detail) = match self.result {
            None => (
                Outcome::WallTimeLimit {
                    limit: limits.wall_time,
                },
                None,
            ),
            Some(Ok(())) => (Outcome::Success, None),
            Some(Err(error)) => {
                if error.is::<wasmtime::PoolConcurrencyLimitError>() {
                    return Err(InvokeError::AtCapacity(max_instances));
                }
                classify(error, limits)
            }
        };
        Ok(Ended {
            outcome,
            detail,
            stats: self.stats,
        })
    }
}

/// The entry point of one guest run: given the store and where to record the
/// instantiation time, a future that runs the guest to its end.
pub(crate) type Entered<'a> = Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send + 'a>>;

/// Runs `enter` on `store` until it ends or the wall-time limit passes, measuring
/// its wall time, guest CPU time and peak memory. The store is dropped (and the
/// instance with it) before this returns.
pub(crate) async fn drive<W: Send>(
    mut store: Store<Host<W>>,
    limits: &Limits,
    enter: impl for<'s> FnOnce(&'s mut Store<Host<W>>, &'s mut Duration) -> Entered<'s>,
) -> Ran {
    let started = Instant::now();
    let deadline = started + limits.wall_time;
    let mut cpu = Duration::ZERO;
    let mut instantiation = Duration::ZERO;
    let share = store.data().share.clone();
    let call = share.as_ref().map(|share| share.called());
    let mut result = {
        let run = pin!(enter(&mut store, &mut instantiation));
        let charge = share.as_deref().map(|share| share as &dyn ChargeCpu);
        let measured = MeasureCpu::new(run, &mut cpu, charge);
        tokio::time::timeout_at(deadline.into(), measured)
            .await
            .ok()
    };
    // A guest that ended between two checks of its directory is checked once more.
    let ended_cleanly = ended_by_itself(&result);
    // A walk of a scratch directory is a few `stat`s: done here, like the ones
    // at epoch ticks. (Past a bound, the run no longer ended cleanly.)
    if ended_cleanly && let Some(dir) = &store.data().dir {
        match dir.check() {
            // Its writable copies may serve again if nothing changed them
            // (`copies.rs` checks when they are given back).
            Ok(()) => dir.ended_cleanly(),
            Err(exceeded) => result = Some(Err(wasmtime::Error::new(exceeded))),
        }
    }
    drop(call);
    let wall = started.elapsed();
    let peak_memory_bytes = store.data().limiter.peak_memory();
    let kv_ops = store.data().kv_ops;
    drop(store);
    Ran {
        result,
        stats: Stats {
            wall,
            cpu,
            instantiation,
            peak_memory_bytes,
            kv_reads: kv_ops.reads,
            kv_writes: kv_ops.writes,
            bytes_in: 0,
            bytes_out: 0,
        },
    }
}

/// Whether a run (`None`: stopped at its deadline) ended with the guest
/// returning or exiting.
fn ended_by_itself(result: &Option<wasmtime::Result<()>>) -> bool {
    match result {
        Some(Ok(())) => true,
        Some(Err(e)) => e.is::<I32Exit>(),
        None => false,
    }
}

/// Maps the error a run ended with to its outcome, keeping the full text for logs.
fn classify(error: wasmtime::Error, limits: &Limits) -> (Outcome, Option<String>) {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return match exit.0 {
            0 => (Outcome::Success, None),
            code => (Outcome::Exit(code), None),
        };
    }
    let outcome = if error.is::<WallTimeExceeded>() {
        Outcome::WallTimeLimit {
            limit: limits.wall_time,
        }
    } else if error.is::<MemoryLimitExceeded>() {
        Outcome::MemoryLimit {
            limit: limits.memory_bytes,
        }
    } else if let Some(exceeded) = error.downcast_ref::<ScratchLimitExceeded>() {
        Outcome::ScratchLimit(exceeded.clone())
    } else if error.is::<OutputLimitExceeded>() {
        Outcome::OutputLimit {
            limit: limits.stdout_bytes,
        }
    } else if let Some(trap) = error.downcast_ref::<Trap>() {
        let message = trap.to_string();
        Outcome::Trap {
            message: message
                .strip_prefix("wasm trap: ")
                .unwrap_or(&message)
                .to_owned(),
        }
    } else {
        Outcome::Trap {
            message: error.root_cause().to_string(),
        }
    };
    (outcome, Some(format!("{error:?}")))
}
