//! `kiln compile FILE.wasm`: validate and compile a module into the artifact cache
//! (what a deploy does), reporting how long it took.

use super::{ArtifactArgs, read_module};
use kiln_api::ByteCount;
use std::path::PathBuf;
use std::process::ExitCode;

/// Validate and compile a module ahead of time into the artifact cache
#[derive(clap::Args, Debug)]
pub(crate) struct CompileArgs {
    /// The WebAssembly module
    file: PathBuf,
    /// Also copy the compiled artifact here
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    artifacts: ArtifactArgs,
}

pub(crate) fn run(args: CompileArgs) -> anyhow::Result<ExitCode> {
    let wasm = read_module(&args.file)?;
    let runtime = args.artifacts.runtime()?;
    let name = args.file.display();
    let compiled = runtime
        .compile(&wasm)
        .map_err(|e| anyhow::Error::new(e).context(name.to_string()))?;
    // The artifact's file is written behind the compile: on disk before exit.
    runtime.flush_artifacts();
    let size = ByteCount(compiled.info.size);
    match compiled.compile_time {
        Some(time) => println!(
            "compiled {name} ({size}) in {:.1} ms -> {}",
            time.as_secs_f64() * 1000.0,
            compiled.artifact.display()
        ),
        None => println!(
            "{name} ({size}) is already compiled -> {}",
            compiled.artifact.display()
        ),
    }
    if let Some(output) = args.output {
        std::fs::copy(&compiled.artifact, &output)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
