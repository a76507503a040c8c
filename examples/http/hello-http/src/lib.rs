//! The smallest wasi:http/proxy component: answers `Hello, world!` to every request.

use std::io::Write;
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("a valid header");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("the body, taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let mut stream = body.write().expect("the body stream, taken once");
        stream
            .write_all(b"Hello, world!\n")
            .expect("the client is reading");
        drop(stream);
        OutgoingBody::finish(body, None).expect("a complete body");
    }
}

wasip2::http::proxy::export!(Hello);
