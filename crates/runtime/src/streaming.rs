//! Invocations whose input and output stream: commands deployed with `--stream`
//! (stdin read from the request body as it arrives, stdout sent as it is written)
//! and wasi:http components (streamed request and response bodies).
//!
//! The guest runs in a task of its own. The caller gets an [`OutputBody`] to send
//! to the client and a [`Finished`] that resolves, once the guest has ended and
//! the body is done, to the usual [`Invocation`]. Every buffer between the client
//! and the guest is bounded, so a slow client slows the guest down (it waits in
//! its writes) instead of making Kiln buffer without bound.

use crate::files::Files;
use crate::function::Function;
use crate::invoke::{Ended, Invocation, InvokeError, Invoker, Outcome, Reach, run_command};
use crate::limits::Limits;
use crate::outbound::AllowedHosts;
use crate::output::{CapturedOutput, Overflow};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body::{Body, Frame, SizeHint};
use kiln_api::ByteCount;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, DuplexStream, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::io::ReaderStream;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{AsyncStdinStream, AsyncStdoutStream};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Bytes buffered between the guest's stdout and the client, and between the
/// request body and the guest's stdin.
const PIPE_BYTES: usize = 64 * 1024;

/// The error type of request bodies handed to Kiln.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The input of a streamed command invocation: like [`crate::Request`], with the request
/// body as a stream instead of bytes.
pub struct StreamRequest<B> {
    /// The request body, read as the guest reads stdin.
    pub body: B,
    /// `argv`: by convention the function name first.
    pub args: Arc<[String]>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// What the invocation may use.
    pub limits: Limits,
    /// Hosts a command component may send HTTP requests to.
    pub allowed_hosts: Arc<AllowedHosts>,
    /// Exit codes besides 0 after which the body ends cleanly (the function's
    /// answer), not with an error.
    pub ok_exit: Arc<[i32]>,
    /// Directories the guest sees.
    pub files: Arc<Files>,
    /// Key-value buckets the guest may open.
    pub kv: crate::kv::KvGrant,
    /// What a component's `wasi:config/store` holds.
    pub config: Arc<[(String, String)]>,
    /// The tenant's share of CPU (none: never delayed, never counted).
    pub cpu: Option<crate::cpu_share::CpuShare>,
}

/// A streamed invocation under way: what the guest writes, and its end.
pub struct Streamed {
    /// What the guest writes to stdout, as it writes it.
    pub body: OutputBody,
    /// The invocation's end.
    pub finished: Finished,
}

/// How a guest run ended, shared between the body (which ends cleanly only after
/// a successful run) and [`Finished`].
type Report = Arc<Result<Ended, InvokeError>>;

/// The guest's side of a streamed invocation: where it reports its end.
pub(crate) struct Reporter(watch::Sender<Option<Report>>);

impl Reporter {
    pub(crate) fn report(self, ended: Result<Ended, InvokeError>) {
        self.0.send_replace(Some(Arc::new(ended)));
    }
}

/// A new report channel: the guest's task reports on the [`Reporter`], the body
/// and [`Finished`] (made by [`split`]) watch the receiver.
pub(crate) fn report_channel() -> (watch::Receiver<Option<Report>>, Reporter) {
    let (tx, rx) = watch::channel(None);
    (rx, Reporter(tx))
}

/// The two ends of a streamed invocation: the body to send, reading `source`, and
/// the [`Finished`] that resolves when the guest reported and the body is done.
pub(crate) fn split(
    report: watch::Receiver<Option<Report>>,
    source: Source,
    limits: &Limits,
    bytes_in: Arc<AtomicU64>,
    log: CapturedOutput,
    denied: Arc<Mutex<Vec<String>>>,
    ok_exit: Arc<[i32]>,
) -> (OutputBody, Finished) {
    let sent = Arc::new(AtomicU64::new(0));
    let over_limit = Arc::new(AtomicBool::new(false));
    let (done, body_done) = oneshot::channel();
    let mut guest_report = report.clone();
    let body = OutputBody {
        source,
        sent: sent.clone(),
        limit: limits.stdout_bytes,
        over_limit: over_limit.clone(),
        ok_exit,
        state: State::Streaming,
        guest_end: Box::pin(async move {
            match guest_report.wait_for(Option::is_some).await {
                Ok(report) => report.as_ref().map(Arc::clone),
                Err(_) => None,
            }
        }),
        done: Some(done),
    };
    let finished = Finished {
        report,
        body_done,
        sent,
        over_limit,
        bytes_in,
        log,
        denied,
        limits: *limits,
    };
    (body, finished)
}

/// Where an [`OutputBody`] reads from.
pub(crate) enum Source {
    /// A command's stdout.
    Stdout(ReaderStream<DuplexStream>),
    /// A wasi:http component's response body.
    Http(HyperOutgoingBody),
    /// Nothing more will come.
    Closed,
}

enum State {
    Streaming,
    /// The source ended: the body ends when the guest does, cleanly if it succeeded.
    Ending,
    Done,
}

