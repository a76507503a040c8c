//! The accept loop, and the limits that keep slow or hostile clients from holding
//! the server: how many connections are open at once, how long a client may take
//! to send a request head or the next piece of its body, how long it may leave a
//! response unread, and how large a request head may be.
//!
//! Every connection is served by hyper (HTTP/1.1, or HTTP/2 when the client
//! starts with its preface) in its own task; shutdown stops accepting, lets every
//! connection finish the requests it has (idle ones are closed) and returns once
//! they have. With TLS (`tls.rs`) the handshake happens in that task, under the
//! same limits: it holds a connection slot, and must end within the header
//! timeout.

use crate::body::StallTimeout;
use crate::metrics::Metrics;
use crate::state::Counters;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use kiln_api::{Kind, OUTCOME_HEADER};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

/// Headers a request may carry (more is a 431).
const MAX_HEADERS: usize = 100;

/// What one client may hold of the server. Each has a default and a `kiln up` flag.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; past it a new connection gets a 503 and is
    /// closed (default 4096).
    pub max_connections: usize,
    /// Time to send a request head, from the connection's start or the end of the
    /// previous response; an idle keep-alive connection is closed after it too
    /// (default 10 s).
    pub header_timeout: Duration,
    /// Longest pause between two pieces of a request body: past it the request
    /// fails with 408 (default 30 s).
    pub body_timeout: Duration,
    /// Longest a response may wait for the client to read it before the
    /// connection is closed (default 60 s).
    pub send_timeout: Duration,
    /// Largest request head (request line and headers); more is a 431
    /// (default 64 KiB; at least 8 KiB).
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            max_header_bytes: 64 << 10,
        }
    }
}

/// The smallest head limit hyper can work with.
const MIN_HEADER_BYTES: usize = 8 << 10;

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the
/// connections to finish what they have started.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    counters: Arc<Counters>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of
                    // spinning, and keep serving the connections already open.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.observe(Kind::TooManyConnections, Duration::ZERO);
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let started = Arc::new(AtomicBool::new(false));
        let service = ConnectionService {
            app: app.clone(),
            peer,
            body_timeout: limits.body_timeout,
            started: started.clone(),
        };
        let stream = SendDeadline::new(stream, limits.send_timeout);
        let header_timeout = limits.header_timeout;
        let open = OpenConnection::new(counters.clone());
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let _slot = (slot, open);
            let Some(tls) = tls else {
                return serve_connection(
                    stream,
                    &builder,
                    watcher,
                    service,
                    header_timeout,
                    started,
                )
                .await;
            };
            // A handshake that does not end within the header timeout is
            // dropped: slow handshakes hold a slot no longer than slow heads.
            match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    serve_connection(stream, &builder, watcher, service, header_timeout, started)
                        .await
                }
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake too slow; dropped"),
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Serves one connection (plain or TLS) until it ends or shutdown closes it.
async fn serve_connection<IO>(
    io: IO,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    service: ConnectionService,
    header_timeout: Duration,
    started: Arc<AtomicBool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = watcher.watch(
        builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned(),
    );
    tokio::pin!(connection);
    // hyper times out request heads on HTTP/1 connections once it knows the
    // protocol; this covers a client that never sends enough to tell (or never
    // finishes an HTTP/2 preface).
    tokio::select! {
        _ = &mut connection => return,
        () = tokio::time::sleep(header_timeout) => {}
    }
    if started.load(Ordering::Relaxed) {
        let _ = connection.await;
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenConnection(Arc<Counters>);

impl OpenConnection {
    fn new(counters: Arc<Counters>) -> Self {
        counters.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(counters)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tells a client over the connection limit why it is turned away, then closes.
async fn refuse(mut stream: TcpStream, limit: usize) {
    let body = format!("kiln: too many connections (limit {limit}); try again later\n");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         {OUTCOME_HEADER}: {}\r\nretry-after: 1\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        Kind::TooManyConnections,
        body.len()
    );
    let goodbye = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent, so that closing does not reset the
        // connection before it has read the answer.
        let mut sink = [0u8; 4096];
        let mut seen = 0;
        while seen < 64 << 10 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => seen += n,
            }
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), goodbye).await;
}

/// The app, seen from one connection: every request carries the peer's address
/// and a body that fails if the client stalls.
#[derive(Clone)]
struct ConnectionService {
    app: Router,
    peer: SocketAddr,
    body_timeout: Duration,
    started: Arc<AtomicBool>,
}

impl hyper::service::Service<http::Request<Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        self.started.store(true, Ordering::Relaxed);
        let timeout = self.body_timeout;
        let mut request = request.map(|body| Body::new(StallTimeout::new(body, timeout)));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        self.app.clone().call(request)
    }
}

/// A connection whose writes fail once the client has not taken any bytes for
/// `timeout`: a client that stops reading cannot hold a connection (and the
/// response buffered for it) forever.
struct SendDeadline {
    stream: TcpStream,
    timeout: Duration,
    blocked: Option<Pin<Box<Sleep>>>,
}

impl SendDeadline {
    fn new(stream: TcpStream, timeout: Duration) -> Self {
        SendDeadline {
            stream,
            timeout,
            blocked: None,
        }
    }

    /// Passes a write's result on, starting or checking the clock while the
    /// socket is full.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.blocked = None;
            return result;
        }
        let timeout = self.timeout;
        let blocked = self
            .blocked
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(blocked.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading the response",
        )))
    }
}

impl AsyncRead for SendDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
