//! What the guest sees of *this* request besides its body: who asked, under which
//! script name and path, with which headers; and, for commands, the CGI
//! environment (RFC 3875) built from it on top of the function's own variables.

use super::cgi::{self, CgiRequest};
use axum::http::header;
use axum::http::request::Parts;
use std::net::SocketAddr;

/// The request as the guest is shown it.
pub(crate) struct GuestRequest<'a> {
    pub(crate) peer: SocketAddr,
    /// `/fn/{tenant}/{function}`.
    pub(crate) script_name: String,
    /// The path after the script name, with its leading `/`, or empty.
    pub(crate) path_info: String,
    pub(crate) parts: &'a Parts,
}

impl GuestRequest<'_> {
    /// A command's environment: the function's own variables, then the RFC 3875
    /// request variables (which win). `body_len` is `None` for a body of
    /// unknown length.
    pub(crate) fn command_env(
        &self,
        own: &[(String, String)],
        body_len: Option<u64>,
    ) -> Vec<(String, String)> {
        let parts = self.parts;
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let (server_name, server_port) = match host.rsplit_once(':') {
            Some((name, port)) => (name, port.parse().unwrap_or(80)),
            None => (host, 80),
        };
        let remote_addr = self.peer.ip().to_string();
        let protocol = format!("{:?}", parts.version);
        let request_env = cgi::request_env(&CgiRequest {
            method: parts.method.as_str(),
            script_name: &self.script_name,
            path_info: &self.path_info,
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body_len,
            server_name,
            server_port,
            remote_addr: &remote_addr,
            protocol: &protocol,
        });
        let own = own.iter();
        let mut env: Vec<(String, String)> = own
            .filter(|(k, _)| !request_env.iter().any(|(r, _)| r == k))
            .cloned()
            .collect();
        env.extend(request_env);
        env
    }
}
