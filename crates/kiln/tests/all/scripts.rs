//! Python and JavaScript as a user writes them: `kiln deploy app.py` / `app.js`
//! against a `kiln up --runtimes` serving the runtimes `scripts/runtimes`
//! builds (CPython from componentize-py, QuickJS-NG), in the handler style
//! and the CGI style, with files, with errors at deploy and in a request,
//! under limits, and after a restart from the snapshot on disk.

use crate::support::*;
use std::path::PathBuf;

/// A server that has the language runtimes. Every test's server shares one
/// compile cache: the runtimes' code is compiled once per test run, as it is
/// once per node in production.
fn serve(home: &Home) -> KilnServer {
    let runtimes = kiln_guests::runtimes().display().to_string();
    let cache = kiln_guests::repo_root()
        .join("target")
        .join("test-compile-cache")
        .display()
        .to_string();
    home.start(&["--runtimes", &runtimes, "--compile-cache", &cache])
}

/// Writes `source` to `name` in a fresh directory of `home`; returns its path.
fn code(home: &Home, name: &str, source: &str) -> String {
    let dir: PathBuf = home.dir.path().join("code").join(name.replace('.', "-"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(name);
    std::fs::write(&path, source).expect("write");
    path.display().to_string()
}

/// Deploys and asserts it worked; returns what the CLI printed.
fn deploy(server: &KilnServer, args: &[&str]) -> String {
    let out = server.cli(&[&["deploy"], args].concat(), &[], b"");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "deploy {args:?}: {said}");
    said
}

/// Deploys and asserts it was refused; returns the error the CLI printed.
fn refused(server: &KilnServer, args: &[&str]) -> String {
    let out = server.cli(&[&["deploy"], args].concat(), &[], b"");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "deploy {args:?} should fail: {said}");
    said
}

const JS_HANDLER: &str = r#"
const started = "at deploy";
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname.endsWith("/boom")) throw new TypeError("no such thing");
    const body = await request.text();
    console.log("logged, not answered");
    return Response.json(
      {
        method: request.method,
        path: url.pathname,
        name: url.searchParams.get("name"),
        body,
        agent: request.headers.get("x-agent"),
        greeting: env.GREETING,
        started,
        random: Math.random() !== Math.random(),
      },
      { status: 201, headers: { "x-kiln": "yes" } },
    );
  },
};
"#;

#[test]
fn javascript_handlers_and_scripts_answer_requests() {
    let home = Home::new();
    let server = serve(&home);
    let app = code(&home, "app.js", JS_HANDLER);
    let said = deploy(&server, &["--env", "GREETING=hi", &app]);
    assert!(said.contains("javascript, snapshot"), "{said}");

    let url = server.function_url("default", "app");
    let answer = answer(
        http()
            .post(format!("{url}/hello?name=kiln"))
            .header("x-agent", "test")
            .send("the body"),
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.header("x-kiln"), Some("yes"));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
    assert_eq!(json["method"], "POST");
    assert_eq!(json["path"], "/fn/default/app/hello");
    assert_eq!(json["name"], "kiln");
    assert_eq!(json["body"], "the body");
    assert_eq!(json["agent"], "test");
    assert_eq!(json["greeting"], "hi");
    assert_eq!(json["started"], "at deploy");
    assert_eq!(json["random"], true);

    // An exception in a request: a 500 with one line; the stack goes to the log.
    let boom = post(&format!("{url}/boom"), "");
    assert_eq!(boom.status, 500, "{}", boom.body);
    assert_eq!(boom.body.trim(), "Uncaught TypeError: no such thing");
    eventually("console.log in the function's log", || {
        let logs = server.ok(&["logs", "app"]);
        (logs.contains("logged, not answered") && logs.contains("TypeError: no such thing"))
            .then_some(())
    });

    // The CGI style: a classic script reads the body and prints the response.
    let script = code(
        &home,
        "hello.js",
        "const who = Kiln.readInput() || 'world';\nconsole.log(`Hello, ${who}!`);\n",
    );
    deploy(&server, &[&script]);
    let hello = post(&server.function_url("default", "hello"), "Kiln");
    assert_eq!((hello.status, hello.body.as_str()), (200, "Hello, Kiln!\n"));
}

