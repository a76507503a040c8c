//! The console in a real browser: headless Chromium driven over WebDriver
//! (`chromedriver`, both from Debian; `scripts/test` installs them). A tenant
//! signs in, sees its functions, tries one, deploys a new version by upload,
//! rolls back, follows its logs while a guest's stderr tries to inject
//! markup, watches the usage chart change, creates and revokes a token, reads
//! the page at 360 px, and signs out; the operator sees tenants and the node.
//!
//! Without `chromedriver` (`kiln_guests::browser`) the test says so and passes, unless
//! `KILN_REQUIRE_BROWSER=1` (set by `scripts/test` once it installed the
//! browser). With `KILN_SCREENSHOTS=DIR` it saves a PNG of each page there
//! (`scripts/screenshots`).

use crate::support::*;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use kiln_guests::browser::Driver;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where `KILN_SCREENSHOTS` asks for the pages' pictures, if it does.
fn screenshots() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("KILN_SCREENSHOTS")?);
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    Some(dir)
}

async fn snap(browser: &Client, name: &str) {
    if let Some(dir) = screenshots() {
        let png = browser.screenshot().await.expect("a screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
    }
}

/// Runs `script` (a function body returning a value) until it returns
/// something other than `null`/`false`, failing at the deadline.
async fn until(browser: &Client, what: &str, script: &str) -> Value {
    let start = Instant::now();
    loop {
        let value = browser
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if !value.is_null() && value != Value::Bool(false) {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(browser: &Client, id: &str) -> String {
    let script = format!("return document.getElementById({id:?}).textContent");
    let value = browser.execute(&script, vec![]).await.expect("text");
    value.as_str().unwrap_or_default().to_owned()
}

async fn fill(browser: &Client, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.expect(css);
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("typing");
}

async fn click(browser: &Client, locator: Locator<'_>) {
    browser
        .find(locator)
        .await
        .expect("the element to click")
        .click()
        .await
        .expect("a click");
}

async fn go(browser: &Client, server: &KilnServer, hash: &str) {
    browser
        .goto(&format!("{}/console{hash}", server.url))
        .await
        .expect("navigation");
}

#[test]
fn the_console_works_in_a_real_browser() {
    let Some(driver) = Driver::start() else {
        assert!(
            std::env::var_os("KILN_REQUIRE_BROWSER").is_none(),
            "KILN_REQUIRE_BROWSER is set but chromedriver is missing or did not start"
        );
        eprintln!(
            "skipped: no chromedriver on the PATH, or it did not start (scripts/test installs chromium and chromium-driver)"
        );
        return;
    };
    let home = Home::new();
    let server = home.start(&["--usage-flush", "100ms"]);
    server.ok(&["deploy", "--name", "hello", &guest("hello")]);
    let xss = "<img src=x onerror=\"window.__xss=1\">";
    server.ok(&[
        "deploy",
        "--name",
        "noisy",
        "--arg",
        xss,
        "--arg",
        "--stderr",
        "--env",
        "NOTE=<b id=\"bold\">bold</b>",
        &guest("echo-env"),
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let browser = driver.session(1200, 900).await.expect("a browser session");
        tenant_journey(&browser, &home, &server, xss).await;
        operator_journey(&browser, &home, &server).await;
        let _ = browser.close().await;
    });
}

async fn tenant_journey(browser: &Client, home: &Home, server: &KilnServer, xss: &str) {
    // `/` leads to the console, which asks for a token.
    browser.goto(&format!("{}/", server.url)).await.expect("/");
    until(
        browser,
        "the sign-in form",
        "return !document.getElementById('sign-in-view').hidden",
    )
    .await;
    assert!(
        browser
            .current_url()
            .await
            .expect("url")
            .path()
            .starts_with("/console")
    );
    snap(browser, "sign-in").await;
    fill(browser, "#token", &home.token()).await;
    click(browser, Locator::Css("#sign-in button[type=submit]")).await;

    // The functions, with their kind, version and size.
    let rows = until(
        browser,
        "the functions table",
        "const rows = [...document.querySelectorAll('#functions tr')];
         return rows.length === 2 ? rows.map(r => [...r.cells].map(c => c.textContent)) : null",
    )
    .await;
    assert_eq!(rows[0][0], "hello");
    assert_eq!(rows[0][1], "module");
    assert_eq!(rows[0][2], "1");
    assert_eq!(rows[1][0], "noisy");
    snap(browser, "functions").await;

    // One function: its URL, and "try it".
    click(browser, Locator::LinkText("hello")).await;
    until(
        browser,
        "the function page",
        "return document.getElementById('function-name').textContent === 'hello'",
    )
    .await;
    assert_eq!(
        text_of(browser, "function-url").await,
        server.function_url("default", "hello")
    );
    let try_it = |body: &'static str| async move {
        fill(browser, "#try-body", body).await;
        browser
            .execute(
                "document.getElementById('try-response').textContent = ''",
                vec![],
            )
            .await
            .expect("reset");
        click(browser, Locator::Css("#try button[type=submit]")).await;
        until(
            browser,
            "the answer",
            "return document.getElementById('try-response').textContent || null",
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    };
    assert_eq!(try_it("kiln").await, "Hello, kiln!\n");
    assert_eq!(text_of(browser, "try-status").await, "200");

    // A new version by upload (echo), then a rollback to the first.
    let upload = browser
        .find(Locator::Css("#version-deploy input[type=file]"))
        .await
        .expect("the file field");
    upload.send_keys(&guest("echo")).await.expect("the file");
    click(browser, Locator::Css("#version-deploy button[type=submit]")).await;
    until(
        browser,
        "version 2 serving",
        "const first = document.querySelector('#versions tr');
         return first && first.cells[0].textContent === '2' && first.cells[4].textContent === 'serving'",
    )
    .await;
    snap(browser, "function").await;
    assert_eq!(try_it("kiln").await, "kiln");
    click(browser, Locator::XPath("//button[text()='Roll back to 1']")).await;
    until(
        browser,
        "version 1 serving again",
        "const rows = document.querySelectorAll('#versions tr');
         return rows.length === 2 && rows[1].cells[4].textContent === 'serving'",
    )
    .await;
    assert_eq!(try_it("again").await, "Hello, again!\n");

    // Logs, followed live: the guest's stderr arrives as text, never markup.
    go(browser, server, "#/functions/noisy").await;
    until(
        browser,
        "the noisy page",
        "return document.getElementById('function-name').textContent === 'noisy'",
    )
    .await;
    // Its environment shows as text too.
    let env = until(
        browser,
        "the configuration",
        "const dd = [...document.querySelectorAll('#function-config dd')].find(d => d.textContent.startsWith('NOTE='));
         return dd ? [dd.textContent, document.getElementById('bold') === null] : null",
    )
    .await;
    assert_eq!(env, json!(["NOTE=<b id=\"bold\">bold</b>", true]));
    click(browser, Locator::Id("follow")).await;
    assert_eq!(
        post(&server.function_url("default", "noisy"), "").status,
        200
    );
    let logged = until(
        browser,
        "the log line while following",
        "const pre = [...document.querySelectorAll('#logs pre')].find(p => p.textContent.includes('ARG 1='));
         return pre ? pre.textContent : null",
    )
    .await;
    assert!(
        logged
            .as_str()
            .unwrap_or_default()
            .contains(&format!("ARG 1={xss}")),
        "{logged}"
    );
    let injected = browser
        .execute(
            "return [document.querySelectorAll('#logs img').length, window.__xss === undefined]",
            vec![],
        )
        .await
        .expect("the check");
    assert_eq!(injected, json!([0, true]), "stderr must render as text");

    // Usage: the chart's data moves with new requests.
    go(browser, server, "#/usage").await;
    let before = until(
        browser,
        "the usage chart",
        "return document.getElementById('usage-chart').dataset.points || null",
    )
    .await;
    let before: f64 = before.as_str().unwrap_or("0").parse().expect("a number");
    for _ in 0..3 {
        assert_eq!(
            post(&server.function_url("default", "hello"), "x").status,
            200
        );
    }
    let expected = before + 3.0;
    let start = Instant::now();
    loop {
        click(browser, Locator::Css("#usage-form button[type=submit]")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = text_attr(browser, "usage-chart", "points").await;
        if now == expected {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the chart shows {now}, not {expected}"
        );
    }
    let csv = browser
        .execute(
            "return document.getElementById('usage-csv').getAttribute('href')",
            vec![],
        )
        .await
        .expect("the CSV link");
    assert!(
        csv.as_str().unwrap_or_default().contains("format=csv"),
        "{csv}"
    );
    assert!(text_of(browser, "quota").await.contains("Requests:"));
    snap(browser, "usage").await;

    // Tokens: created (shown once, and it works), then revoked (and it does not).
    go(browser, server, "#/tokens").await;
    until(
        browser,
        "the tokens page",
        "return document.querySelectorAll('#tokens tr').length > 0",
    )
    .await;
    fill(browser, "#token-name", "laptop").await;
    click(browser, Locator::Css("#token-create button[type=submit]")).await;
    let token = until(browser, "the new token", "const v = document.getElementById('token-created-value').textContent; return v.startsWith('kiln_') ? v : null").await;
    let token = token.as_str().unwrap_or_default().to_owned();
    let whoami = format!("{}/v1/whoami", server.url);
    assert_eq!(get_as(&whoami, &token).status, 200);
    click(browser, Locator::XPath("//button[text()='Revoke laptop']")).await;
    until(
        browser,
        "the token revoked",
        "return [...document.querySelectorAll('#tokens tr')].some(r => r.cells[0].textContent === 'laptop' && r.cells[2].textContent === 'revoked')",
    )
    .await;
    assert_eq!(get_as(&whoami, &token).status, 401);
    snap(browser, "tokens").await;

    // Every field has a label.
    go(browser, server, "#/functions").await;
    until(
        browser,
        "the functions table again",
        "return document.querySelectorAll('#functions tr').length === 2",
    )
    .await;
    let unlabelled = browser
        .execute(
            "return [...document.querySelectorAll('input, select, textarea')]
               .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))
               .map(e => e.id || e.name)",
            vec![],
        )
        .await
        .expect("the label check");
    assert_eq!(unlabelled, json!([]), "fields without a label");
    // From a freshly loaded page, the first Tab lands on "Skip to content".
    browser.refresh().await.expect("reload");
    until(
        browser,
        "the reloaded table",
        "return document.querySelectorAll('#functions tr').length === 2",
    )
    .await;
    let tab = char::from(Key::Tab);
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: tab })
        .then(KeyAction::Up { value: tab });
    browser.perform_actions(keys).await.expect("Tab");
    let focused = browser
        .execute("return document.activeElement.outerHTML", vec![])
        .await
        .expect("focus");
    assert!(
        focused
            .as_str()
            .unwrap_or_default()
            .starts_with("<a class=\"skip\""),
        "{focused}"
    );

    // At 360 px the page does not scroll sideways.
    browser
        .set_window_size(360, 800)
        .await
        .expect("narrow window");
    let (width, fits) = {
        let v = until(
            browser,
            "the narrow layout",
            "return [window.innerWidth, document.documentElement.scrollWidth <= window.innerWidth]",
        )
        .await;
        (v[0].as_u64().unwrap_or(0), v[1].as_bool().unwrap_or(false))
    };
    assert!(width <= 360, "the window is {width} px wide");
    assert!(fits, "the page scrolls sideways at {width} px");
    browser
        .execute("document.activeElement.blur()", vec![])
        .await
        .expect("blur");
    snap(browser, "functions-360px").await;
    browser
        .set_window_size(1200, 900)
        .await
        .expect("wide window");

    // Signing out ends the session on the server, not only in the page.
    let cookie = browser
        .get_named_cookie("kiln_session")
        .await
        .expect("the session cookie");
    assert!(cookie.http_only().unwrap_or(false));
    let session = format!("kiln_session={}", cookie.value());
    let by_cookie = || answer(http().get(&whoami).header("Cookie", &session).call()).status;
    assert_eq!(by_cookie(), 200);
    click(browser, Locator::Id("sign-out")).await;
    until(
        browser,
        "the sign-in form after signing out",
        "return !document.getElementById('sign-in-view').hidden",
    )
    .await;
    assert_eq!(by_cookie(), 401);
}

async fn text_attr(browser: &Client, id: &str, name: &str) -> f64 {
    let script = format!("return document.getElementById({id:?}).dataset.{name} || '0'");
    let value = browser.execute(&script, vec![]).await.expect("attribute");
    value.as_str().unwrap_or("0").parse().unwrap_or(f64::NAN)
}

async fn operator_journey(browser: &Client, home: &Home, server: &KilnServer) {
    go(browser, server, "#/").await;
    until(
        browser,
        "the sign-in form",
        "return !document.getElementById('sign-in-view').hidden",
    )
    .await;
    fill(browser, "#token", &home.admin_token()).await;
    click(browser, Locator::Css("#sign-in button[type=submit]")).await;
    let tenants = until(
        browser,
        "the tenants table",
        "const rows = [...document.querySelectorAll('#tenants tr')];
         return rows.length ? rows.map(r => r.cells[0].textContent) : null",
    )
    .await;
    assert_eq!(tenants, json!(["default"]));
    fill(browser, "#tenant-name", "acme").await;
    click(browser, Locator::Css("#tenant-create button[type=submit]")).await;
    let token = until(browser, "the new tenant's token", "const v = document.getElementById('tenant-created-value').textContent; return v.startsWith('kiln_') ? v : null").await;
    let who = get_as(
        &format!("{}/v1/whoami", server.url),
        token.as_str().unwrap_or_default(),
    );
    assert_eq!(who.body, r#"{"admin":false,"tenant":"acme"}"#);
    until(browser, "acme listed", "return [...document.querySelectorAll('#tenants tr')].some(r => r.cells[0].textContent === 'acme')").await;
    snap(browser, "tenants").await;
    go(browser, server, "#/cluster").await;
    let status = until(
        browser,
        "the node's status",
        "const dd = document.querySelectorAll('#node-status dd'); return dd.length ? dd.length : null",
    )
    .await;
    assert_eq!(status, json!(8));
    let nodes = until(
        browser,
        "the nodes seen",
        "const rows = [...document.querySelectorAll('#nodes tr')];
         return rows.length ? rows.map(r => [r.cells[0].textContent, r.cells[2].textContent]) : null",
    )
    .await;
    let name = server.url.trim_start_matches("http://");
    assert_eq!(nodes, json!([[name, "up"]]));
    let top = text_of(browser, "top-tenants").await;
    assert!(top.starts_with("default:"), "{top}");
    snap(browser, "cluster").await;
}
