//! The language runtimes this server is given (`kiln up --runtimes DIR`, built
//! by `scripts/runtimes`): `python.wasm`, a componentize-py component, with the
//! standard library in `python/`, and `js.wasm`, Kiln's QuickJS core module.
//! Each is read once and kept. `api/snapshot.rs` runs them at deploy.

use crate::error::{ApiError, ApiResult};
use axum::http::StatusCode;
use kiln_api::{ErrorCode, Language};
use kiln_runtime::{HostMount, WIZER_INITIALIZE};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The initializer a language's runtime exports.
pub(crate) fn init_func(language: Language) -> &'static str {
    match language {
        // componentize-py world `kiln:python/runtime`:
        // `export init: func() -> result<string, string>`.
        Language::Python => "init",
        Language::Js => WIZER_INITIALIZE,
    }
}

/// Host directories mounted read-only into every function of a language.
pub(crate) type LanguageMounts = HashMap<Language, Vec<HostMount>>;

/// The language runtimes this server has, read on first use and kept.
pub(crate) struct LanguageRuntimes {
    dir: Option<PathBuf>,
    loaded: Mutex<HashMap<Language, Arc<[u8]>>>,
}

impl LanguageRuntimes {
    /// The runtimes in `dir` (`python.wasm`, `js.wasm`); `None`: no runtimes.
    pub(crate) fn new(dir: Option<PathBuf>) -> LanguageRuntimes {
        LanguageRuntimes {
            dir,
            loaded: Mutex::default(),
        }
    }

    /// The file of `language`'s runtime.
    fn path(&self, language: Language) -> Option<PathBuf> {
        let path = self.dir.as_ref()?.join(format!("{}.wasm", language.name()));
        path.is_file().then_some(path)
    }

    /// What every function of each language sees besides its code: Python's
    /// standard library, `python/` beside the runtime, at `/python` (where
    /// componentize-py's CPython looks for it).
    pub(crate) fn mounts(&self) -> LanguageMounts {
        let mut mounts = LanguageMounts::new();
        if let Some(dir) = &self.dir {
            let stdlib = dir.join("python");
            if stdlib.is_dir() {
                mounts.insert(
                    Language::Python,
                    vec![HostMount {
                        host: stdlib,
                        guest: "/python".into(),
                        copy: false,
                    }],
                );
            }
        }
        mounts
    }

    /// The bytes of `language`'s runtime (read once).
    pub(crate) async fn wasm(&self, language: Language) -> ApiResult<Arc<[u8]>> {
        if let Some(wasm) = crate::sync::lock(&self.loaded).get(&language) {
            return Ok(wasm.clone());
        }
        let Some(path) = self.path(language) else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::NoRuntime,
                format!(
                    "this server has no {language} runtime: build the runtimes with \
                     scripts/runtimes and start kiln up with --runtimes DIR"
                ),
            ));
        };
        let wasm: Arc<[u8]> = tokio::fs::read(&path)
            .await
            .map_err(ApiError::internal)?
            .into();
        crate::sync::lock(&self.loaded).insert(language, wasm.clone());
        Ok(wasm)
    }
}
