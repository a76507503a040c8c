//! Outbound HTTP from `wasi:http` components: denied unless the host is on the
//! function's allow-list ([`AllowedHosts`], from `--allow-host`).
//!
//! A denied request fails inside the guest with the WASI error
//! `HTTP-request-denied` and is recorded so that the invocation's log says so.
//! An allowed one is sent by [`crate::egress`], which connects only to
//! public addresses (or networks the operator opened).

use crate::egress::{EgressPolicy, ResolveError};
use std::fmt;
use std::sync::{Arc, Mutex};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// One `--allow-host` entry: `HOST`, `HOST:PORT`, `*.DOMAIN` or `*.DOMAIN:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Lowercase host, without the `*.` of a wildcard.
    host: String,
    /// `*.DOMAIN`: any subdomain of `host` (not `host` itself).
    wildcard: bool,
    /// `None`: any port.
    port: Option<u16>,
}

/// Why an `--allow-host` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid allowed host {input:?}: {reason}")]
pub struct ParseHostError {
    input: String,
    reason: &'static str,
}

impl std::str::FromStr for HostPattern {
    type Err = ParseHostError;

    fn from_str(input: &str) -> Result<HostPattern, ParseHostError> {
        let error = |reason| ParseHostError {
            input: input.to_owned(),
            reason,
        };
        if input.contains("://") || input.contains('/') {
            return Err(error("give a host and optional port, not a URL"));
        }
        let (host, port) = match input.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| error("the port must be a number from 1 to 65535"))?;
                (host, Some(port))
            }
            None => (input, None),
        };
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(domain) => (domain, true),
            None => (host, false),
        };
        let valid = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if host.is_empty() || host.len() > 253 || !host.split('.').all(valid) {
            return Err(error(
                "expected a host name or IPv4 address, optionally `*.` in front",
            ));
        }
        Ok(HostPattern {
            host: host.to_ascii_lowercase(),
            wildcard,
            port,
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl HostPattern {
    fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        if self.wildcard {
            host.strip_suffix(&self.host)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
        } else {
            host == self.host
        }
    }
}

/// The hosts a function may call. Empty (the default): every outbound request is
/// denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(pub Vec<HostPattern>);

impl AllowedHosts {
    /// Whether a request to `host:port` may go out.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.0.iter().any(|pattern| pattern.matches(host, port))
    }
}

/// The `wasi:http` hooks of one instance: sends allowed requests, denies and
/// records the others.
pub(crate) struct OutboundHooks {
    allowed: Arc<AllowedHosts>,
    egress: Arc<EgressPolicy>,
    denied: Arc<Mutex<Vec<String>>>,
}

impl OutboundHooks {
    pub(crate) fn new(allowed: Arc<AllowedHosts>, egress: Arc<EgressPolicy>) -> OutboundHooks {
        OutboundHooks {
            allowed,
            egress,
            denied: Arc::default(),
        }
    }

    /// A handle on the record of denied requests, readable after the guest ended.
    pub(crate) fn denied(&self) -> Arc<Mutex<Vec<String>>> {
        self.denied.clone()
    }
}

/// How long a name may take to resolve when the guest set no connect timeout.
const DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn record(denied: &Mutex<Vec<String>>, line: String) {
    denied.lock().unwrap_or_else(|p| p.into_inner()).push(line);
}

type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Sent {
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.allowed.allows(host, port) {
            record(
                &self.denied,
                format!(
                    "kiln: outbound request to {host}:{port} denied (not in the function's allowed hosts)"
                ),
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let (egress, denied, host) = (self.egress.clone(), self.denied.clone(), host.to_owned());
        Box::new(async move {
            let connect_timeout = options.and_then(|o| o.connect_timeout);
            let lookup = crate::egress::resolve(&egress, &host, port);
            let resolved = tokio::time::timeout(connect_timeout.unwrap_or(DNS_TIMEOUT), lookup)
                .await
                .map_err(|_| Error::DnsTimeout)?;
            let addrs = match resolved {
                Ok(addrs) => addrs,
                Err(ResolveError::NotFound) => return Err(Error::DestinationNotFound),
                Err(ResolveError::NotPublic(ip)) => {
                    record(
                        &denied,
                        format!(
                            "kiln: outbound request to {host}:{port} denied: it resolves to {ip}, \
                             which is not a public address"
                        ),
                    );
                    return Err(Error::DestinationIpProhibited);
                }
            };
            crate::egress::send(request, addrs, options).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str]) -> AllowedHosts {
        AllowedHosts(patterns.iter().map(|p| p.parse().unwrap()).collect())
    }

    #[test]
    fn exact_hosts_with_and_without_ports() {
        let list = allowed(&["api.example.com", "127.0.0.1:8080"]);
        assert!(list.allows("api.example.com", 443));
        assert!(list.allows("API.example.com", 80));
        assert!(list.allows("127.0.0.1", 8080));
        assert!(!list.allows("127.0.0.1", 8081));
        assert!(!list.allows("example.com", 443));
        assert!(!list.allows("evil-api.example.com", 443));
        assert!(!AllowedHosts::default().allows("127.0.0.1", 80));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let list = allowed(&["*.example.com:443"]);
        assert!(list.allows("a.example.com", 443));
        assert!(list.allows("a.b.example.com", 443));
        assert!(!list.allows("example.com", 443));
        assert!(!list.allows("badexample.com", 443));
        assert!(!list.allows("a.example.com", 80));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for bad in [
            "",
            "http://x.com",
            "x.com/path",
            "x.com:0",
            "x.com:http",
            "a..b",
            "*.",
        ] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?} was accepted");
        }
        let error = "x.com:99999".parse::<HostPattern>().unwrap_err();
        assert!(error.to_string().contains("port"), "{error}");
        assert_eq!(
            "*.Example.com:8443"
                .parse::<HostPattern>()
                .unwrap()
                .to_string(),
            "*.example.com:8443"
        );
    }
}
