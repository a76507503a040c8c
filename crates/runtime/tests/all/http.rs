//! wasi:http components through the runtime API: detection, a streamed response,
//! the limits, and the errors for using a function as the wrong kind.

use crate::runtime;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kiln_runtime::{
    FunctionKind, HttpAnswer, HttpRequest, InvokeError, Limits, ModuleKind, Outcome, Request,
};

fn http_component(name: &str) -> Vec<u8> {
    std::fs::read(kiln_guests::http_component(name)).expect("wasi:http guest")
}

fn request(
    method: &str,
    uri: &str,
    body: &'static str,
    limits: Limits,
) -> HttpRequest<Full<Bytes>> {
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("x-trace", "t-1")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request");
    HttpRequest {
        request,
        env: vec![],
        limits,
        allowed_hosts: Default::default(),
        files: Default::default(),
        kv: None,
        config: Default::default(),
        cpu: None,
    }
}

#[tokio::test]
async fn a_wasi_http_component_answers_with_a_streamed_response_and_is_measured() {
    let rt = runtime();
    let compiled = rt
        .runtime
        .compile(&http_component("echo-http"))
        .expect("compile");
    assert_eq!(compiled.info.kind, ModuleKind::HttpComponent);
    assert_eq!(compiled.function.kind(), FunctionKind::Http);

    let answer = rt
        .runtime
        .handle_http(
            &compiled.function,
            request(
                "PATCH",
                "http://kiln.test/a/b?c=d",
                "payload",
                Limits::default(),
            ),
        )
        .await
        .expect("the component runs");
    let HttpAnswer::Responded { response, finished } = answer else {
        panic!("the echo answers");
    };
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-echo-method"], "PATCH");
    assert_eq!(response.headers()["x-echo-path"], "/a/b?c=d");
    assert_eq!(response.headers()["x-echo-x-trace"], "t-1");
    let body = response.into_body().collect().await.expect("a clean end");
    assert_eq!(&body.to_bytes()[..], b"payload");

    let invocation = finished.wait().await.expect("finished");
    assert_eq!(invocation.outcome, Outcome::Success);
    assert_eq!(invocation.stats.bytes_in, 7);
    assert_eq!(invocation.stats.bytes_out, 7);
    assert!(invocation.stats.cpu > std::time::Duration::ZERO);
    assert!(invocation.stats.peak_memory_bytes > 0);
}

#[tokio::test]
async fn a_response_over_the_output_limit_is_cut_with_an_error() {
    let rt = runtime();
    let (function, _) = rt.runtime.load_wasm(&http_component("echo-http")).unwrap();
    let limits = Limits {
        stdout_bytes: 4,
        ..Limits::default()
    };
    let answer = rt
        .runtime
        .handle_http(
            &function,
            request("POST", "http://kiln.test/", "too long", limits),
        )
        .await
        .unwrap();
    let HttpAnswer::Responded { response, finished } = answer else {
        panic!("the echo answers");
    };
    let error = response
        .into_body()
        .collect()
        .await
        .expect_err("the body must not end cleanly");
    assert_eq!(
        error.to_string(),
        "the function exceeded its output limit of 4 bytes"
    );
    let invocation = finished.wait().await.unwrap();
    assert_eq!(invocation.outcome, Outcome::OutputLimit { limit: 4 });
}

#[tokio::test]
async fn a_body_over_the_input_limit_fails_inside_the_guest() {
    let rt = runtime();
    let (function, _) = rt.runtime.load_wasm(&http_component("echo-http")).unwrap();
    let limits = Limits {
        stdin_bytes: 3,
        ..Limits::default()
    };
    let answer = rt
        .runtime
        .handle_http(
            &function,
            request("POST", "http://kiln.test/", "too long", limits),
        )
        .await
        .unwrap();
    // The echo sets its response before reading, then panics on the failed read.
    let HttpAnswer::Responded { response, finished } = answer else {
        panic!("the echo answers before it reads");
    };
    assert!(response.into_body().collect().await.is_err());
    let invocation = finished.wait().await.unwrap();
    assert!(
        matches!(invocation.outcome, Outcome::Trap { .. }),
        "{:?}",
        invocation.outcome
    );
    assert!(
        String::from_utf8_lossy(&invocation.stderr).contains("panicked"),
        "the guest's panic message is in its log"
    );
}

#[tokio::test]
async fn using_a_function_as_the_wrong_kind_is_a_clear_error() {
    let rt = runtime();
    let (http_function, _) = rt.runtime.load_wasm(&http_component("hello-http")).unwrap();
    let error = rt
        .runtime
        .invoke(&http_function, Request::default())
        .await
        .unwrap_err();
    assert_eq!(error, InvokeError::NotACommand);

    let (command, _) = rt
        .runtime
        .load_wasm(&std::fs::read(kiln_guests::path("hello")).unwrap())
        .unwrap();
    let error = rt
        .runtime
        .handle_http(
            &command,
            request("GET", "http://kiln.test/", "", Limits::default()),
        )
        .await
        .err()
        .expect("a command is no wasi:http component");
    assert_eq!(error, InvokeError::NotHttp);
}
