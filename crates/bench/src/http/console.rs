//! Console: how soon the functions page shows its first page of functions in
//! a real headless Chromium, with 10 functions and with 1,000 (the page asks
//! for 50 at a time). Each round reloads the page (signed in) and reads the
//! browser's own clock: first contentful paint, and the moment a frame after
//! the table went into the page (`performance.mark("functions-painted")` in
//! `app.js`), both from the start of the navigation.

use super::client;
use super::kiln::Kiln;
use super::report::{Report, median, runs};
use anyhow::{Context, bail};
use fantoccini::{Client, Locator};
use std::time::{Duration, Instant};

/// Page loads measured at each size.
const ROUNDS: usize = 15;

pub(super) fn run(kiln: &Kiln, hello: &[u8], report: &mut Report) -> anyhow::Result<()> {
    let driver = kiln_guests::browser::Driver::start()
        .context("no chromedriver: apt-get install chromium chromium-driver")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let agent = client::agent();
    let mut deployed = 0;
    for functions in [10, 1000] {
        while deployed < functions {
            let name = format!("fn-{deployed:04}");
            client::deploy(&agent, kiln.addr, &kiln.token, &name, hello)?;
            deployed += 1;
        }
        let (painted, contentful) = runtime.block_on(async {
            let browser = driver
                .session(1200, 900)
                .await
                .map_err(anyhow::Error::msg)?;
            let measured = measure(&browser, kiln, functions).await;
            let _ = browser.close().await;
            measured
        })?;
        eprintln!(
            "  {functions} functions: painted {} ms; first contentful paint {} ms",
            runs(&painted, 1),
            runs(&contentful, 1)
        );
        let scenario = format!("console, {functions} functions");
        report.target(
            &scenario,
            "functions page painted with its first 50 (median ms from navigation)",
            format!("{:.1}", median(painted.clone())),
            "≤ 200 ms",
            median(painted) <= 200.0,
        );
        report.add(
            &scenario,
            "first contentful paint (median ms)",
            format!("{:.1}", median(contentful)),
        );
    }
    Ok(())
}

/// Signs in, then reloads the functions page `ROUNDS` times: (painted, first
/// contentful paint), in ms from the start of each navigation.
async fn measure(
    browser: &Client,
    kiln: &Kiln,
    functions: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    browser.goto(&kiln.url("/console")).await?;
    browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#token"))
        .await?
        .send_keys(&kiln.token)
        .await?;
    browser
        .find(Locator::Css("#sign-in button[type=submit]"))
        .await?
        .click()
        .await?;
    let shown = functions.min(50);
    let (mut painted, mut contentful) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        browser.goto(&kiln.url("/console#/functions")).await?;
        browser.refresh().await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let marks = loop {
            let marks = browser
                .execute(
                    "const painted = performance.getEntriesByName('functions-painted')[0];
                     const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                     const rows = document.querySelectorAll('#functions tr').length;
                     return painted && fcp ? [painted.startTime, fcp.startTime, rows] : null",
                    vec![],
                )
                .await?;
            if !marks.is_null() {
                break marks;
            }
            if Instant::now() > deadline {
                bail!("the functions page did not paint within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if marks[2].as_u64() != Some(shown as u64) {
            bail!("the page shows {} rows, not {shown}", marks[2]);
        }
        painted.push(marks[0].as_f64().unwrap_or(f64::NAN));
        contentful.push(marks[1].as_f64().unwrap_or(f64::NAN));
    }
    Ok((painted, contentful))
}
