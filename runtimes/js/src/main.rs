//! Kiln's JavaScript runtime: QuickJS-NG (through `rquickjs`) as a WASI command
//! that Kiln initializes once, at deploy, and snapshots.
//!
//! The protocol with the server (ARCHITECTURE.md, "Language runtimes"):
//!
//! - **At deploy** the server runs the export `wizer-initialize` with the user's
//!   code mounted read-only at `/app` and `KILN_ENTRY` naming the entry module.
//!   It evaluates the prelude (Request, Response, Headers, URL...), then the
//!   user's code. An ES module is a *handler*: its top level runs now, and the
//!   `fetch` of its default export serves every request. A classic script (no
//!   `import`, no `export`: the CGI style) is checked now and runs once per
//!   request. The initializer prints `handler` or `script` on stdout; an error
//!   goes to stderr and exits 1, and the deploy fails with it. Then the server
//!   snapshots the instance's memory: that snapshot is the function.
//! - **Per request** Kiln starts a fresh instance of the snapshot and `_start`
//!   ([`main`]) finds everything initialized: it runs the script, or builds a
//!   `Request` from the CGI variables and stdin, awaits `fetch`, and writes the
//!   `Response` as a CGI answer (`Status:` and headers, a blank line, the body).

use rquickjs::loader::{FileResolver, ScriptLoader};
use rquickjs::{
    ArrayBuffer, CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Promise,
    Runtime, Value,
};
use std::cell::RefCell;
use std::io::{Read, Write};
use std::process::ExitCode;

/// The prelude, evaluated before the user's code.
const PRELUDE: &str = include_str!("prelude.js");
/// Where the server mounts the user's code.
const APP_DIR: &str = "/app";
/// The global under which the prelude leaves its entry points for the host.
const HOOKS: &str = "__kilnRuntime";
/// Exit status of an initializer or a request that failed in JavaScript.
const FAILED: u8 = 1;

/// What `wizer-initialize` left for the requests: the engine and the user's code.
struct Initialized {
    /// Kept alive with the context: QuickJS frees its heap with the runtime.
    _runtime: Runtime,
    context: Context,
    code: Code,
}

/// The user's code, as the initializer found it.
enum Code {
    /// A module whose default export has `fetch`, evaluated; the export is kept
    /// in the prelude's hooks.
    Handler,
    /// A classic script (no `import`, no `export`): its source, checked at
    /// deploy and run once per request.
    Script(String),
}

unsafe extern "C" {
    /// wasi-libc's hook for snapshots: drops the environment read so far.
    fn __wasilibc_deinitialize_environ();
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    /// WASI's source of randomness (`random_get`), for `Math.random` and `crypto`.
    #[link_name = "random_get"]
    fn wasi_random_get(buf: *mut u8, len: usize) -> u16;
}

thread_local! {
    // wasm32-wasip1 has one thread: this is a plain static that the snapshot keeps.
    static STATE: RefCell<Option<Initialized>> = const { RefCell::new(None) };
}

/// The deploy-time initializer (run by the server, then removed from the snapshot).
#[unsafe(export_name = "wizer-initialize")]
pub extern "C" fn wizer_initialize() {
    match initialize() {
        Ok(state) => {
            // The environment read now is the deploy's: forget it, so that each
            // request reads its own (wasi-libc reads it again on first use).
            // SAFETY: no other thread, and no reference into `environ` is held.
            unsafe { __wasilibc_deinitialize_environ() };
            let style = match state.code {
                Code::Handler => "handler",
                Code::Script(_) => "script",
            };
            println!("{style}");
            STATE.with(|cell| *cell.borrow_mut() = Some(state));
        }
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(FAILED.into());
        }
    }
}

