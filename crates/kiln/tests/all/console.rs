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
    assert_eq!(
        page.body.matches("<script").count(),
        page.body.matches("<script src=\"/console/").count(),
        "no inline script, and only the console's own files"
    );
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

fn sign_up(server: &KilnServer, name: &str, origin: &str) -> Answer {
    answer(
        http()
            .post(format!("{}/console/signup", server.url))
            .header("Origin", origin)
            .header("Content-Type", "application/json")
            .send(serde_json::json!({ "name": name }).to_string()),
    )
}

#[test]
fn open_sign_up_creates_a_tenant_with_a_session_until_the_address_has_had_its_share() {
    // Closed by default: the page is told so, and a sign-up changes nothing.
    let home = Home::new();
    let server = home.start(&[]);
    let settings = get(&format!("{}/console/config", server.url));
    assert_eq!(settings.body, r#"{"signup":false}"#);
    let refused = sign_up(&server, "visitor", &server.url);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("ask its operator"),
        "{}",
        refused.body
    );
    let tenants = server.ok(&["tenants", "list"]);
    assert!(!tenants.contains("visitor"), "{tenants}");
    drop(server);

    let home = Home::new();
    let server = home.start(&["--signup", "open", "--signups-per-hour", "2"]);
    let settings = get(&format!("{}/console/config", server.url));
    assert_eq!(settings.body, r#"{"signup":true}"#);
    // From another site: refused, nothing created.
    let cross = sign_up(&server, "visitor", "http://evil.example");
    assert_eq!(cross.status, 403, "{}", cross.body);
    // A bad name: a 400 naming the rule, and it does not count.
    let bad = sign_up(&server, "Not A Name", &server.url);
    assert_eq!(bad.status, 400, "{}", bad.body);

    let created = sign_up(&server, "visitor", &server.url);
    assert_eq!(created.status, 201, "{}", created.body);
    let body: serde_json::Value = serde_json::from_str(&created.body).unwrap();
    assert_eq!(body["name"], "visitor");
    let token = body["token"].as_str().expect("the first token").to_owned();
    let who = get_as(&format!("{}/v1/whoami", server.url), &token);
    assert_eq!(who.body, r#"{"admin":false,"tenant":"visitor"}"#);
    // Signed in at once: the cookie is the new tenant's session.
    let cookie = created.header("set-cookie").expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let whoami = format!("{}/v1/whoami", server.url);
    let by_cookie = with_cookie("GET", &whoami, &pair(cookie), None, "");
    assert_eq!(by_cookie.body, r#"{"admin":false,"tenant":"visitor"}"#);
    // A taken name is a conflict, not a second tenant.
    assert_eq!(sign_up(&server, "visitor", &server.url).status, 409);

    // The second sign-up from this address is the last one this hour.
    assert_eq!(sign_up(&server, "visitor-two", &server.url).status, 201);
    let limited = sign_up(&server, "visitor-three", &server.url);
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.body.contains("rate-limited"), "{}", limited.body);
    let wait: u64 = limited
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in seconds");
    assert!((3000..=3600).contains(&wait), "{wait}");
    let tenants = server.ok(&["tenants", "list"]);
    assert!(tenants.contains("visitor-two") && !tenants.contains("visitor-three"));
}

#[test]
fn usage_downloads_as_csv_and_functions_list_in_pages() {
    let home = Home::new();
    let server = home.start(&[]);
    for name in ["delta", "alpha", "charlie", "bravo"] {
        server.ok(&["deploy", "--name", name, &guest("hello")]);
    }
    assert_eq!(
        post(&server.function_url("default", "bravo"), "x").status,
        200
    );
    let token = home.token();
    let list = |query: &str| {
        let answer = get_as(&format!("{}/v1/functions{query}", server.url), &token);
        assert_eq!(answer.status, 200, "{}", answer.body);
        let names: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&answer.body)
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        names
    };
    assert_eq!(list(""), ["alpha", "bravo", "charlie", "delta"]);
    assert_eq!(list("?limit=2"), ["alpha", "bravo"]);
    assert_eq!(list("?limit=2&after=bravo"), ["charlie", "delta"]);
    assert!(list("?limit=2&after=delta").is_empty());
    for bad in ["0", "1001", "-1"] {
        let refused = get_as(&format!("{}/v1/functions?limit={bad}", server.url), &token);
        assert_eq!(refused.status, 400, "{bad}: {}", refused.body);
    }

    // The usage report as a CSV download: the header, the row, the total.
    let usage = |query: &str| {
        get_as(
            &format!("{}/v1/usage?by=function{query}", server.url),
            &token,
        )
    };
    let csv = eventually("the invocation in the usage", || {
        let csv = usage("&format=csv");
        csv.body.contains("default,bravo,").then_some(csv)
    });
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(
        csv.header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment; filename=\"kiln-usage-")),
        "{:?}",
        csv.header("content-disposition")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(lines[0].starts_with("tenant,function,period,requests,"));
    assert!(lines[1].starts_with("default,bravo,,1,"), "{}", lines[1]);
    assert!(lines.last().unwrap().starts_with("TOTAL,,,1,"));
    // The CLI prints the same bytes.
    let printed = server.ok(&["usage", "--csv"]);
    assert_eq!(printed, csv.body);
    let refused = usage("&format=xml");
    assert_eq!(refused.status, 400, "{}", refused.body);
}

#[test]
fn function_pages_share_no_origin_with_a_signed_in_console_unless_it_is_off() {
    let sandbox = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", "--name", "page", &guest("hello")]);
    let answer = post(&server.function_url("default", "page"), "");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-security-policy"), Some(sandbox));
    // Errors of the invoke path carry it too.
    let missing = post(&server.function_url("default", "nothing"), "");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-security-policy"), Some(sandbox));
    drop(server);

    let home = Home::new();
    let server = home.start(&["--console", "off"]);
    server.ok(&["deploy", "--name", "page", &guest("hello")]);
    let answer = post(&server.function_url("default", "page"), "");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-security-policy"), None);
    assert_eq!(get(&format!("{}/console", server.url)).status, 404);
    assert_eq!(get(&format!("{}/", server.url)).status, 404);
}
