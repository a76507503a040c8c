//! Custom domains: an operator grants a domain to a tenant, the tenant routes
//! path prefixes of it to its functions (longest prefix wins, SCRIPT_NAME
//! empty, PATH_INFO the whole path), and a `Host` that is no custom domain gets
//! the platform's routes only. Over HTTPS, the domain's own certificate is
//! chosen by SNI; bad certificates, other tenants' domains and functions, and
//! the server's own host are refused.

use crate::support::*;
use crate::tls::TestCa;
use std::io::{Read, Write};

/// One HTTP/1.1 request to `addr` with `host` as its Host: (status, body).
fn request(addr: &str, host: &str, method: &str, path: &str) -> (u16, String) {
    let mut sock = std::net::TcpStream::connect(addr).expect("connect");
    exchange(&mut sock, host, method, path)
}

/// Writes one request on `stream` and reads the whole answer (the server
/// closes after it).
fn exchange(stream: &mut impl ReadWrite, host: &str, method: &str, path: &str) -> (u16, String) {
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nKiln-Scheduled-Time: forged\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify after the answer.
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn addr(server: &KilnServer) -> String {
    server
        .url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_owned()
}

/// The CLI with the admin token.
fn admin(server: &KilnServer, home: &Home, args: &[&str]) -> std::process::Output {
    server.cli(args, &[("KILN_TOKEN", &home.admin_token())], b"")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_granted_domain_is_served_by_its_routes_and_other_hosts_by_the_platform() {
    let home = Home::new();
    let server = home.start(&[]);
    let addr = addr(&server);
    server.ok(&["deploy", "--name", "site", &guest("echo-env")]);
    server.ok(&[
        "deploy",
        "--name",
        "api",
        &guest("echo-env"),
        "--arg",
        "api",
    ]);

    // Not granted yet: the tenant cannot route it.
    let out = server.cli(&["domain", "add", "api.example.test", "site"], &[], b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not granted to this tenant"),
        "{}",
        stderr(&out)
    );
    let out = admin(
        &server,
        &home,
        &["admin", "domain", "grant", "API.Example.test.", "default"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    server.ok(&["domain", "add", "api.example.test", "site"]);
    server.ok(&[
        "domain",
        "add",
        "api.example.test",
        "api",
        "--path",
        "/api/*",
    ]);
    let listed = server.ok(&["domain", "list"]);
    assert!(
        listed.contains("api.example.test  tenant default"),
        "{listed}"
    );
    assert!(
        listed.contains("/api") && listed.contains("site"),
        "{listed}"
    );

    // `/` and every path not under /api: the site, with the whole path.
    let (status, body) = request(&addr, "api.example.test", "GET", "/about?x=1");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ARG 0=site\n"), "{body}");
    assert!(body.contains("ENV SCRIPT_NAME=\n"), "{body}");
    assert!(body.contains("ENV PATH_INFO=/about\n"), "{body}");
    assert!(body.contains("ENV QUERY_STRING=x=1\n"), "{body}");
    // A client cannot pose as the scheduler.
    assert!(!body.contains("KILN_SCHEDULED_TIME"), "{body}");
    // The longest prefix wins, on whole segments, whatever the Host's case and port.
    let (_, body) = request(&addr, "API.example.test:80", "POST", "/api/users");
    assert!(
        body.contains("ARG 1=api\n") && body.contains("ENV PATH_INFO=/api/users\n"),
        "{body}"
    );
    let (_, body) = request(&addr, "api.example.test", "GET", "/apix");
    assert!(body.contains("ARG 0=site\n"), "{body}");
    // The platform's routes are not reachable through a custom domain...
    let (_, body) = request(&addr, "api.example.test", "GET", "/v1/whoami");
    assert!(body.contains("ENV PATH_INFO=/v1/whoami\n"), "{body}");
    // ...and a Host that is no custom domain gets only the platform's.
    let (status, body) = request(&addr, "other.example.test", "GET", "/fn/default/site/x");
    assert_eq!(status, 200);
    assert!(
        body.contains("ENV SCRIPT_NAME=/fn/default/site\n"),
        "{body}"
    );
    let (status, _) = request(&addr, "other.example.test", "GET", "/about");
    assert_eq!(status, 404);

    // Without the / route, other paths are a 404 of the domain, not the platform's.
    server.ok(&["domain", "rm", "api.example.test"]);
    let (status, body) = request(&addr, "api.example.test", "GET", "/about");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no route"), "{body}");
    let (status, _) = request(&addr, "api.example.test", "GET", "/api");
    assert_eq!(status, 200);

    // Revoked: the host is no longer custom.
    let out = admin(
        &server,
        &home,
        &["admin", "domain", "revoke", "api.example.test"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, _) = request(&addr, "api.example.test", "GET", "/api");
    assert_eq!(status, 404);
}

#[test]
fn a_tenant_cannot_take_another_tenants_domain_or_function() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", "--name", "mine", &guest("hello")]);
    let token = kiln_ok_with(&server, &home, &["tenants", "create", "other"]);
    let as_other = |args: &[&str]| server.cli(args, &[("KILN_TOKEN", &token)], b"");
    let out = as_other(&["deploy", "--name", "theirs", &guest("hello")]);
    assert!(out.status.success(), "{}", stderr(&out));

    let granted = admin(
        &server,
        &home,
        &["admin", "domain", "grant", "a.example.test", "default"],
    );
    assert!(granted.status.success(), "{}", stderr(&granted));
    // Held by one tenant: not granted to another, and not routable by it.
    let out = admin(
        &server,
        &home,
        &["admin", "domain", "grant", "a.example.test", "other"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("granted to another tenant"),
        "{}",
        stderr(&out)
    );
    let out = as_other(&["domain", "add", "a.example.test", "theirs"]);
    assert!(
        stderr(&out).contains("not granted to this tenant"),
        "{}",
        stderr(&out)
    );
    // A function of another tenant is not a function of this one.
    let out = server.cli(&["domain", "add", "a.example.test", "theirs"], &[], b"");
    assert!(
        stderr(&out).contains("no function named \"theirs\""),
        "{}",
        stderr(&out)
    );
    // The other tenant sees no domain; the admin sees it.
    let listed = String::from_utf8_lossy(&as_other(&["domain", "list"]).stdout).into_owned();
    assert_eq!(listed, "");
    // Only the operator grants.
    let tenant_token = home.token();
    let out = server.cli(
        &["admin", "domain", "grant", "b.example.test", "default"],
        &[("KILN_TOKEN", &tenant_token)],
        b"",
    );
    assert!(
        stderr(&out).contains("needs the admin token"),
        "{}",
        stderr(&out)
    );
    // Addresses and non-names are refused (the platform's own host too: a
    // unit test of the server, as it needs a public URL with a name).
    for (domain, why) in [
        ("127.0.0.1", "invalid domain"),
        ("localhost", "invalid domain"),
        ("a..test", "invalid domain"),
    ] {
        let out = admin(
            &server,
            &home,
            &["admin", "domain", "grant", domain, "default"],
        );
        assert!(stderr(&out).contains(why), "{domain}: {}", stderr(&out));
    }
    // Bad prefixes are named.
    let out = server.cli(
        &[
            "domain",
            "add",
            "a.example.test",
            "mine",
            "--path",
            "/a/../b",
        ],
        &[],
        b"",
    );
    assert!(
        stderr(&out).contains("invalid route prefix"),
        "{}",
        stderr(&out)
    );
}

/// Creates a tenant with the admin token; its first token.
fn kiln_ok_with(server: &KilnServer, home: &Home, args: &[&str]) -> String {
    let out = admin(server, home, args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find(|word| word.starts_with("kiln_"))
        .unwrap_or_else(|| panic!("no token in {text:?}"))
        .to_owned()
}

#[test]
fn sni_picks_the_domains_own_certificate_which_is_checked_before_it_is_stored() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = ca.issue(dir.path(), "kiln server");
    let home = Home::new();
    let server = home.start(&[
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
    ]);
    let ca_file = ca.ca_file(dir.path());
    let cli = |args: &[&str]| {
        server.cli(
            args,
            &[("KILN_CA_CERT", ca_file.to_str().expect("path"))],
            b"",
        )
    };
    let out = cli(&["deploy", "--name", "site", &guest("echo-env")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.cli(
        &["admin", "domain", "grant", "shop.example.test", "default"],
        &[
            ("KILN_TOKEN", &home.admin_token()),
            ("KILN_CA_CERT", ca_file.to_str().expect("path")),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        cli(&["domain", "add", "shop.example.test", "site"])
            .status
            .success()
    );

    // Before the domain has its own: the server's certificate, which is not
    // for shop.example.test, so a client checking the name refuses it.
    let addr = addr(&server);
    assert!(ca.connect(&addr, "shop.example.test").is_err());

    // Certificates that are not the domain's are refused, and change nothing.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("dir");
    let (wrong_cert, wrong_key) = ca.issue_for(&other, "wrong", &["www.example.test"]);
    let shop = dir.path().join("shop");
    std::fs::create_dir(&shop).expect("dir");
    let (shop_cert, shop_key) = ca.issue_for(&shop, "shop", &["shop.example.test"]);
    let path = |p: &std::path::Path| p.to_str().expect("path").to_owned();
    for (cert, key, why) in [
        (&wrong_cert, &wrong_key, "not for shop.example.test"),
        (&shop_cert, &wrong_key, "does not fit"),
        (&shop_cert, &shop_cert, "no private key"),
    ] {
        let out = cli(&[
            "domain",
            "cert",
            "shop.example.test",
            "--cert",
            &path(cert),
            "--key",
            &path(key),
        ]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(why), "{why}: {}", stderr(&out));
    }
    assert!(ca.connect(&addr, "shop.example.test").is_err());

    // The domain's own: chosen by SNI, and the request is the domain's.
    let out = cli(&[
        "domain",
        "cert",
        "shop.example.test",
        "--cert",
        &path(&shop_cert),
        "--key",
        &path(&shop_key),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = String::from_utf8_lossy(&cli(&["domain", "list"]).stdout).into_owned();
    assert!(
        listed.contains("certificate until") && listed.contains("(upload)"),
        "{listed}"
    );
    let mut tls = ca
        .connect(&addr, "shop.example.test")
        .expect("the domain's certificate");
    let (status, body) = exchange(&mut tls, "shop.example.test", "GET", "/cart");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ENV PATH_INFO=/cart\n"), "{body}");
    // Other names still get the server's certificate.
    assert!(ca.connect(&addr, "localhost").is_ok());
    // It survives a restart (the key sealed in the store).
    drop(tls);
    let status = server.stop();
    assert!(status.success());
    let server = home.start(&["--tls-cert", &path(&cert), "--tls-key", &path(&key)]);
    assert!(ca.connect(&addr_of(&server), "shop.example.test").is_ok());
    // Removed: back to the server's.
    let out = server.cli(
        &["domain", "cert", "shop.example.test", "--remove"],
        &[("KILN_CA_CERT", ca_file.to_str().expect("path"))],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ca.connect(&addr_of(&server), "shop.example.test").is_err());
}

fn addr_of(server: &KilnServer) -> String {
    addr(server)
}
