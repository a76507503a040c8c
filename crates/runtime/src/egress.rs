//! Where an allowed outbound request may connect. The allow-list
//! ([`crate::outbound`]) matches names; a name can resolve anywhere, and a
//! name an attacker controls can resolve to a public address when checked and
//! to `127.0.0.1` a moment later (DNS rebinding). So the host resolves the
//! name once, checks every address it got against the non-public ranges
//! (loopback, private, link-local — the cloud metadata address among them —,
//! shared, multicast, reserved; IPv6 alike, and IPv4 inside IPv6), and
//! connects to an address it checked: nothing resolves the name again. The
//! operator may open given networks (`kiln up --outbound-allow-net CIDR`).
//!
//! Redirects are answered to the guest as they are: the host never follows
//! one (a redirect is a new request, which the guest makes, and which is
//! checked again).

use bytes::Bytes;
use http::uri::Scheme;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions};

/// How long each step waits when the guest set no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The networks outbound requests may reach besides the public internet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Non-public networks the operator opened.
    pub allowed_nets: Vec<IpNet>,
}

impl EgressPolicy {
    /// Whether a connection to `ip` may be made.
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed_nets.iter().any(|net| net.contains(&ip))
    }
}

/// Whether `ip` is an address of the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let segments = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., a, b, c, d] = v6.octets();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (segments[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
                || (segments[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
                || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
                || segments[..6] == [0; 6]) // IPv4-compatible (deprecated)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: the cloud metadata address
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared (carrier-grade NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

/// The addresses `host:port` resolves to that `policy` permits; an error
/// naming what was found when none is.
pub(crate) async fn resolve(
    policy: &EgressPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, ResolveError> {
    // An IPv6 literal comes bracketed in a URI.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let found: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|_| ResolveError::NotFound)?
            .collect(),
    };
    let (permitted, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
        found.iter().partition(|addr| policy.permits(addr.ip()));
    // Only checked addresses are connected to; a name with none is refused,
    // naming the address it resolved to.
    match (permitted.is_empty(), refused.first()) {
        (false, _) => Ok(permitted),
        (true, Some(addr)) => Err(ResolveError::NotPublic(addr.ip())),
        (true, None) => Err(ResolveError::NotFound),
    }
}

/// Why no address could be used.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// The name has no address.
    NotFound,
    /// The name resolves to an address outside the public internet.
    NotPublic(IpAddr),
}

/// Sends `request` to one of `addrs` (already checked) and answers the
/// response, and the future that drives the connection to its end.
pub(crate) async fn send(
    mut request: http::Request<wasmtime_wasi_http::WasiBody>,
    addrs: Vec<SocketAddr>,
    options: Option<RequestOptions>,
) -> Result<
    (
        http::Response<wasmtime_wasi_http::WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
> {
    use http_body_util::BodyExt;
    let timeout = |pick: fn(&RequestOptions) -> Option<Duration>| {
        options.as_ref().and_then(pick).unwrap_or(DEFAULT_TIMEOUT)
    };
    let connect_timeout = timeout(|o| o.connect_timeout);
    let first_byte_timeout = timeout(|o| o.first_byte_timeout);
    let between_bytes_timeout = timeout(|o| o.between_bytes_timeout).max(Duration::from_nanos(1));
    let uri = request.uri().clone();
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_owned();

    let tcp = tokio::time::timeout(connect_timeout, connect(&addrs))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let io: Box<dyn Stream> = match uri.scheme() == Some(&Scheme::HTTPS) {
        true => {
            let name = server_name(&host)?;
            let tls = tokio::time::timeout(connect_timeout, tls_connector().connect(name, tcp))
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(Error::Tls)?;
            Box::new(tls)
        }
        false => Box::new(tcp),
    };
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // Origin form on the wire; the Host header keeps the name the guest used.
    if !request.headers().contains_key(http::header::HOST)
        && let Some(authority) = uri.authority()
        && let Ok(value) = http::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(http::header::HOST, value);
    }
    *request.uri_mut() = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    let mut connection = Box::pin(connection);
    let mut response = Box::pin(tokio::time::timeout(
        first_byte_timeout,
        sender.send_request(request),
    ));
    // Drive the connection while waiting for the response head.
    let mut driving = true;
    let response = std::future::poll_fn(|cx| {
        if let Poll::Ready(answer) = response.as_mut().poll(cx) {
            return Poll::Ready(answer);
        }
        if driving && let Poll::Ready(ended) = connection.as_mut().poll(cx) {
            driving = false;
            if let Err(e) = ended {
                return Poll::Ready(Ok(Err(e)));
            }
        }
        Poll::Pending
    })
    .await
    .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|body| {
        Paced {
            body,
            idle: Box::pin(tokio::time::sleep(between_bytes_timeout)),
            between_bytes_timeout,
        }
        .boxed_unsync()
    });
    let rest: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
        match driving {
            true => connection.await.map_err(Error::from),
            false => Ok(()),
        }
    });
    Ok((response, rest))
}

/// A socket, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// The first of `addrs` that accepts a connection.
async fn connect(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to connect to")))
}

/// The name a server's certificate must carry: the host the guest named.
fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => Ok(rustls::pki_types::ServerName::from(ip)),
        Err(_) => rustls::pki_types::ServerName::try_from(bare.to_owned())
            .map_err(|_| Error::HttpRequestUriInvalid),
    }
}

/// TLS with the web's root certificates (webpki-roots), made once.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        // The provider named, not looked up: more than one may be compiled in.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3 (a fact of the build, not of any input)")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    });
    tokio_rustls::TlsConnector::from(config.clone())
}

/// A response body that fails when the server pauses longer than the
/// guest's between-bytes timeout.
struct Paced {
    body: hyper::body::Incoming,
    idle: Pin<Box<tokio::time::Sleep>>,
    between_bytes_timeout: Duration,
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.between_bytes_timeout;
                this.idle.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(Error::from)))
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip(private)), "{private} counted as public");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(public)), "{public} counted as not public");
        }
    }

    #[test]
    fn the_operator_opens_networks_one_by_one() {
        let policy = EgressPolicy {
            allowed_nets: vec!["10.1.0.0/16".parse().unwrap(), "::1/128".parse().unwrap()],
        };
        assert!(policy.permits(ip("10.1.200.3")));
        assert!(policy.permits(ip("::1")));
        assert!(policy.permits(ip("8.8.8.8")));
        assert!(!policy.permits(ip("10.2.0.1")));
        assert!(!policy.permits(ip("127.0.0.1")));
        assert!(!EgressPolicy::default().permits(ip("169.254.169.254")));
    }

    #[tokio::test]
    async fn a_name_is_refused_when_none_of_its_addresses_may_be_reached() {
        let closed = EgressPolicy::default();
        match resolve(&closed, "localhost", 80).await {
            Err(ResolveError::NotPublic(ip)) => assert!(ip.is_loopback(), "{ip}"),
            other => panic!("localhost was not refused: {other:?}"),
        }
        match resolve(&closed, "[::1]", 80).await {
            Err(ResolveError::NotPublic(ip)) => {
                assert_eq!(ip, IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
            }
            other => panic!("[::1] was not refused: {other:?}"),
        }
        let open = EgressPolicy {
            allowed_nets: vec!["127.0.0.0/8".parse().unwrap()],
        };
        let addrs = resolve(&open, "127.0.0.1", 8080).await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:8080".parse().unwrap()]);
    }
}