/// The bytes a streamed guest writes, as an HTTP body. It ends cleanly only if the
/// guest ended successfully; otherwise its last frame is an error, which makes the
/// server abort the response (the client sees it incomplete, never truncated and
/// well-formed). Past the output limit it fails the same way.
pub struct OutputBody {
    source: Source,
    sent: Arc<AtomicU64>,
    limit: u64,
    over_limit: Arc<AtomicBool>,
    /// Exit codes besides 0 that end the body cleanly.
    ok_exit: Arc<[i32]>,
    state: State,
    guest_end: Pin<Box<dyn Future<Output = Option<Report>> + Send>>,
    /// Dropped when the body ends or is dropped: [`Finished`] waits for it.
    done: Option<oneshot::Sender<()>>,
}

/// Why an [`OutputBody`] stopped short.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GuestFailed(String);

impl OutputBody {
    fn fail(&mut self, message: String) -> Poll<Option<Result<Frame<Bytes>, GuestFailed>>> {
        self.source = Source::Closed;
        self.state = State::Done;
        self.done = None;
        Poll::Ready(Some(Err(GuestFailed(message))))
    }

    /// Counts `n` more bytes sent; `false` once past the limit.
    fn count(&mut self, n: usize) -> bool {
        let total = self.sent.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.limit {
            self.over_limit.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl Body for OutputBody {
    type Data = Bytes;
    type Error = GuestFailed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, GuestFailed>>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Done => return Poll::Ready(None),
                State::Ending => {
                    let report = ready!(this.guest_end.as_mut().poll(cx));
                    this.state = State::Done;
                    this.done = None;
                    return match report.as_deref() {
                        Some(Ok(ended)) if ended.outcome.is_success() => Poll::Ready(None),
                        Some(Ok(Ended {
                            outcome: Outcome::Exit(code),
                            ..
                        })) if this.ok_exit.contains(code) => Poll::Ready(None),
                        Some(Ok(ended)) => this.fail(format!("the function {}", ended.outcome)),
                        Some(Err(e)) => this.fail(e.to_string()),
                        None => this.fail("the function was stopped".into()),
                    };
                }
                State::Streaming => {}
            }
            let frame = match &mut this.source {
                Source::Stdout(stream) => match ready!(stream.poll_next_unpin(cx)) {
                    Some(Ok(bytes)) => Some(Frame::data(bytes)),
                    // A broken pipe ends the body; the guest's outcome says why.
                    Some(Err(_)) | None => None,
                },
                Source::Http(body) => match ready!(Pin::new(body).poll_frame(cx)) {
                    Some(Ok(frame)) => Some(frame),
                    Some(Err(_)) | None => None,
                },
                Source::Closed => None,
            };
            let Some(frame) = frame else {
                this.source = Source::Closed;
                this.state = State::Ending;
                continue;
            };
            if let Some(data) = frame.data_ref()
                && !this.count(data.len())
            {
                let limit = this.limit;
                return this.fail(format!(
                    "the function exceeded its output limit of {}",
                    ByteCount(limit)
                ));
            }
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Http(body) => body.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

impl fmt::Debug for OutputBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputBody")
            .field("sent", &self.sent.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The end of a streamed invocation: resolves once the guest has ended and its
/// body was sent (or dropped, or stalled for a whole wall-time limit after the
/// guest's end), to what the invocation did and cost.
pub struct Finished {
    report: watch::Receiver<Option<Report>>,
    body_done: oneshot::Receiver<()>,
    sent: Arc<AtomicU64>,
    over_limit: Arc<AtomicBool>,
    bytes_in: Arc<AtomicU64>,
    log: CapturedOutput,
    denied: Arc<Mutex<Vec<String>>>,
    limits: Limits,
}

impl Finished {
    /// Waits for the guest to end and for its body to be done.
    pub async fn wait(self) -> Result<Invocation, InvokeError> {
        let Finished {
            mut report,
            body_done,
            sent,
            over_limit,
            bytes_in,
            log,
            denied,
            limits,
        } = self;
        let report = match report.wait_for(Option::is_some).await {
            Ok(report) => report.as_ref().map(Arc::clone),
            Err(_) => None,
        };
        // Resolves (with an error) when the body is dropped, too. A client that
        // stops reading gets one more wall-time limit for the tail of the body;
        // the invocation is settled then with the bytes it did take.
        let _ = tokio::time::timeout(limits.wall_time, body_done).await;
        let Some(report) = report else {
            return Err(InvokeError::Interrupted);
        };
        let ended = match &*report {
            Ok(ended) => ended,
            Err(e) => return Err(e.clone()),
        };
        let mut outcome = ended.outcome.clone();
        if over_limit.load(Ordering::Relaxed) {
            outcome = Outcome::OutputLimit {
                limit: limits.stdout_bytes,
            };
        }
        let mut stats = ended.stats;
        stats.bytes_in = bytes_in.load(Ordering::Relaxed);
        stats.bytes_out = sent.load(Ordering::Relaxed).min(limits.stdout_bytes);
        let (log, truncated) = log.take();
        let denied = std::mem::take(&mut *denied.lock().unwrap_or_else(|p| p.into_inner()));
        let stderr = if denied.is_empty() {
            log
        } else {
            let mut text = log.to_vec();
            for line in denied {
                text.extend_from_slice(line.as_bytes());
                text.push(b'\n');
            }
            Bytes::from(text)
        };
        Ok(Invocation {
            outcome,
            stdout: Bytes::new(),
            stderr,
            stderr_truncated: truncated,
            detail: ended.detail.clone(),
            stats,
        })
    }
}

/// A request body, counted and cut at a limit.
pub(crate) struct LimitedBody {
    inner: Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>,
    read: Arc<AtomicU64>,
    limit: u64,
}

/// Why reading a request body failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the request body is over the limit of {}", ByteCount(*.0))]
    TooLarge(u64),
    #[error("cannot read the request body: {0}")]
    Read(String),
}

impl LimitedBody {
    pub(crate) fn new<B>(body: B, limit: u64) -> (LimitedBody, Arc<AtomicU64>)
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let read = Arc::new(AtomicU64::new(0));
        let inner = http_body_util::BodyExt::map_err(body, Into::into);
        let body = LimitedBody {
            inner: Box::pin(inner),
            read: read.clone(),
            limit,
        };
        (body, read)
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let frame = match ready!(self.inner.as_mut().poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(BodyError::Read(e.to_string())))),
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let total =
                self.read.fetch_add(data.len() as u64, Ordering::Relaxed) + data.len() as u64;
            if total > self.limit {
                return Poll::Ready(Some(Err(BodyError::TooLarge(self.limit))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl From<BodyError> for wasmtime_wasi_http::Error {
    fn from(error: BodyError) -> Self {
        match error {
            BodyError::TooLarge(limit) => {
                wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit))
            }
            BodyError::Read(_) => wasmtime_wasi_http::Error::ConnectionTerminated,
        }
    }
}

/// A guest's stdin fed from a channel (which a task fills from the request body).
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    buffer: Bytes,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.buffer.is_empty() {
                let n = self.buffer.len().min(buf.remaining());
                let chunk = self.buffer.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match ready!(self.rx.poll_recv(cx)) {
                Some(Ok(bytes)) => self.buffer = bytes,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// Moves the request body into the guest's stdin channel, stopping at the limit
/// (the guest's next read fails) or when the guest is gone.
async fn pump(mut body: LimitedBody, tx: mpsc::Sender<io::Result<Bytes>>) {
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let item = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => Ok(data),
                Err(_trailers) => continue,
            },
            Err(e) => Err(io::Error::other(e.to_string())),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

impl Invoker {
    /// Starts a command whose stdin is `request.body` as it arrives and whose
    /// stdout is the returned body, as it is written.
    pub(crate) async fn invoke_streaming<B>(
        &self,
        function: &Function,
        request: StreamRequest<B>,
    ) -> Result<Streamed, InvokeError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let limits = request.limits;
        let reach = Reach {
            allowed_hosts: request.allowed_hosts,
            kv: request.kv,
            config: request.config,
            cpu: request.cpu,
        };
        let ok_exit = request.ok_exit;
        let slot = self.admit(&limits).await?;
        let (body, bytes_in) = LimitedBody::new(request.body, limits.stdin_bytes);
        let (stdin_tx, stdin_rx) = mpsc::channel(4);
        tokio::spawn(pump(body, stdin_tx));
        // A duplex pipe (not a simplex, whose reader sees no end when the writer is
        // dropped): the client's side reads EOF once the guest's store is gone.
        let (stdout_writer, stdout_reader) = tokio::io::duplex(PIPE_BYTES);
        let stderr = CapturedOutput::new(limits.stderr_bytes, Overflow::Truncate);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(AsyncStdinStream::new(ChannelReader {
            rx: stdin_rx,
            buffer: Bytes::new(),
        }))
        .stdout(AsyncStdoutStream::new(PIPE_BYTES, stdout_writer))
        .stderr(stderr.clone())
        .args(&request.args)
        .envs(&request.env);
        let dir = self.scratch.prepare(&request.files, &mut wasi).await?;

        let (report, reporter) = report_channel();
        let invoker = self.detached();
        let function = function.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let ran = run_command(&invoker, &function, wasi, &limits, reach, dir).await;
            let ended = match ran {
                Ok(ran) => ran.end(invoker.max_instances, &limits),
                Err(e) => Err(e),
            };
            reporter.report(ended);
        });
        let source = Source::Stdout(ReaderStream::new(stdout_reader));
        let (body, finished) = split(
            report,
            source,
            &limits,
            bytes_in,
            stderr,
            Arc::default(),
            ok_exit,
        );
        Ok(Streamed { body, finished })
    }

    /// A copy of this invoker for a task that outlives the caller's borrow.
    pub(crate) fn detached(&self) -> Invoker {
        Invoker {
            engine: self.engine.clone(),
            max_memory_bytes: self.max_memory_bytes,
            max_instances: self.max_instances,
            slots: self.slots.clone(),
            instance_wait: self.instance_wait,
            scratch: self.scratch.clone(),
            epoch_tick: self.epoch_tick,
            egress: self.egress.clone(),
            awake: self.awake.clone(),
        }
    }
}
