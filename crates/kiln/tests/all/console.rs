//! The console's server side, over real HTTP: its page (no inline script, a
//! Content-Security-Policy that forbids it), sign-in into an HttpOnly,
//! SameSite=Strict session cookie that authenticates `/v1` as its token would,
//! cross-site state changes refused, sign-out, revoked tokens and expiry
//! ending sessions, and a tenant's session kept off the admin routes.

use crate::support::*;

/// The `Set-Cookie` of a sign-in with `token`, from `origin`.
fn sign_in(server: &KilnServer, token: &str, origin: &str) -> (u16, Option<String>, String) {
    let response = http()
        .post(format!("{}/console/session", server.url))
        .header("Origin", origin)
        .header("Content-Type", "application/json")
        .send(serde_json::json!({ "token": token }).to_string());
    let answer = answer(response);
    let cookie = answer.header("set-cookie").map(str::to_owned);
    (answer.status, cookie, answer.body)
}

/// The `name=value` part of a `Set-Cookie`.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

fn with_cookie(method: &str, url: &str, cookie: &str, origin: Option<&str>, body: &str) -> Answer {
    let agent = http();
    let request = match method {
        "GET" => agent.get(url).header("Cookie", cookie).call(),
        _ => {
            let mut request = match method {
                "POST" => agent.post(url),
                _ => agent.delete(url).force_send_body(),
            }
            .header("Cookie", cookie)
            .header("Content-Type", "application/json");
            if let Some(origin) = origin {
                request = request.header("Origin", origin);
            }
            request.send(body)
        }
    };
    answer(request)
}

#[test]
fn the_console_signs_in_to_an_http_only_session_that_cannot_be_used_cross_site() {
    let home = Home::new();
    let server = home.start(&[]);
    let origin = server.url.clone();

    // The page: its script is a file of its own, and the policy allows no other.
    let page = get(&format!("{}/console", server.url));
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    );
    let csp = page
        .header("content-security-policy")
        .expect("a CSP")
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        page.body.contains("<script src=\"/console/app.js\""),
        "{}",
        page.body
    );
    assert_eq!(page.body.matches("<script").count(), 1, "no inline script");
    let root = get(&format!("{}/", server.url));
    assert_eq!(root.status, 303);
    assert_eq!(root.header("location"), Some("/console"));

    // A wrong token gets no session.
    let (status, cookie, _) = sign_in(&server, "kiln_nope", &origin);
    assert_eq!((status, cookie), (401, None));
    // A sign-in from another site is refused too (login CSRF).
    let (status, cookie, _) = sign_in(&server, &home.token(), "http://evil.example");
    assert_eq!((status, cookie), (403, None));

    let (status, cookie, body) = sign_in(&server, &home.token(), &origin);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"tenant\":\"default\""), "{body}");
    let cookie = cookie.expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session = pair(&cookie);
    assert!(
        !session.contains(&home.token()),
        "the token itself is not the cookie"
    );

    // The cookie speaks for the tenant, and only the tenant.
    server.ok(&["deploy", "--name", "hello", &guest("hello")]);
    let listed = with_cookie(
        "GET",
        &format!("{}/v1/functions", server.url),
        &session,
        None,
        "",
    );
    assert_eq!(listed.status, 200);
    assert!(
        listed.body.contains("\"name\":\"hello\""),
        "{}",
        listed.body
    );
    let tenants = with_cookie(
        "GET",
        &format!("{}/v1/tenants", server.url),
        &session,
        None,
        "",
    );
    assert_eq!(tenants.status, 403, "{}", tenants.body);

    // A state change on the cookie alone needs the console's own origin.
    let tokens_url = format!("{}/v1/tokens", server.url);
    let count = || {
        let listed = with_cookie("GET", &tokens_url, &session, None, "");
        serde_json::from_str::<Vec<serde_json::Value>>(&listed.body)
            .expect("tokens")
            .len()
    };
    let before = count();
    let body = r#"{"name":"from-the-console"}"#;
    for foreign in [Some("http://evil.example"), None] {
        let refused = with_cookie("POST", &tokens_url, &session, foreign, body);
        assert_eq!(refused.status, 403, "{foreign:?}: {}", refused.body);
        assert!(
            refused.body.contains("cross-site request refused"),
            "{}",
            refused.body
        );
    }
    assert_eq!(count(), before, "nothing changed");
    let created = with_cookie("POST", &tokens_url, &session, Some(&origin), body);
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(count(), before + 1);

    // Signed out: the cookie is worth nothing, here or anywhere.
    let out = with_cookie(
        "DELETE",
        &format!("{}/console/session", server.url),
        &session,
        Some(&origin),
        "",
    );
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    let after = with_cookie(
        "GET",
        &format!("{}/v1/functions", server.url),
        &session,
        None,
        "",
    );
    assert_eq!(after.status, 401);
    assert!(after.body.contains("sign in again"), "{}", after.body);
}

#[test]
fn a_revoked_token_ends_its_sessions_and_sessions_expire() {
    let home = Home::new();
    let server = home.start(&["--session-ttl", "2s"]);
    let origin = server.url.clone();
    let created = server.ok(&["tokens", "create", "browser"]);
    let token = created.trim().to_owned();
    let (status, cookie, _) = sign_in(&server, &token, &origin);
    assert_eq!(status, 200);
    let session = pair(&cookie.expect("cookie"));
    let whoami = format!("{}/v1/whoami", server.url);
    assert_eq!(with_cookie("GET", &whoami, &session, None, "").status, 200);

    // Revoking the token ends the session at once.
    let listed = server.ok(&["tokens", "list"]);
    let id = listed
        .lines()
        .find(|l| l.contains("browser"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the token's id")
        .to_owned();
    server.ok(&["tokens", "revoke", &id]);
    assert_eq!(with_cookie("GET", &whoami, &session, None, "").status, 401);

    // And every session ends when its time is up.
    let (_, cookie, _) = sign_in(&server, &home.token(), &origin);
    let session = pair(&cookie.expect("cookie"));
    assert_eq!(with_cookie("GET", &whoami, &session, None, "").status, 200);
    eventually("the session to expire", || {
        (with_cookie("GET", &whoami, &session, None, "").status == 401).then_some(())
    });
}
