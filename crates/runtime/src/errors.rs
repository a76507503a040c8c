//! The errors of starting a runtime and of compiling or loading a function.

use crate::streaming::BoxError;
use crate::validate::ValidationError;
use kiln_api::Digest;
use std::path::PathBuf;

/// Why a [`crate::Runtime`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// wasmtime refused the configuration (its reason is the source).
    #[error("cannot configure the WebAssembly engine")]
    Engine(#[source] BoxError),
    /// The artifact directory cannot be created or opened.
    #[error("cannot open the artifact cache at {path}")]
    ArtifactDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The thread that ticks epochs could not be started.
    #[error("cannot start the epoch ticker thread")]
    Ticker(#[source] std::io::Error),
    /// The scratch root cannot be created or cleaned.
    #[error("cannot open the scratch directory {path}")]
    ScratchDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a binary could not be compiled or a compiled function loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The binary is not one Kiln can run.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Cranelift could not compile it (the reason is the source).
    #[error("compilation failed")]
    Compile(#[source] BoxError),
    /// The caller stopped waiting; the result was thrown away.
    #[error("compilation was abandoned by its caller")]
    Abandoned,
    /// The module compiled, but an instance of it would not fit in a pooled slot
    /// (a table, or globals and functions, larger than the engine reserves).
    #[error("the module does not fit Kiln's instance limits: {0}")]
    Unfit(String),
    /// No artifact of this module in the cache.
    #[error("module {0} has no compiled artifact; compile it first")]
    NotCompiled(Digest),
    /// The artifact is there but the engine refuses it.
    #[error("compiled artifact {path} cannot be loaded: {message}")]
    BadArtifact {
        /// The artifact file.
        path: PathBuf,
        /// wasmtime's whole explanation.
        message: String,
        /// The innermost error, without the file it was read from.
        cause: String,
    },
    /// The artifact could not be written to the cache.
    #[error("cannot write the compiled artifact to {path}")]
    WriteArtifact {
        /// Where it was going.
        path: PathBuf,
        /// Why it could not.
        source: std::io::Error,
    },
    /// The baseline tier was asked of a runtime that keeps no baseline compiler.
    #[error("this runtime has no baseline compiler")]
    NoBaseline,
    /// The binary to compile could not be read.
    #[error("cannot read {path}")]
    ReadModule {
        /// The file.
        path: PathBuf,
        /// Why it could not be read or mapped.
        source: std::io::Error,
    },
}
