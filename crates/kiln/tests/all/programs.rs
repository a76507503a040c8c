//! What real third-party programs need beyond stdin and stdout, as a user meets
//! it through `kiln deploy` and HTTP: exit codes that are answers.

use crate::support::*;

#[test]
fn exit_codes_listed_as_answers_return_the_output_and_others_fail_with_it_logged() {
    let home = Home::new();
    let server = home.start(&[]);
    server.ok(&["deploy", "--ok-exit", "10,20", &guest("exit-code")]);
    server.ok(&["deploy", "--name", "strict", &guest("exit-code")]);
    server.ok(&[
        "deploy",
        "--name",
        "streamed",
        "--stream",
        "--ok-exit",
        "10",
        &guest("exit-code"),
    ]);
    let url = server.function_url("default", "exit-code");

    for code in ["10", "20"] {
        let answer = post(&url, code);
        assert_eq!(answer.status, 200, "{code}: {}", answer.body);
        assert_eq!(answer.body, format!("exiting with {code}\n"));
        assert_eq!(answer.header("kiln-outcome"), Some("success"));
        assert_eq!(answer.header("kiln-exit-code"), Some(code));
    }
    let zero = post(&url, "0");
    assert_eq!((zero.status, zero.body.as_str()), (200, "exiting with 0\n"));
    assert_eq!(zero.header("kiln-exit-code"), None);

    // Any other code is a failure, which names the code in a header too.
    let failed = post(&url, "3");
    assert_eq!(failed.status, 502, "{}", failed.body);
    assert_eq!(failed.header("kiln-outcome"), Some("exit"));
    assert_eq!(failed.header("kiln-exit-code"), Some("3"));
    assert_eq!(failed.body, "function exited with code 3\n");
    // Without the option, 10 is a failure.
    let strict = post(&server.function_url("default", "strict"), "10");
    assert_eq!(strict.status, 502);
    assert_eq!(strict.header("kiln-exit-code"), Some("10"));

    // Streamed, the listed code ends the body cleanly.
    let streamed = post(&server.function_url("default", "streamed"), "10");
    assert_eq!(
        (streamed.status, streamed.body.as_str()),
        (200, "exiting with 10\n")
    );

    // The failure's stdout and stderr are in the log; an answer's stdout is not.
    let logs = eventually("the failure's log", || {
        let out = server.ok(&["logs", "exit-code"]);
        out.contains("exited with code 3").then_some(out)
    });
    assert!(logs.contains("exit-code: status 3 on purpose"), "{logs}");
    assert!(logs.contains("    | exiting with 3"), "{logs}");
    assert!(!logs.contains("| exiting with 10"), "{logs}");
    assert!(logs.contains("200 exited with code 10"), "{logs}");

    // Bad codes are refused before anything is sent, and by the server too.
    let refused = server.cli(
        &["deploy", "--ok-exit", "126", &guest("exit-code")],
        &[],
        b"",
    );
    assert!(!refused.status.success());
    let direct = http()
        .post(&format!(
            "{}/v1/functions/x/versions?ok_exit=7,300",
            server.url
        ))
        .header("authorization", &format!("Bearer {}", home.token()))
        .send(&std::fs::read(guest("exit-code")).expect("guest")[..]);
    let direct = answer(direct);
    assert_eq!(direct.status, 400, "{}", direct.body);
    assert!(
        direct.body.contains("expected exit codes from 0 to 125"),
        "{}",
        direct.body
    );
    assert!(!server.ok(&["list"]).contains("/x"), "nothing was stored");
}