#[test]
fn javascript_errors_at_deploy_name_the_line_and_store_nothing() {
    let home = Home::new();
    let server = serve(&home);
    let syntax = code(&home, "broken.js", "export default {\n  fetch( {\n};\n");
    let said = refused(&server, &[&syntax]);
    assert!(
        said.contains("broken.js failed when it was loaded at deploy"),
        "{said}"
    );
    assert!(said.contains("SyntaxError"), "{said}");
    let thrown = code(
        &home,
        "thrown.js",
        "throw new Error('not today');\nexport default {};\n",
    );
    let said = refused(&server, &[&thrown]);
    assert!(said.contains("not today"), "{said}");
    let no_fetch = code(&home, "nofetch.js", "export default { hello() {} };\n");
    let said = refused(&server, &[&no_fetch]);
    assert!(said.contains("export default"), "{said}");
    for name in ["broken", "thrown", "nofetch"] {
        let gone = post(&server.function_url("default", name), "");
        assert_eq!(gone.status, 404, "{name}: {}", gone.body);
    }
}

const PY_HANDLER: &str = r#"
import json, os, statistics
from kiln import Response

STARTED = "at deploy"
print("printed at deploy, kept out of every response")

def handle(request):
    if request.path.endswith("/boom"):
        raise ValueError("no such thing")
    if request.path.endswith("/file"):
        with open("/assets/hello.txt") as f:
            return f.read()
    if request.path.endswith("/scratch"):
        with open("/tmp/out.txt", "w") as f:
            f.write(request.text())
        with open("/tmp/out.txt") as f:
            return f.read().upper()
    import fractions  # a module first imported in a request
    return Response.json(
        {
            "method": request.method,
            "name": request.query.get("name"),
            "body": request.text(),
            "agent": request.headers.get("x-agent"),
            "greeting": os.environ.get("GREETING"),
            "started": STARTED,
            "mean": statistics.mean([1, 2, 3, 4]),
            "half": str(fractions.Fraction(2, 4)),
        },
        status=201,
        headers={"x-kiln": "yes"},
    )
"#;

#[test]
fn python_handlers_and_scripts_answer_requests_with_files_and_scratch() {
    let home = Home::new();
    let server = serve(&home);
    let assets = home.dir.path().join("assets");
    std::fs::create_dir_all(&assets).expect("mkdir");
    std::fs::write(assets.join("hello.txt"), "hello from a bundle").expect("write");
    let dir = format!("{}:/assets", assets.display());
    let app = code(&home, "app.py", PY_HANDLER);
    let said = deploy(
        &server,
        &["--env", "GREETING=hi", "--dir", &dir, "--tmp", "1MiB", &app],
    );
    assert!(said.contains("python, snapshot"), "{said}");

    let url = server.function_url("default", "app");
    let answer = answer(
        http()
            .post(format!("{url}?name=kiln"))
            .header("x-agent", "test")
            .send("the body"),
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.header("x-kiln"), Some("yes"));
    let json: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
    assert_eq!(json["method"], "POST");
    assert_eq!(json["name"], "kiln");
    assert_eq!(json["body"], "the body");
    assert_eq!(json["agent"], "test");
    assert_eq!(json["greeting"], "hi");
    assert_eq!(json["started"], "at deploy");
    assert_eq!(json["mean"], 2.5);
    assert_eq!(json["half"], "1/2");
    assert!(
        !answer.body.contains("printed at deploy"),
        "{}",
        answer.body
    );

    let file = post(&format!("{url}/file"), "");
    assert_eq!(
        (file.status, file.body.as_str()),
        (200, "hello from a bundle")
    );
    let scratch = post(&format!("{url}/scratch"), "written");
    assert_eq!((scratch.status, scratch.body.as_str()), (200, "WRITTEN"));

    let boom = post(&format!("{url}/boom"), "");
    assert_eq!(boom.status, 500, "{}", boom.body);
    assert_eq!(boom.body.trim(), "ValueError: no such thing");
    eventually("the traceback in the function's log", || {
        let logs = server.ok(&["logs", "app"]);
        (logs.contains("Traceback") && logs.contains("ValueError: no such thing")).then_some(())
    });

    // The CGI style: the script runs per request, body on stdin.
    let script = code(
        &home,
        "hello.py",
        "import sys, statistics\nwho = sys.stdin.read() or 'world'\n\
         print(f'Hello, {who}! {statistics.median([3, 1, 2])}')\n",
    );
    deploy(&server, &[&script]);
    let hello = post(&server.function_url("default", "hello"), "Kiln");
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "Hello, Kiln! 2\n")
    );
}

