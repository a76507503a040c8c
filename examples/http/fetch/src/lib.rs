//! A wasi:http/proxy component that makes an outbound request: it GETs the URL
//! given in the request's `x-fetch-url` header through `wasi:http/outgoing-handler`
//! and answers `200` with the upstream's status line and body, or `502` with the
//! WASI error code when the request failed (for instance when Kiln denied it).

use std::io::{Read, Write};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

struct Fetch;

impl wasip2::exports::http::incoming_handler::Guest for Fetch {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let url = request
            .headers()
            .get("x-fetch-url")
            .into_iter()
            .next()
            .and_then(|v| String::from_utf8(v).ok());
        let (status, text) = match url {
            None => (400, b"send the URL to fetch in `x-fetch-url`\n".to_vec()),
            Some(url) => match fetch(&url) {
                Ok((status, body)) => {
                    let mut text = format!("upstream status {status}\n").into_bytes();
                    text.extend(body);
                    (200, text)
                }
                Err(code) => (502, format!("outbound request failed: {code:?}\n").into_bytes()),
            },
        };
        let response = OutgoingResponse::new(Fields::new());
        response.set_status_code(status).expect("a valid status");
        let body = response.body().expect("the body, taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let mut output = body.write().expect("the body stream, taken once");
        output.write_all(&text).expect("the client is reading");
        drop(output);
        OutgoingBody::finish(body, None).expect("a complete body");
    }
}

/// GETs `url` (`http://host[:port]/path` or `https://...`); the status and body.
fn fetch(url: &str) -> Result<(u16, Vec<u8>), ErrorCode> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some(("http", rest)) => (Scheme::Http, rest),
        _ => return Err(ErrorCode::HttpRequestUriInvalid),
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_scheme(Some(&scheme))
        .and_then(|()| request.set_authority(Some(authority)))
        .and_then(|()| request.set_path_with_query(Some(path)))
        .map_err(|()| ErrorCode::HttpRequestUriInvalid)?;
    let future = outgoing_handler::handle(request, None)?;
    let response = loop {
        match future.get() {
            Some(result) => break result.expect("the response is taken once")?,
            None => future.subscribe().block(),
        }
    };
    let status = response.status();
    let body = response.consume().expect("the response body, taken once");
    let mut stream = body.stream().expect("the response stream, taken once");
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .map_err(|e| ErrorCode::InternalError(Some(e.to_string())))?;
    Ok((status, bytes))
}

wasip2::http::proxy::export!(Fetch);
