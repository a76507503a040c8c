//! Streamed invocations: wasi:http components, and commands deployed with
//! `stream`. The response head goes out as soon as it is known (set by the
//! component; or at the command's first output, after its CGI headers with
//! `cgi`) and the body as the guest writes it, through bounded buffers. The call
//! is settled (metered, counted, logged) once the guest has ended and the body is
//! done, in a task the server waits for before its final usage flush.
//!
//! A guest that fails after its head was sent cannot change the status any more:
//! its body is cut with an error (the client sees an incomplete response, never a
//! clean end), and the log has the outcome.

use super::answer::{Answer, mark, mark_exit, plain_output};
use super::call::{Executed, Pipeline, Settle};
use super::cgi::{self, CgiError};
use super::request::GuestRequest;
use crate::body::declared_length;
use crate::state::CachedDeployment;
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use kiln_api::Kind;
use kiln_runtime::{
    Function, GuestFailed, HttpAnswer, HttpRequest, InvokeError, OutputBody, StreamRequest,
    Streamed,
};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Serves a request with a wasi:http component. It sees the path relative to the
/// function (`/fn/acme/api/users?x=1` → `/users?x=1`), the client's headers (less
/// `Authorization` when it carried the token of a private function) and the body
/// as it arrives.
pub(crate) async fn http(
    pipeline: &Pipeline,
    function: &Function,
    guest: &GuestRequest<'_>,
    body: Body,
) -> Executed {
    let deployment = &pipeline.deployment;
    let parts = guest.parts;
    let path = match guest.path_info.as_str() {
        "" => "/",
        path => path,
    };
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let authority = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    let uri = match http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
    {
        Ok(uri) => uri,
        Err(e) => {
            let error = InvokeError::BadRequest(format!("bad request target: {e}"));
            return refused(error);
        }
    };
    let mut request = http::Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    if deployment.row.config.private {
        request.headers_mut().remove(header::AUTHORIZATION);
    }
    let answer = pipeline
        .state
        .runtime
        .handle_http(
            function,
            HttpRequest {
                request,
                env: pipeline.config.to_vec(),
                limits: deployment.limits,
                allowed_hosts: deployment.allowed_hosts.clone(),
                files: deployment.files.clone(),
                kv: deployment.kv.clone(),
                config: pipeline.config.clone(),
                cpu: Some(deployment.cpu.clone()),
            },
        )
        .await;
    match answer {
        Err(error) => refused(error),
        Ok(HttpAnswer::Failed(invocation)) => {
            let (response, kind) =
                match Answer::of_outcome(&invocation.outcome, &deployment.row.config) {
                    Some(failed) => failed.answered(),
                    // A guest that succeeded without a response is reported as
                    // `NoResponse` by the runtime: this is never reached.
                    None => Answer::new(
                        axum::http::StatusCode::BAD_GATEWAY,
                        Kind::NoResponse,
                        "function sent no response",
                    )
                    .answered(),
                };
            Executed {
                response,
                kind,
                settle: Settle::Now(Ok(invocation)),
            }
        }
        Ok(HttpAnswer::Responded { response, finished }) => {
            let (head, body) = response.into_parts();
            Executed {
                response: mark(Response::from_parts(head, Body::new(body)), Kind::Success),
                kind: Kind::Success,
                settle: Settle::Later(finished),
            }
        }
    }
}

