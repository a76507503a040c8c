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

use crate::cgi::{self, CgiError};
use crate::drain;
use crate::invoke::{
    Call, OUTCOME_HEADER, Target, command_env, invoke_error_response, plain, respond,
};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use kiln_runtime::{
    Finished, Function, GuestFailed, HttpAnswer, HttpRequest, InvokeError, Limits, OutputBody,
    StreamRequest, Streamed,
};
use kiln_store::Deployment;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Serves a request with a wasi:http component. It sees the path relative to the
/// function (`/fn/acme/api/users?x=1` → `/users?x=1`), the client's headers (less
/// `Authorization` when it carried the token of a private function) and the body
/// as it arrives.
pub(crate) async fn http(
    call: Call,
    function: &Function,
    target: &Target<'_>,
    body: Body,
    limits: Limits,
) -> Response {
    let deployment = call.deployment.clone();
    let parts = target.parts;
    let path = match target.path_info.as_str() {
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
            return refuse(call, error);
        }
    };
    let mut request = http::Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    if deployment.config.private {
        request.headers_mut().remove(header::AUTHORIZATION);
    }
    let answer = call
        .state
        .runtime
        .handle_http(
            function,
            HttpRequest {
                request,
                env: deployment.config.env.clone(),
                limits,
                allowed_hosts: deployment.allowed_hosts.clone(),
            },
        )
        .await;
    match answer {
        Err(error) => refuse(call, error),
        Ok(HttpAnswer::Failed(invocation)) => {
            let response = respond(&deployment, &invocation.outcome, Bytes::new());
            call.settle(response.status(), &Ok(invocation));
            response
        }
        Ok(HttpAnswer::Responded { response, finished }) => {
            let (mut head, body) = response.into_parts();
            head.headers
                .insert(OUTCOME_HEADER, HeaderValue::from_static("success"));
            settle_later(call, head.status, finished);
            Response::from_parts(head, Body::new(body))
        }
    }
}

/// Serves a request with a command deployed with `stream`: its stdin is the body
/// as it arrives, its stdout the response as it is written.
pub(crate) async fn command(
    call: Call,
    function: &Function,
    target: &Target<'_>,
    body: Body,
    limits: Limits,
) -> Response {
    let deployment = call.deployment.clone();
    let declared = drain::declared_length(&target.parts.headers);
    let (args, env) = command_env(&deployment, target, declared);
    let started = call
        .state
        .runtime
        .invoke_streaming(
            function,
            StreamRequest {
                body,
                args,
                env,
                limits,
                allowed_hosts: deployment.allowed_hosts.clone(),
            },
        )
        .await;
    let Streamed { mut body, finished } = match started {
        Ok(streamed) => streamed,
        Err(error) => {
            return refuse(call, error);
        }
    };

    // Wait for the head: the first output, or with `cgi` the end of the headers.
    let mut head = BytesMut::new();
    let failed = loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
                if !head_incomplete(&deployment, &head) {
                    break false;
                }
            }
            None => break false,
            Some(Err(_)) => break true,
        }
    };
    let head = head.freeze();
    let parsed = match deployment.config.cgi && !failed {
        true => Some(cgi::parse_response(&head)),
        false => None,
    };
    if failed || matches!(parsed, Some(Err(_))) {
        // Nothing was sent yet: answer the failure. Dropping the body stops a
        // guest that is still writing.
        drop(body);
        let result = finished.wait().await;
        let response = match (&result, parsed) {
            (_, Some(Err(e))) => plain(
                StatusCode::BAD_GATEWAY,
                "cgi",
                format!("function printed invalid CGI output: {e}"),
            ),
            (Ok(invocation), _) => respond(&deployment, &invocation.outcome, Bytes::new()),
            (Err(error), _) => invoke_error_response(error),
        };
        call.settle(response.status(), &result);
        return response;
    }

    let mut response = match parsed {
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
    response
        .headers_mut()
        .insert(OUTCOME_HEADER, HeaderValue::from_static("success"));
    settle_later(call, response.status(), finished);
    response
}

/// Answers an invocation that could not run, and settles (logs) it.
fn refuse(call: Call, error: InvokeError) -> Response {
    let response = invoke_error_response(&error);
    call.settle(response.status(), &Err(error));
    response
}

/// Whether more output is needed before the response head can be sent.
fn head_incomplete(deployment: &Deployment, head: &[u8]) -> bool {
    if !deployment.config.cgi {
        return head.is_empty();
    }
    matches!(cgi::parse_response(head), Err(CgiError::Unterminated))
        && head.len() < cgi::MAX_HEADER_BYTES
}

/// Settles the call once the guest has ended and its body is done.
fn settle_later(call: Call, status: StatusCode, finished: Finished) {
    let tracker = call.state.settling.clone();
    tracker.spawn(async move {
        let result = finished.wait().await;
        call.settle(status, &result);
    });
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
