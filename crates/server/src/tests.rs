//! In-process tests of the router: both wings driven with `oneshot`, no socket.
//! A real store (SQLite in a temporary directory) and a real runtime; what they
//! check is how the pipeline and the control API answer, and what they count.

use crate::{InitialCredentials, Server, ServerConfig};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use kiln_api::{ErrorBody, ErrorCode, Kind, OUTCOME_HEADER};
use std::net::SocketAddr;
use tower::ServiceExt;

/// A core module that prints `hi`.
const HI: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hi")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#;

struct Harness {
    _dir: tempfile::TempDir,
    server: Server,
    credentials: InitialCredentials,
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), dir.path());
        config.engine.max_instances = 8;
        let (server, credentials) = Server::open(config).await.expect("open");
        Harness {
            _dir: dir,
            server,
            credentials: credentials.expect("a new store has credentials"),
        }
    }

    fn router(&self) -> Router {
        crate::router(self.server.state.clone())
    }

    /// Sends `request` through the router, as the accept loop would.
    async fn send(
        &self,
        mut request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = self.router().oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    fn as_tenant(&self, method: &str, uri: &str, body: Body) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.credentials.tenant_token),
            )
            .body(body)
            .expect("request")
    }

    async fn deploy(&self, name: &str, query: &str) {
        let wasm = wat::parse_str(HI).expect("wat");
        let uri = format!("/v1/functions/{name}/versions{query}");
        let (status, _, body) = self.send(self.as_tenant("POST", &uri, wasm.into())).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    fn counted(&self, kind: Kind) -> u64 {
        let metrics = &self.server.state.metrics;
        metrics
            .requests()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| n)
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn the_invoke_pipeline_answers_in_one_format_and_counts_each_kind() {
    let h = Harness::new().await;
    let tenant = h.credentials.tenant.clone();

    let (status, headers, body) = h.send(get(&format!("/fn/{tenant}/nothing"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[OUTCOME_HEADER], "not-found");
    assert_eq!(body, format!("no function {tenant}/nothing\n"));
    assert_eq!(h.counted(Kind::NotFound), 1);

    h.deploy("hi", "").await;
    let (status, headers, body) = h.send(get(&format!("/fn/{tenant}/hi"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hi"));
    assert_eq!(headers[OUTCOME_HEADER], "success");
    assert_eq!(h.counted(Kind::Success), 1);

    // A private function: plain-text answers with a kind, never the JSON of /v1.
    h.deploy("secret", "?private").await;
    let url = format!("/fn/{tenant}/secret");
    let (status, headers, _) = h.send(get(&url)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[OUTCOME_HEADER], "unauthorized");
    let bad_token = Request::builder()
        .uri(&url)
        .header(header::AUTHORIZATION, "Bearer kiln_nope")
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = h.send(bad_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[OUTCOME_HEADER], "unauthorized");
    assert_eq!(body, "invalid or revoked token\n");
    assert_eq!(h.counted(Kind::Unauthorized), 2);
    let (status, _, body) = h.send(h.as_tenant("GET", &url, Body::empty())).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hi"));

    // A body over the limit, declared: refused before anything runs.
    h.deploy("small", "?max_input=4").await;
    let big = Request::builder()
        .method("POST")
        .uri(format!("/fn/{tenant}/small"))
        .header(header::CONTENT_LENGTH, "5")
        .body(Body::from("12345"))
        .expect("request");
    let (status, headers, body) = h.send(big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers[OUTCOME_HEADER], "too-large");
    assert_eq!(body, "request body is over the limit of 4 bytes\n");
    assert_eq!(h.counted(Kind::TooLarge), 1);
}

#[tokio::test]
async fn control_api_errors_carry_a_stable_code_beside_the_message() {
    let h = Harness::new().await;
    let error = |body: &str| serde_json::from_str::<ErrorBody>(body).expect("an ErrorBody");

    let (status, _, body) = h.send(get("/v1/functions")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error(&body).code, ErrorCode::Unauthorized);

    let (status, _, body) = h
        .send(h.as_tenant("POST", "/v1/functions/Bad_Name/versions", Body::from("x")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body = error(&body);
    assert_eq!(body.code, ErrorCode::InvalidName);
    assert!(
        body.error.starts_with("invalid function name \"Bad_Name\""),
        "{}",
        body.error
    );

    let (status, _, body) = h
        .send(h.as_tenant(
            "POST",
            "/v1/functions/f/versions?color=blue",
            Body::from("x"),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&body).code, ErrorCode::BadRequest);

    let (status, _, body) = h
        .send(h.as_tenant("POST", "/v1/functions/f/versions", Body::from("not wasm")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body = error(&body);
    assert_eq!(body.code, ErrorCode::InvalidModule);
    assert!(
        body.error.contains("not a WebAssembly binary"),
        "{}",
        body.error
    );

    let (status, _, body) = h
        .send(h.as_tenant("GET", "/v1/functions/none", Body::empty()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error(&body).code, ErrorCode::NotFound);

    let (status, _, body) = h
        .send(h.as_tenant("GET", "/v1/tenants", Body::empty()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error(&body).code, ErrorCode::Forbidden);
}