#[test]
fn python_errors_at_deploy_carry_the_traceback_and_store_nothing() {
    let home = Home::new();
    let server = serve(&home);
    let syntax = code(&home, "broken.py", "def handle(request)\n    return 1\n");
    let said = refused(&server, &[&syntax]);
    assert!(
        said.contains("broken.py failed when it was loaded at deploy"),
        "{said}"
    );
    assert!(said.contains("SyntaxError"), "{said}");
    let thrown = code(
        &home,
        "thrown.py",
        "import json\nraise RuntimeError('not today')\ndef handle(request): pass\n",
    );
    let said = refused(&server, &[&thrown]);
    assert!(said.contains("RuntimeError: not today"), "{said}");
    let missing = code(
        &home,
        "missing.py",
        "import nosuchmodule\ndef handle(r): pass\n",
    );
    let said = refused(&server, &[&missing]);
    assert!(said.contains("No module named 'nosuchmodule'"), "{said}");
    for name in ["broken", "thrown", "missing"] {
        let gone = post(&server.function_url("default", name), "");
        assert_eq!(gone.status, 404, "{name}: {}", gone.body);
    }
}

#[test]
fn a_directory_of_python_modules_deploys_with_its_entry() {
    let home = Home::new();
    let server = serve(&home);
    let dir = home.dir.path().join("shop");
    std::fs::create_dir_all(dir.join("lib")).expect("mkdir");
    std::fs::write(dir.join("lib/__init__.py"), "").expect("write");
    std::fs::write(
        dir.join("lib/prices.py"),
        "def total(xs):\n    return sum(xs)\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("main.py"),
        "from lib.prices import total\n\ndef handle(request):\n    \
         return {'total': total(request.json())}\n",
    )
    .expect("write");
    deploy(&server, &[&dir.display().to_string()]);
    let answer = post(&server.function_url("default", "shop"), "[1, 2, 39]");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, r#"{"total": 42}"#);
}

#[test]
fn scripts_obey_their_limits_and_survive_a_restart() {
    let home = Home::new();
    let server = serve(&home);
    let spin = code(
        &home,
        "spin.js",
        "export default { fetch() { for (;;) {} } };\n",
    );
    deploy(&server, &["--timeout", "300ms", &spin]);
    let stopped = post(&server.function_url("default", "spin"), "");
    assert_eq!(stopped.status, 504, "{}", stopped.body);
    let hog = code(
        &home,
        "hog.py",
        "def handle(request):\n    return str(len(bytearray(200 * 1024 * 1024)))\n",
    );
    deploy(&server, &["--memory", "64MiB", &hog]);
    let refused = post(&server.function_url("default", "hog"), "");
    assert_ne!(refused.status, 200, "{}", refused.body);
    assert!(
        refused.body.contains("memory") || refused.header("kiln-outcome") == Some("memory-limit"),
        "{}: {}",
        refused.status,
        refused.body
    );
    // A snapshot larger than the memory limit cannot even start.
    let tiny = code(&home, "tiny.py", "def handle(request):\n    return 'hi'\n");
    let said = refused_or_fails(&server, &["--memory", "4MiB", &tiny]);
    assert!(said.contains("memory"), "{said}");

    let app = code(&home, "app.js", JS_HANDLER);
    deploy(&server, &[&app]);
    let py = code(
        &home,
        "py.py",
        "def handle(request):\n    return 'still here'\n",
    );
    deploy(&server, &[&py]);
    drop(server);
    let again = serve(&home);
    let js = post(&again.function_url("default", "app"), "x");
    assert_eq!(js.status, 201, "{}", js.body);
    let py = post(&again.function_url("default", "py"), "");
    assert_eq!((py.status, py.body.as_str()), (200, "still here"));
}

