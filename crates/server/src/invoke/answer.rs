//! Every answer of the invoke path that is not the function's own: a status, an
//! outcome [`Kind`], and one plain-text line naming the cause. This file holds
//! the table from runtime outcomes and errors to answers (documented in
//! `docs/api.md`); every `/fn` response, the function's own included, carries
//! its kind in `Kiln-Outcome`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_api::{ByteCount, EXIT_CODE_HEADER, FunctionConfig, Kind, OUTCOME_HEADER};
use kiln_runtime::{InvokeError, Outcome};

/// An answer the pipeline gives instead of the function's output: a refusal
/// before it ran, or a failure of the run. A value, so that tests can look at it
/// and the pipeline can count it before it becomes a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) kind: Kind,
    pub(crate) message: String,
    /// Send `Retry-After: 1` (a refusal that goes away by itself).
    pub(crate) retry_after: bool,
}

impl Answer {
    pub(crate) fn new(status: StatusCode, kind: Kind, message: impl Into<String>) -> Answer {
        Answer {
            status,
            kind,
            message: message.into(),
            retry_after: false,
        }
    }

    fn retry_after(mut self) -> Answer {
        self.retry_after = true;
        self
    }

    /// 413: the request body is over the function's limit.
    pub(crate) fn too_large(limit: u64) -> Answer {
        Answer::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Kind::TooLarge,
            format!("request body is over the limit of {}", ByteCount(limit)),
        )
    }

    /// 429: a quota, spending cap or rate limit of the tenant.
    pub(crate) fn quota(message: String, retry: bool) -> Answer {
        let answer = Answer::new(StatusCode::TOO_MANY_REQUESTS, Kind::Quota, message);
        if retry { answer.retry_after() } else { answer }
    }

    /// How a run that did not succeed is answered; `None` for a success, which
    /// for a function deployed with `ok_exit` includes exiting with those codes.
    pub(crate) fn of_outcome(outcome: &Outcome, config: &FunctionConfig) -> Option<Answer> {
        let failed = |status, kind, message: String| {
            Some(Answer::new(status, kind, format!("function {message}")))
        };
        match outcome {
            Outcome::Success => None,
            Outcome::Exit(code) if config.exit_is_answer(*code) => None,
            Outcome::Exit(code) => failed(
                StatusCode::BAD_GATEWAY,
                Kind::Exit,
                format!("exited with code {code}"),
            ),
            Outcome::Trap { message } => failed(
                StatusCode::INTERNAL_SERVER_ERROR,
                Kind::Trap,
                format!("trapped: {message}"),
            ),
            Outcome::WallTimeLimit { limit } => failed(
                StatusCode::GATEWAY_TIMEOUT,
                Kind::Timeout,
                format!("exceeded its time limit of {limit:?}"),
            ),
            Outcome::MemoryLimit { limit } => failed(
                StatusCode::INSUFFICIENT_STORAGE,
                Kind::Memory,
                format!("exceeded its memory limit of {}", ByteCount(*limit)),
            ),
            Outcome::OutputLimit { limit } => failed(
                // 509 is not registered, so it has no constant.
                StatusCode::from_u16(509).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Kind::Output,
                format!("exceeded its output limit of {}", ByteCount(*limit)),
            ),
            Outcome::NoResponse { reason } => failed(
                StatusCode::BAD_GATEWAY,
                Kind::NoResponse,
                format!("sent no response: {reason}"),
            ),
            Outcome::ScratchLimit(exceeded) => failed(
                StatusCode::INSUFFICIENT_STORAGE,
                Kind::Scratch,
                format!("stopped: {exceeded}"),
            ),
            other => failed(
                StatusCode::INTERNAL_SERVER_ERROR,
                Kind::Trap,
                format!("failed: {other}"),
            ),
        }
    }

    /// How an invocation that could not run is answered.
    pub(crate) fn of_invoke_error(error: &InvokeError) -> Answer {
        let message = error.to_string();
        match error {
            InvokeError::StdinTooLarge { .. } => {
                Answer::new(StatusCode::PAYLOAD_TOO_LARGE, Kind::TooLarge, message)
            }
            InvokeError::AtCapacity(_) | InvokeError::ScratchBusy { .. } => {
                Answer::new(StatusCode::SERVICE_UNAVAILABLE, Kind::Capacity, message).retry_after()
            }
            InvokeError::BadRequest(_) => {
                Answer::new(StatusCode::BAD_REQUEST, Kind::BadRequest, message)
            }
            _ => Answer::new(StatusCode::INTERNAL_SERVER_ERROR, Kind::Internal, message),
        }
    }

    /// The response, with its kind beside it for the pipeline to count.
    pub(crate) fn answered(self) -> (Response, Kind) {
        let kind = self.kind;
        (self.into_response(), kind)
    }

    /// 502: a CGI function's headers could not be read.
    pub(crate) fn bad_cgi(error: impl std::fmt::Display) -> Answer {
        Answer::new(
            StatusCode::BAD_GATEWAY,
            Kind::Cgi,
            format!("function printed invalid CGI output: {error}"),
        )
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (self.status, format!("{}\n", self.message)).into_response();
        let headers = response.headers_mut();
        headers.insert(OUTCOME_HEADER, HeaderValue::from_static(self.kind.as_str()));
        if self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A function's own successful output, whole: text or bytes, status 200.
pub(crate) fn plain_output(stdout: bytes::Bytes) -> Response {
    let content_type = match std::str::from_utf8(&stdout) {
        Ok(_) => "text/plain; charset=utf-8",
        Err(_) => "application/octet-stream",
    };
    let mut response = Response::new(Body::from(stdout));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Whether a run answered (succeeded, or exited with one of its `ok_exit` codes).
pub(crate) fn answered(outcome: &Outcome, config: &FunctionConfig) -> bool {
    Answer::of_outcome(outcome, config).is_none()
}

/// Adds `Kiln-Exit-Code` to the response of a command that exited with a code
/// other than 0, whether that was its answer or its failure.
pub(crate) fn mark_exit(mut response: Response, outcome: &Outcome) -> Response {
    if let Outcome::Exit(code) = outcome {
        response
            .headers_mut()
            .insert(EXIT_CODE_HEADER, HeaderValue::from(*code));
    }
    response
}

/// Marks a response with how it came about.
pub(crate) fn mark(mut response: Response, kind: Kind) -> Response {
    response
        .headers_mut()
        .insert(OUTCOME_HEADER, HeaderValue::from_static(kind.as_str()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_outcome_has_its_status_and_kind() {
        let cases = [
            (Outcome::Exit(3), 502, Kind::Exit),
            (
                Outcome::Trap {
                    message: "x".into(),
                },
                500,
                Kind::Trap,
            ),
            (
                Outcome::WallTimeLimit {
                    limit: Duration::from_secs(1),
                },
                504,
                Kind::Timeout,
            ),
            (Outcome::MemoryLimit { limit: 1 << 20 }, 507, Kind::Memory),
            (Outcome::OutputLimit { limit: 1 << 20 }, 509, Kind::Output),
            (
                Outcome::NoResponse {
                    reason: "gone".into(),
                },
                502,
                Kind::NoResponse,
            ),
        ];
        for (outcome, status, kind) in cases {
            let answer =
                Answer::of_outcome(&outcome, &FunctionConfig::default()).expect("a failure");
            assert_eq!((answer.status.as_u16(), answer.kind), (status, kind));
            assert!(
                answer.message.starts_with("function "),
                "{}",
                answer.message
            );
        }
        let none = FunctionConfig::default();
        assert_eq!(Answer::of_outcome(&Outcome::Success, &none), None);
        let solver = FunctionConfig {
            ok_exit: vec![10, 20],
            ..FunctionConfig::default()
        };
        assert_eq!(Answer::of_outcome(&Outcome::Exit(10), &solver), None);
        assert!(answered(&Outcome::Exit(20), &solver));
        assert!(!answered(&Outcome::Exit(10), &none));
        assert_eq!(
            Answer::of_outcome(&Outcome::Exit(11), &solver).map(|a| a.kind),
            Some(Kind::Exit)
        );
    }

    #[test]
    fn an_answer_becomes_a_plain_line_with_its_kind() {
        let response = Answer::quota("over".into(), true).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[OUTCOME_HEADER], "quota");
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
