//! The buffered executor: a command that reads the whole body as stdin and
//! answers with its whole stdout (raw, or after its CGI headers with `cgi`).

use super::answer::{Answer, mark, mark_exit, plain_output};
use super::call::{Executed, Pipeline, Settle};
use super::cgi;
use super::request::GuestRequest;
use crate::body::{drain, stalled};
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use kiln_api::Kind;
use kiln_runtime::{Function, Request};

/// Reads the body (refusing past the limit), runs the command, answers.
pub(crate) async fn run(
    pipeline: &Pipeline,
    function: &Function,
    guest: &GuestRequest<'_>,
    body: Option<Body>,
) -> Result<Executed, Answer> {
    let deployment = &pipeline.deployment;
    let stdin = read_body(body, deployment.limits.stdin_bytes).await?;
    let env = guest.command_env(&pipeline.config, Some(stdin.len() as u64));
    let result = pipeline
        .state
        .runtime
        .invoke(
            function,
            Request {
                stdin,
                args: deployment.args.clone(),
                env,
                limits: deployment.limits,
                allowed_hosts: deployment.allowed_hosts.clone(),
                files: deployment.files.clone(),
                kv: deployment.kv.clone(),
                config: pipeline.config.clone(),
                cpu: Some(deployment.cpu.clone()),
            },
        )
        .await;
    let config = &deployment.row.config;
    let (response, kind) = match &result {
        Ok(invocation) => {
            let (response, kind) = match Answer::of_outcome(&invocation.outcome, config) {
                Some(failed) => failed.answered(),
                None if config.cgi => cgi_output(invocation.stdout.clone()),
                None => (plain_output(invocation.stdout.clone()), Kind::Success),
            };
            (mark_exit(response, &invocation.outcome), kind)
        }
        Err(error) => Answer::of_invoke_error(error).answered(),
    };
    Ok(Executed {
        response: mark(response, kind),
        kind,
        settle: Settle::Now(result),
    })
}

/// A CGI function's output: its headers and status, then its body.
fn cgi_output(stdout: Bytes) -> (Response, Kind) {
    let parsed = match cgi::parse_response(&stdout) {
        Ok(parsed) => parsed,
        Err(e) => return Answer::bad_cgi(e).answered(),
    };
    let mut response = Response::new(Body::from(stdout.slice(parsed.body_offset..)));
    *response.status_mut() = parsed.status;
    let headers = response.headers_mut();
    for (name, value) in parsed.headers {
        headers.append(name, value);
    }
    (response, Kind::Success)
}

/// The whole request body, refusing (413) as soon as the bytes read cross
/// `limit` (a declared length over it was refused before).
async fn read_body(body: Option<Body>, limit: u64) -> Result<Bytes, Answer> {
    let Some(body) = body else {
        return Ok(Bytes::new());
    };
    let max = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut stream = body.into_data_stream();
    let mut collected = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match stalled(&e) {
            Some(stall) => Answer::new(
                StatusCode::REQUEST_TIMEOUT,
                Kind::RequestTimeout,
                stall.to_string(),
            ),
            None => Answer::new(
                StatusCode::BAD_REQUEST,
                Kind::BadRequest,
                format!("cannot read the request body: {e}"),
            ),
        })?;
        if collected.len() + chunk.len() > max {
            drain(Body::from_stream(stream)).await;
            return Err(Answer::too_large(limit));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}