fn initialize() -> Result<Initialized, String> {
    let entry = std::env::var("KILN_ENTRY")
        .map_err(|_| "KILN_ENTRY is not set: the server names the entry module".to_owned())?;
    let source = std::fs::read(&entry).map_err(|e| format!("cannot read {entry}: {e}"))?;
    let runtime = Runtime::new().map_err(|e| format!("cannot start QuickJS: {e}"))?;
    runtime.set_loader(
        FileResolver::default().with_path(APP_DIR),
        ScriptLoader::default().with_extension("mjs"),
    );
    let context = Context::full(&runtime).map_err(|e| format!("cannot start QuickJS: {e}"))?;
    let name = entry.trim_start_matches(APP_DIR).trim_start_matches('/');
    let code = context.with(|ctx| -> Result<Code, String> {
        install_host(&ctx).catch(&ctx).map_err(|e| describe(&e))?;
        Module::evaluate(ctx.clone(), "kiln:prelude", PRELUDE)
            .and_then(|promise| promise.finish::<()>())
            .catch(&ctx)
            .map_err(|e| format!("the prelude failed: {}", describe(&e)))?;
        let source = String::from_utf8(source)
            .map_err(|_| format!("{name}: the source is not UTF-8 text"))?;
        // Compiling the source as the body of an async function (not running
        // it) tells a classic script from a module: `import` and `export` are
        // syntax errors there.
        let classic: rquickjs::Result<Value> = ctx
            .eval::<Function, _>("(async function () {}).constructor")
            .and_then(|async_function| async_function.call((source.as_str(),)));
        if classic.catch(&ctx).is_ok() {
            return Ok(Code::Script(source));
        }
        let module = Module::declare(ctx.clone(), name, source)
            .catch(&ctx)
            .map_err(|e| describe(&e))?;
        runtime_hooks(&ctx)
            .and_then(|hooks| hooks.get::<_, Function>("handlerMode")?.call::<_, ()>(()))
            .catch(&ctx)
            .map_err(|e| describe(&e))?;
        let (module, promise) = module.eval().catch(&ctx).map_err(|e| describe(&e))?;
        promise.finish::<()>().catch(&ctx).map_err(|e| describe(&e))?;
        let handler: Option<Object> = module.get("default").ok();
        let has_fetch = handler
            .as_ref()
            .is_some_and(|o| o.get::<_, Function>("fetch").is_ok());
        if !has_fetch {
            return Err(format!(
                "{name}: a module must export a handler: \
                 export default {{ async fetch(request) {{ return new Response(\"hi\") }} }}"
            ));
        }
        runtime_hooks(&ctx)
            .and_then(|hooks| hooks.set("handler", handler))
            .catch(&ctx)
            .map_err(|e| describe(&e))?;
        Ok(Code::Handler)
    })?;
    Ok(Initialized {
        _runtime: runtime,
        context,
        code,
    })
}

/// The object the prelude leaves for the host (a non-enumerable global).
fn runtime_hooks<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    ctx.globals().get(HOOKS)
}

/// `globalThis.__kiln`: the host functions the prelude is written on.
fn install_host(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let host = Object::new(ctx.clone())?;
    host.set("write", Function::new(ctx.clone(), write)?)?;
    host.set("stdin", Function::new(ctx.clone(), stdin)?)?;
    host.set("env", Function::new(ctx.clone(), env)?)?;
    host.set("utf8Encode", Function::new(ctx.clone(), utf8_encode)?)?;
    host.set("utf8Decode", Function::new(ctx.clone(), utf8_decode)?)?;
    host.set("random", Function::new(ctx.clone(), random)?)?;
    ctx.globals().set("__kiln", host)
}

/// `write(fd, text | ArrayBuffer)`: to stderr if `fd` is 2, else to stdout.
fn write(fd: i32, data: Value<'_>) -> rquickjs::Result<()> {
    let bytes = match data.as_string() {
        Some(text) => text.to_string()?.into_bytes(),
        None => ArrayBuffer::from_value(data)
            .and_then(|b| b.as_bytes().map(<[u8]>::to_vec))
            .unwrap_or_default(),
    };
    // A closed pipe cannot be reported anywhere better than by ignoring it.
    let _ = if fd == 2 {
        std::io::stderr().write_all(&bytes)
    } else {
        std::io::stdout().write_all(&bytes)
    };
    Ok(())
}

/// `stdin()`: the whole request body (an unreadable stdin is an empty body).
fn stdin<'js>(ctx: Ctx<'js>) -> rquickjs::Result<ArrayBuffer<'js>> {
    let mut body = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut body);
    ArrayBuffer::new(ctx, body)
}

/// `env()`: the environment variables, as an object.
fn env<'js>(ctx: Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    let env = Object::new(ctx)?;
    for (name, value) in std::env::vars() {
        env.set(name, value)?;
    }
    Ok(env)
}

