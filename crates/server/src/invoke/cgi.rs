//! The CGI side of the invoke contract (RFC 3875): the request variables a
//! function's environment gets, and the parsing of CGI response headers that a
//! `cgi` function prints before its body.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// What the invoke path knows about a request, for [`request_env`].
pub(super) struct CgiRequest<'a> {
    pub method: &'a str,
    /// `/fn/{tenant}/{function}`.
    pub script_name: &'a str,
    /// The rest of the path after the script name, with its leading `/`, or empty.
    pub path_info: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// `None`: a body of unknown length (streamed), and no `CONTENT_LENGTH`.
    pub body_len: Option<u64>,
    pub server_name: &'a str,
    pub server_port: u16,
    pub remote_addr: &'a str,
    pub protocol: &'a str,
}

/// Headers that never reach a guest: credentials meant for Kiln, and those that
/// have their own CGI names.
fn withheld(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "content-type" | "content-length"
    )
}

/// The CGI meta-variables of a request, RFC 3875 names, `HTTP_*` for headers
/// (repeated headers joined with `, `; `Authorization` withheld).
pub(super) fn request_env(req: &CgiRequest<'_>) -> Vec<(String, String)> {
    let mut env = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        (
            "SERVER_SOFTWARE".into(),
            format!("kiln/{}", env!("CARGO_PKG_VERSION")),
        ),
        ("SERVER_PROTOCOL".into(), req.protocol.into()),
        ("SERVER_NAME".into(), req.server_name.into()),
        ("SERVER_PORT".into(), req.server_port.to_string()),
        ("REQUEST_METHOD".into(), req.method.into()),
        ("SCRIPT_NAME".into(), req.script_name.into()),
        ("PATH_INFO".into(), req.path_info.into()),
        ("QUERY_STRING".into(), req.query.into()),
        ("REMOTE_ADDR".into(), req.remote_addr.into()),
        (
            "REQUEST_URI".into(),
            match req.query {
                "" => format!("{}{}", req.script_name, req.path_info),
                q => format!("{}{}?{q}", req.script_name, req.path_info),
            },
        ),
    ];
    if let Some(len) = req.body_len {
        env.push(("CONTENT_LENGTH".into(), len.to_string()));
    }
    if let Some(ct) = req.headers.get("content-type") {
        env.push((
            "CONTENT_TYPE".into(),
            String::from_utf8_lossy(ct.as_bytes()).into(),
        ));
    }
    for name in req.headers.keys() {
        if withheld(name) {
            continue;
        }
        let values: Vec<_> = req
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let var = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        env.push((var, values.join(", ")));
    }
    env
}

/// A CGI response: status, headers, and where the body starts in stdout.
#[derive(Debug)]
pub(super) struct CgiResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body_offset: usize,
}

/// Most bytes of header section accepted before the blank line.
pub(super) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Why CGI output could not be parsed: the function's fault, reported as 502.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum CgiError {
    #[error("no blank line ends the CGI headers (within {MAX_HEADER_BYTES} bytes)")]
    Unterminated,
    #[error("malformed CGI header line {0:?}")]
    BadLine(String),
    #[error("invalid CGI Status {0:?}")]
    BadStatus(String),
}

/// Headers a function's output may not set: the framing of the response and of
/// the connection, which the server does itself (a guest's `Content-Length` could
/// contradict the body it wrote), and Kiln's own `Kiln-*` headers, which clients
/// must be able to trust. They are dropped.
fn reserved(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
    ) || name.as_str().starts_with("kiln-")
}