/// Serves a request with a command deployed with `stream`: its stdin is the body
/// as it arrives, its stdout the response as it is written.
pub(crate) async fn command(
    pipeline: &Pipeline,
    function: &Function,
    guest: &GuestRequest<'_>,
    body: Body,
) -> Executed {
    let deployment = &pipeline.deployment;
    let declared = declared_length(&guest.parts.headers);
    let env = guest.command_env(&pipeline.config, declared);
    let started = pipeline
        .state
        .runtime
        .invoke_streaming(
            function,
            StreamRequest {
                body,
                args: deployment.args.clone(),
                env,
                limits: deployment.limits,
                allowed_hosts: deployment.allowed_hosts.clone(),
                ok_exit: deployment.ok_exit.clone(),
                files: deployment.files.clone(),
                kv: deployment.kv.clone(),
                config: pipeline.config.clone(),
                cpu: Some(deployment.cpu.clone()),
            },
        )
        .await;
    let Streamed { mut body, finished } = match started {
        Ok(streamed) => streamed,
        Err(error) => return refused(error),
    };

    // Wait for the head: the first output, or with `cgi` the end of the headers.
    let mut head = BytesMut::new();
    let failed = loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
                if !head_incomplete(deployment, &head) {
                    break false;
                }
            }
            None => break false,
            Some(Err(_)) => break true,
        }
    };
    let head = head.freeze();
    let parsed = match deployment.row.config.cgi && !failed {
        true => Some(cgi::parse_response(&head)),
        false => None,
    };
    if failed || matches!(parsed, Some(Err(_))) {
        // Nothing was sent yet: answer the failure. Dropping the body stops a
        // guest that is still writing.
        drop(body);
        let result = finished.wait().await;
        let (response, kind) = match (&result, parsed) {
            (_, Some(Err(e))) => Answer::bad_cgi(e).answered(),
            (Ok(invocation), _) => {
                let (response, kind) =
                    match Answer::of_outcome(&invocation.outcome, &deployment.row.config) {
                        Some(failed) => failed.answered(),
                        // Its output ended in an error, yet it answered: nothing to send.
                        None => (
                            mark(plain_output(Bytes::new()), Kind::Success),
                            Kind::Success,
                        ),
                    };
                (mark_exit(response, &invocation.outcome), kind)
            }
            (Err(error), _) => Answer::of_invoke_error(error).answered(),
        };
        return Executed {
            response,
            kind,
            settle: Settle::Now(result),
        };
    }

    let response = match parsed {
        Some(Ok(cgi)) => {
            let mut response =
                Response::new(Body::new(Prepend::new(head.slice(cgi.body_offset..), body)));
            *response.status_mut() = cgi.status;
            for (name, value) in cgi.headers {
                response.headers_mut().append(name, value);
            }
            response
        }
        _ => {
            let content_type = match std::str::from_utf8(&head) {
                Ok(_) => "text/plain; charset=utf-8",
                // Cut in the middle of a character is still text.
                Err(e) if e.error_len().is_none() => "text/plain; charset=utf-8",
                Err(_) => "application/octet-stream",
            };
            let mut response = Response::new(Body::new(Prepend::new(head, body)));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
    };
    Executed {
        response: mark(response, Kind::Success),
        kind: Kind::Success,
        settle: Settle::Later(finished),
    }
}

/// The answer to an invocation that could not run; settling logs it.
fn refused(error: InvokeError) -> Executed {
    let (response, kind) = Answer::of_invoke_error(&error).answered();
    Executed {
        response,
        kind,
        settle: Settle::Now(Err(error)),
    }
}

/// Whether more output is needed before the response head can be sent.
fn head_incomplete(deployment: &CachedDeployment, head: &[u8]) -> bool {
    if !deployment.row.config.cgi {
        return head.is_empty();
    }
    matches!(cgi::parse_response(head), Err(CgiError::Unterminated))
        && head.len() < cgi::MAX_HEADER_BYTES
}

/// A body that sends `first` (the output read while waiting for the head), then
/// the rest of the guest's output.
struct Prepend {
    first: Option<Bytes>,
    rest: OutputBody,
}

impl Prepend {
    fn new(first: Bytes, rest: OutputBody) -> Prepend {
        Prepend {
            first: Some(first).filter(|b| !b.is_empty()),
            rest,
        }
    }
}

impl http_body::Body for Prepend {
    type Data = Bytes;
    type Error = GuestFailed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, GuestFailed>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
