//! HTTPS on `kiln up` with certificates made at test time (rcgen): the CLI and
//! functions over TLS, HTTP/2 and HTTP/1.1 by ALPN, the certificate reloaded
//! without a restart and without failing a request in flight, bad pairs
//! refused at start and ignored at reload, slow handshakes dropped, and the
//! plain HTTP listener that redirects.

use crate::support::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A test CA, and certificates for 127.0.0.1 it signs.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    pub(crate) fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Kiln test CA");
        let pem = params.self_signed(&key).expect("CA").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// Writes a certificate for 127.0.0.1 and localhost named `name` (its
    /// common name) and its key into `dir`: their paths.
    pub(crate) fn issue(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        self.issue_for(dir, name, &["127.0.0.1", "localhost"])
    }

    /// Writes a certificate for `names` (its common name `name`) and its key
    /// into `dir`: their paths.
    pub(crate) fn issue_for(&self, dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        // Written beside, then renamed: the server never reads half a file.
        for (path, text) in [(&cert_path, cert.pem()), (&key_path, key.serialize_pem())] {
            let partial = path.with_extension("partial");
            std::fs::write(&partial, text).expect("write");
            std::fs::rename(&partial, path).expect("rename");
        }
        (cert_path, key_path)
    }

    pub(crate) fn ca_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).expect("write CA");
        path
    }

    /// A rustls client trusting this CA, offering `alpn`.
    fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("CA PEM"))
            .expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl TestCa {
    /// A TLS connection to `addr` naming `server_name` by SNI, which fails
    /// unless the server's certificate is valid for that name (and this CA's).
    pub(crate) fn connect(
        &self,
        addr: &str,
        server_name: &str,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, std::io::Error>
    {
        let name =
            rustls::pki_types::ServerName::try_from(server_name.to_owned()).expect("server name");
        let mut conn =
            rustls::ClientConnection::new(self.client(&[b"http/1.1"]), name).expect("client");
        let mut sock = std::net::TcpStream::connect(addr)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(rustls::StreamOwned::new(conn, sock))
    }
}

/// What one TLS handshake with `addr` settled: the protocol ALPN chose and
/// the server certificate's common name.
fn handshake(ca: &TestCa, addr: &str, alpn: &[&[u8]]) -> (Option<Vec<u8>>, String) {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut conn = rustls::ClientConnection::new(ca.client(alpn), name).expect("client");
    let mut sock = std::net::TcpStream::connect(addr).expect("connect");
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).expect("handshake");
    }
    let leaf = conn.peer_certificates().expect("certificates")[0].to_vec();
    // The common name, as rcgen wrote it: a UTF8String after the CN OID.
    let oid = [0x55, 0x04, 0x03];
    let at = leaf
        .windows(3)
        .rposition(|w| w == oid)
        .expect("a common name");
    let len = leaf[at + 4] as usize;
    let cn = String::from_utf8_lossy(&leaf[at + 5..at + 5 + len]).into_owned();
    (conn.alpn_protocol().map(<[u8]>::to_vec), cn)
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_owned()
}

#[test]
fn https_serves_the_cli_and_functions_with_h2_by_alpn_and_reloads_its_certificate() {
    let home = Home::new();
    let certs = home.dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&certs, "first");
    let ca_file = ca.ca_file(home.dir.path());
    let server = home.start(&[
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
    ]);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let addr = host_port(&server.url);

    // The CLI over HTTPS, trusting the test CA; without it, refused.
    let ca_env = [("KILN_CA_CERT", ca_file.to_str().expect("path"))];
    let deployed = server.cli(&["deploy", &guest("hello")], &ca_env, b"");
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    let untrusted = server.cli(&["list"], &[], b"");
    assert!(!untrusted.status.success());
    let said = String::from_utf8_lossy(&untrusted.stderr).to_lowercase();
    assert!(
        said.contains("certificate") || said.contains("tls"),
        "{said}"
    );
    let invoked = server.cli(&["invoke", "hello"], &ca_env, b"tls");
    assert_eq!(String::from_utf8_lossy(&invoked.stdout), "Hello, tls!\n");

    // ALPN: HTTP/2 when offered, else HTTP/1.1.
    assert_eq!(
        handshake(&ca, &addr, &[b"h2", b"http/1.1"]),
        (Some(b"h2".to_vec()), "first".into())
    );
    assert_eq!(
        handshake(&ca, &addr, &[b"http/1.1"]).0,
        Some(b"http/1.1".to_vec())
    );

    // A connection opened before the certificate changes keeps working; new
    // handshakes get the new certificate.
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let conn = rustls::ClientConnection::new(ca.client(&[b"http/1.1"]), name).expect("client");
    let sock = std::net::TcpStream::connect(&addr).expect("connect");
    let mut open = rustls::StreamOwned::new(conn, sock);
    while open.conn.is_handshaking() {
        open.conn.complete_io(&mut open.sock).expect("handshake");
    }
    ca.issue(&certs, "second");
    eventually("the new certificate to be served", || {
        (handshake(&ca, &addr, &[b"http/1.1"]).1 == "second").then_some(())
    });
    open.write_all(
        b"POST /fn/default/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\
          Connection: close\r\n\r\nopen",
    )
    .expect("request on the old connection");
    let mut answer = Vec::new();
    let _ = open.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("Hello, open!\n"), "{answer}");

    // A bad pair at reload (the files changed, then SIGHUP) is ignored: the
    // certificate in use stays.
    std::fs::write(&key, "not a key").expect("write");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    assert_eq!(handshake(&ca, &addr, &[b"http/1.1"]).1, "second");
    let answer = server.cli(&["invoke", "hello"], &ca_env, b"again");
    assert_eq!(String::from_utf8_lossy(&answer.stdout), "Hello, again!\n");
}

#[test]
fn bad_certificates_are_refused_at_start_and_plain_http_is_redirected() {
    let home = Home::new();
    let certs = home.dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&certs, "one");
    // Another certificate's key: a clear error, nothing served.
    let other = home.dir.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    let (_, wrong_key) = ca.issue(&other, "two");
    let out = home.start_and_exit(&[
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        wrong_key.to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("does not fit the certificate"), "{said}");
    let out = home.start_and_exit(&[
        "--tls-cert",
        "/nonexistent.pem",
        "--tls-key",
        "/nonexistent.key",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.pem"));

    // A plain HTTP listener that sends every request to HTTPS.
    let redirect = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let redirect_addr = redirect.local_addr().expect("addr");
    drop(redirect);
    let server = home.start(&[
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
        "--http-redirect",
        &redirect_addr.to_string(),
    ]);
    let https_port = host_port(&server.url)
        .rsplit(':')
        .next()
        .expect("port")
        .to_owned();
    let mut sock = std::net::TcpStream::connect(redirect_addr).expect("connect");
    sock.write_all(
        b"GET /fn/default/hello?x=1 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n",
    )
    .expect("write");
    let mut answer = String::new();
    sock.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    let location = format!("location: https://example.test:{https_port}/fn/default/hello?x=1");
    assert!(answer.to_lowercase().contains(&location), "{answer}");

    // A client that opens a connection and never starts the handshake is
    // dropped at the header timeout.
    drop(server);
    let server = home.start(&[
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
        "--header-timeout",
        "1s",
    ]);
    let mut idle = std::net::TcpStream::connect(host_port(&server.url)).expect("connect");
    idle.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut byte = [0u8; 1];
    assert_eq!(idle.read(&mut byte).expect("closed, not timed out"), 0);
}