/// Parses the header section of a CGI function's stdout. `Status:` sets the status
/// (200 to 999; default 200, or 302 when only `Location:` is given); every other
/// header is passed on, repeated ones kept separate, except the [`reserved`] ones.
pub(super) fn parse_response(stdout: &[u8]) -> Result<CgiResponse, CgiError> {
    let window = &stdout[..stdout.len().min(MAX_HEADER_BYTES)];
    let (head_len, body_offset) = find_blank_line(window).ok_or(CgiError::Unterminated)?;
    let head = &stdout[..head_len];
    let mut status = None;
    let mut headers = Vec::new();
    for raw in head.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(line);
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| CgiError::BadLine(text.clone().into_owned()))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("");
            let parsed = code
                .parse::<u16>()
                .ok()
                // A final response is 2xx to 5xx: 1xx is never final, and the
                // `http` crate's 600-999 mean nothing to a client.
                .filter(|c| (200..600).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| CgiError::BadStatus(value.to_owned()))?;
            status = Some(parsed);
            continue;
        }
        let bad = || CgiError::BadLine(text.clone().into_owned());
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value).map_err(|_| bad())?;
        if !reserved(&name) {
            headers.push((name, value));
        }
    }
    let has_location = headers.iter().any(|(n, _)| n == "location");
    let status = status.unwrap_or(if has_location {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    Ok(CgiResponse {
        status,
        headers,
        body_offset,
    })
}

/// The end of the header section: (length of the headers, offset of the body).
fn find_blank_line(bytes: &[u8]) -> Option<(usize, usize)> {
    if bytes.starts_with(b"\r\n") {
        return Some((0, 2));
    }
    if bytes.starts_with(b"\n") {
        return Some((0, 1));
    }
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            if bytes[i + 1..].starts_with(b"\r\n") {
                return Some((i + 1, i + 3));
            }
            if bytes[i + 1..].starts_with(b"\n") {
                return Some((i + 1, i + 2));
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_body_are_split() {
        let out = b"Status: 201 Created\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n<p>hi</p>";
        let r = parse_response(out).unwrap();
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(&out[r.body_offset..], b"<p>hi</p>");
        let cookies: Vec<_> = r
            .headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .collect();
        assert_eq!(cookies.len(), 2);
    }

    #[test]
    fn framing_and_kiln_headers_are_dropped() {
        let out = b"Content-Length: 99\nTransfer-Encoding: chunked\nConnection: close\nKiln-Outcome: forged\nKiln-Cpu-Us: 1\nX-Kept: yes\n\nbody";
        let r = parse_response(out).unwrap();
        let names: Vec<_> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
        assert_eq!(&out[r.body_offset..], b"body");
        assert_eq!(
            parse_response(b"Status: 101 Switching Protocols\n\n").unwrap_err(),
            CgiError::BadStatus("101 Switching Protocols".into())
        );
    }

    #[test]
    fn location_alone_redirects() {
        let r = parse_response(b"Location: /elsewhere\n\n").unwrap();
        assert_eq!(r.status, StatusCode::FOUND);
    }

    #[test]
    fn bad_output_is_named() {
        assert_eq!(
            parse_response(b"no blank line").unwrap_err(),
            CgiError::Unterminated
        );
        assert_eq!(
            parse_response(b"Just text\n\nbody").unwrap_err(),
            CgiError::BadLine("Just text".into())
        );
        assert_eq!(
            parse_response(b"Status: teapot\n\n").unwrap_err(),
            CgiError::BadStatus("teapot".into())
        );
        assert_eq!(
            parse_response(b"Status: 999\n\n").unwrap_err(),
            CgiError::BadStatus("999".into())
        );
        assert_eq!(
            parse_response(b"Status: 600 Odd\n\n").unwrap_err(),
            CgiError::BadStatus("600 Odd".into())
        );
    }

    #[test]
    fn env_names_follow_rfc_3875_and_withhold_credentials() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "text/plain".parse().unwrap());
        headers.insert("authorization", "Bearer secret".parse().unwrap());
        headers.insert("x-trace-id", "abc".parse().unwrap());
        headers.append("accept", "a".parse().unwrap());
        headers.append("accept", "b".parse().unwrap());
        let env = request_env(&CgiRequest {
            method: "POST",
            script_name: "/fn/acme/f",
            path_info: "/a/b",
            query: "x=1",
            headers: &headers,
            body_len: Some(5),
            server_name: "127.0.0.1",
            server_port: 8080,
            remote_addr: "127.0.0.1",
            protocol: "HTTP/1.1",
        });
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("REQUEST_METHOD"), Some("POST"));
        assert_eq!(get("PATH_INFO"), Some("/a/b"));
        assert_eq!(get("QUERY_STRING"), Some("x=1"));
        assert_eq!(get("CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get("CONTENT_LENGTH"), Some("5"));
        assert_eq!(get("HTTP_X_TRACE_ID"), Some("abc"));
        assert_eq!(get("HTTP_ACCEPT"), Some("a, b"));
        assert_eq!(get("REQUEST_URI"), Some("/fn/acme/f/a/b?x=1"));
        assert!(env.iter().all(|(_, v)| !v.contains("secret")));
        assert!(get("HTTP_AUTHORIZATION").is_none());
    }
}