fn utf8_encode<'js>(ctx: Ctx<'js>, text: String) -> rquickjs::Result<ArrayBuffer<'js>> {
    ArrayBuffer::new(ctx, text.into_bytes())
}

/// `random(n)`: `n` fresh random bytes from the host, as an ArrayBuffer. A
/// snapshot's PRNG state would repeat in every request: randomness is read anew.
fn random<'js>(ctx: Ctx<'js>, len: usize) -> rquickjs::Result<ArrayBuffer<'js>> {
    let mut bytes = vec![0u8; len.min(65_536)];
    // SAFETY: `bytes` is a live buffer of exactly that length.
    let errno = unsafe { wasi_random_get(bytes.as_mut_ptr(), bytes.len()) };
    if errno != 0 {
        return Err(rquickjs::Error::new_from_js_message("random", "bytes", "random_get failed"));
    }
    ArrayBuffer::new(ctx, bytes)
}

fn utf8_decode(buffer: ArrayBuffer<'_>) -> String {
    String::from_utf8_lossy(buffer.as_bytes().unwrap_or_default()).into_owned()
}

/// A JavaScript error as one message: its text, then its stack.
fn describe(error: &CaughtError<'_>) -> String {
    match error {
        CaughtError::Exception(e) => {
            let message = e.message().unwrap_or_default();
            let stack = e.stack().unwrap_or_default();
            format!("Uncaught {}: {message}\n{stack}", error_name(e))
                .trim_end()
                .to_owned()
        }
        other => format!("Uncaught {other}"),
    }
}

fn error_name(e: &rquickjs::Exception<'_>) -> String {
    e.get::<_, String>("name")
        .unwrap_or_else(|_| "Error".to_owned())
}

/// One request, from the snapshot.
fn main() -> ExitCode {
    STATE.with(|cell| {
        let state = cell.borrow();
        let Some(state) = state.as_ref() else {
            eprintln!("kiln-js: not initialized (deploy this runtime with `kiln deploy app.js`)");
            return ExitCode::from(FAILED);
        };
        state.context.with(|ctx| match &state.code {
            Code::Script(source) => run_script(&ctx, source),
            Code::Handler => serve(&ctx),
        })
    })
}

fn run_script(ctx: &Ctx<'_>, source: &str) -> ExitCode {
    let mut options = rquickjs::context::EvalOptions::default();
    options.promise = true;
    let run = ctx
        .eval_with_options::<Value, _>(source, options)
        .and_then(|value| match value.into_promise() {
            Some(promise) => promise.finish::<Value>().map(drop),
            None => Ok(()),
        })
        .catch(ctx);
    let _ = std::io::stdout().flush();
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", describe(&e));
            ExitCode::from(FAILED)
        }
    }
}

fn serve(ctx: &Ctx<'_>) -> ExitCode {
    let answer = runtime_hooks(ctx)
        .and_then(|hooks| {
            let serve: Function = hooks.get("serve")?;
            let handler: Value = hooks.get("handler")?;
            serve.call::<_, Promise>((handler,))
        })
        .and_then(|promise| {
            let answer: rquickjs::Array = promise.finish()?;
            let status: u16 = answer.get(0)?;
            let headers: Vec<Vec<String>> = answer.get(1)?;
            let body: ArrayBuffer = answer.get(2)?;
            Ok((status, headers, body))
        })
        .catch(ctx);
    let mut out = std::io::stdout().lock();
    let written = match answer {
        Ok((status, headers, body)) => {
            let mut head = format!("Status: {status}\r\n");
            for pair in headers {
                let [name, value] = &pair[..] else { continue };
                if value.contains(['\r', '\n']) {
                    eprintln!("kiln-js: header {name} dropped: its value has a line break");
                    continue;
                }
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            out.write_all(head.as_bytes())
                .and_then(|()| out.write_all(body.as_bytes().unwrap_or_default()))
        }
        Err(e) => {
            // The whole error goes to the function's log; the client gets one line.
            let message = describe(&e);
            eprintln!("{message}");
            let first = message.lines().next().unwrap_or("Uncaught error");
            out.write_all(
                format!("Status: 500\r\nContent-Type: text/plain\r\n\r\n{first}\n").as_bytes(),
            )
        }
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(FAILED),
    }
}
