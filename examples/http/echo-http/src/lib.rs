//! A wasi:http/proxy echo: answers with the request's method and path (and query)
//! in `x-echo-method` / `x-echo-path`, each `x-*` request header as `x-echo-<name>`,
//! and the request body streamed back as the response body, 64 KiB at a time, so
//! that a body of any size passes through in constant memory.

use std::io::{Read, Write};
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

const CHUNK: usize = 64 * 1024;

struct Echo;

impl wasip2::exports::http::incoming_handler::Guest for Echo {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let method = match request.method() {
            Method::Get => "GET".to_string(),
            Method::Head => "HEAD".to_string(),
            Method::Post => "POST".to_string(),
            Method::Put => "PUT".to_string(),
            Method::Delete => "DELETE".to_string(),
            Method::Connect => "CONNECT".to_string(),
            Method::Options => "OPTIONS".to_string(),
            Method::Trace => "TRACE".to_string(),
            Method::Patch => "PATCH".to_string(),
            Method::Other(other) => other,
        };
        let mut echoed = vec![
            ("x-echo-method".to_string(), method.into_bytes()),
            (
                "x-echo-path".to_string(),
                request.path_with_query().unwrap_or_default().into_bytes(),
            ),
        ];
        for (name, value) in request.headers().entries() {
            if name.starts_with("x-") {
                echoed.push((format!("x-echo-{name}"), value));
            }
        }
        let headers = Fields::from_list(&echoed).expect("valid headers");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("the body, taken once");
        ResponseOutparam::set(response_out, Ok(response));

        let incoming = request.consume().expect("the request body, taken once");
        let mut input = incoming.stream().expect("the request stream, taken once");
        let mut output = body.write().expect("the body stream, taken once");
        let mut buffer = vec![0; CHUNK];
        loop {
            let n = Read::read(&mut input, &mut buffer).expect("the request body is readable");
            if n == 0 {
                break;
            }
            output
                .write_all(&buffer[..n])
                .expect("the client is reading");
        }
        output.flush().expect("the client is reading");
        drop(output);
        drop(input);
        OutgoingBody::finish(body, None).expect("a complete body");
    }
}

wasip2::http::proxy::export!(Echo);