/// A deploy that is refused, or that deploys a function whose requests fail:
/// what the user sees either way.
fn refused_or_fails(server: &KilnServer, args: &[&str]) -> String {
    let out = server.cli(&[&["deploy"], args].concat(), &[], b"");
    if !out.status.success() {
        return String::from_utf8_lossy(&out.stderr).into_owned();
    }
    let name = std::path::Path::new(args.last().expect("a file"))
        .file_stem()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    let answer = post(&server.function_url("default", &name), "");
    assert_ne!(answer.status, 200, "{}", answer.body);
    answer.body
}

#[test]
fn a_module_exporting_wizer_initialize_is_initialized_once_at_deploy() {
    let home = Home::new();
    let server = home.start(&[]);
    let data = home.dir.path().join("mottos");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("motto.txt"), "read once, at deploy\n").expect("write");
    let dir = format!("{}:/data", data.display());
    deploy(&server, &["--dir", &dir, &guest("preinit")]);
    // Changing the file after the deploy changes nothing: it was read at deploy.
    std::fs::write(data.join("motto.txt"), "changed later\n").expect("write");
    let url = server.function_url("default", "preinit");
    // π(1000) = 168 and π(10⁶) = 78498, as tabulated since Legendre.
    let small = post(&url, "1000");
    assert_eq!(
        (small.status, small.body.as_str()),
        (
            200,
            "initialized at deploy: 168 primes below 1000\nmotto: read once, at deploy\n"
        )
    );
    let large = post(&url, "1000000");
    assert!(
        large
            .body
            .starts_with("initialized at deploy: 78498 primes below 1000000"),
        "{}",
        large.body
    );
}

/// `examples/<language>/<file>`.
fn example(path: &str) -> String {
    kiln_guests::repo_root()
        .join("examples")
        .join(path)
        .display()
        .to_string()
}

/// Compiles a C example with Debian's clang and wasi-libc (what
/// `scripts/runtimes` installs), as the README says.
fn c_example(home: &Home, name: &str) -> String {
    kiln_guests::c_example(name, home.dir.path())
        .display()
        .to_string()
}

#[test]
fn the_examples_of_every_language_deploy_and_answer() {
    let home = Home::new();
    let server = serve(&home);
    let url = |name: &str| server.function_url("default", name);

    deploy(&server, &["--name", "rust-hello", &guest("hello")]);
    deploy(&server, &["--name", "c-hello", &c_example(&home, "hello")]);
    deploy(
        &server,
        &["--name", "py-hello", &example("python/hello.py")],
    );
    deploy(&server, &["--name", "js-hello", &example("js/hello.js")]);
    for name in ["rust-hello", "c-hello", "py-hello", "js-hello"] {
        let hello = post(&url(name), "Kiln");
        assert_eq!(
            (hello.status, hello.body.as_str()),
            (200, "Hello, Kiln!\n"),
            "{name}"
        );
    }

    deploy(
        &server,
        &["--cgi", "--name", "c-sum", &c_example(&home, "sum")],
    );
    let sum = post(&url("c-sum"), "[1, 2, 39]");
    assert_eq!(
        (sum.status, sum.body.as_str()),
        (200, "{\"count\": 3, \"sum\": 42}\n")
    );
    assert_eq!(post(&url("c-sum"), "nope").status, 400);

    deploy(
        &server,
        &["--name", "py-todos", &example("python/todos.py")],
    );
    deploy(&server, &["--name", "js-todos", &example("js/todos.js")]);
    for name in ["py-todos", "js-todos"] {
        let open = get(&format!("{}?done=false", url(name)));
        assert_eq!(open.status, 200, "{name}: {}", open.body);
        let json: serde_json::Value = serde_json::from_str(&open.body).expect("json");
        assert_eq!(json["count"], 1, "{name}: {}", open.body);
        assert_eq!(json["todos"][0]["title"], "deploy it", "{name}");
        let created = post(&url(name), r#"{"title": "ship it"}"#);
        assert_eq!(created.status, 201, "{name}: {}", created.body);
        let json: serde_json::Value = serde_json::from_str(&created.body).expect("json");
        assert_eq!(
            (json["id"].clone(), json["title"].clone()),
            (3.into(), "ship it".into())
        );
        assert_eq!(post(&url(name), "not json").status, 400, "{name}");
    }
}
