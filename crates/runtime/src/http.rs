//! wasi:http components: an HTTP request in, a streamed HTTP response out.
//!
//! The request (method, path, query, headers, streamed body) becomes a
//! `wasi:http/types.incoming-request`; the component's `incoming-handler.handle`
//! runs in a task of its own and answers through the response outparam. The
//! response head is returned as soon as the component sets it; its body streams
//! while the component writes it ([`crate::streaming`]).

use crate::Finished;
use crate::files::Files;
use crate::function::{ComponentCtx, Entry, Function, run_http};
use crate::invoke::{Invocation, InvokeError, Invoker, Outcome, drive};
use crate::limits::Limits;
use crate::outbound::{AllowedHosts, OutboundHooks};
use crate::output::{CapturedOutput, Overflow};
use crate::streaming::{BoxError, LimitedBody, OutputBody, Source, report_channel, split};
use bytes::Bytes;
use http_body::Body;
use std::sync::Arc;
use tokio::sync::oneshot;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

/// The input of a wasi:http invocation.
pub struct HttpRequest<B> {
    /// The request as the component sees it: its URI carries the path relative to
    /// the function and the authority the client addressed.
    pub request: http::Request<B>,
    /// Environment variables (the function's configuration).
    pub env: Vec<(String, String)>,
    /// What the invocation may use.
    pub limits: Limits,
    /// Hosts the component may send requests to.
    pub allowed_hosts: Arc<AllowedHosts>,
    /// Directories the component sees.
    pub files: Arc<Files>,
    /// Key-value buckets the component may open.
    pub kv: crate::kv::KvGrant,
    /// What `wasi:config/store` holds.
    pub config: Arc<[(String, String)]>,
    /// The tenant's share of CPU (none: never delayed, never counted).
    pub cpu: Option<crate::cpu_share::CpuShare>,
}

/// How a wasi:http invocation answered.
pub enum HttpAnswer {
    /// The component set a response: its head, its streamed body, and the end of
    /// the invocation (resolving once the component ended and the body is done).
    Responded {
        /// The status and headers the component set, and its body as it writes it.
        response: http::Response<OutputBody>,
        /// The invocation's end.
        finished: Finished,
    },
    /// The component ended without a response (it failed, or returned without
    /// setting one, or answered with a `wasi:http` error code).
    Failed(Invocation),
}

impl Invoker {
    pub(crate) async fn handle_http<B>(
        &self,
        function: &Function,
        request: HttpRequest<B>,
    ) -> Result<HttpAnswer, InvokeError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let Entry::Http(pre) = &function.entry else {
            return Err(InvokeError::NotHttp);
        };
        let limits = request.limits;
        let slot = self.admit(&limits).await?;
        // The component's stdout and stderr both go to its log.
        let log = CapturedOutput::new(limits.stderr_bytes, Overflow::Truncate);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(log.clone())
            .stderr(log.clone())
            .envs(&request.env);
        let dir = self.scratch.prepare(&request.files, &mut wasi).await?;
        let outbound = OutboundHooks::new(request.allowed_hosts, self.egress.clone());
        let denied = outbound.denied();
        let mut store = self.store(
            function.engine(),
            ComponentCtx::new(wasi.build(), outbound).with_config(&request.config),
            &limits,
            dir,
            request.kv,
            request.cpu,
        );

        let (parts, body) = request.request.into_parts();
        let (body, bytes_in) = LimitedBody::new(body, limits.stdin_bytes);
        let bad = |e: wasmtime::Error| InvokeError::BadRequest(format!("{e:#}"));
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, http::Request::from_parts(parts, body))
            .map_err(bad)?;
        let (response_tx, response_rx) = oneshot::channel();
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(response_tx)
            .map_err(bad)?;

        let (report, reporter) = report_channel();
        let pre = pre.clone();
        let max_instances = self.max_instances;
        tokio::spawn(async move {
            let _slot = slot;
            let ran = drive(store, &limits, move |store, instantiation| {
                Box::pin(
                    async move { run_http(&pre, store, incoming, outparam, instantiation).await },
                )
            })
            .await;
            reporter.report(ran.end(max_instances, &limits));
        });

        let answer = response_rx.await;
        let no_response = match answer {
            Ok(Ok(response)) => {
                let (parts, body) = response.into_parts();
                let (body, finished) = split(
                    report,
                    Source::Http(body),
                    &limits,
                    bytes_in,
                    log,
                    denied,
                    Arc::default(),
                );
                return Ok(HttpAnswer::Responded {
                    response: http::Response::from_parts(parts, body),
                    finished,
                });
            }
            Ok(Err(code)) => format!("it answered with the wasi:http error {code:?}"),
            Err(_) => "it returned without setting a response".to_owned(),
        };
        let (body, finished) = split(
            report,
            Source::Closed,
            &limits,
            bytes_in,
            log,
            denied,
            Arc::default(),
        );
        drop(body);
        let mut invocation = finished.wait().await?;
        if invocation.outcome.is_success() {
            invocation.outcome = Outcome::NoResponse {
                reason: no_response,
            };
        }
        Ok(HttpAnswer::Failed(invocation))
    }
}
