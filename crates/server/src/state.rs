//! What every handler shares: the stores, the sandbox runtime, the settings, and
//! the two in-memory caches that keep the invoke path off the database.

use crate::logs::LogSink;
use kiln_runtime::{Digest, Function, Limits, LoadError, Runtime};
use kiln_store::{BlobStore, Deployment, MetadataStore, StoreResult};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Server settings the handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL printed in deploy answers, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    /// Largest module a deploy accepts.
    pub max_module_bytes: u64,
    /// Limits of a function that does not override them.
    pub default_limits: Limits,
}

/// Counters an operator (and the tests) can read at `GET /v1/status`.
#[derive(Default)]
pub struct Counters {
    /// Invocations running now.
    pub in_flight: AtomicU64,
    /// Modules compiled since this process started (deploys of new bytes, and
    /// start-up compiles of modules with no artifact).
    pub compiles: AtomicU64,
}

pub struct AppState {
    pub store: Arc<dyn MetadataStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub runtime: Arc<Runtime>,
    pub settings: Settings,
    pub deployments: DeploymentCache,
    pub functions: FunctionCache,
    pub logs: LogSink,
    pub counters: Arc<Counters>,
}

/// `(tenant, function)` → the deployment the invoke path runs. Filled on first
/// use, dropped by this node's deploys, rollbacks and deletes.
#[derive(Default)]
pub struct DeploymentCache {
    map: RwLock<HashMap<(String, String), Arc<Deployment>>>,
    /// Bumped by every `forget`: a lookup that raced with a change (read the old
    /// row, then the change forgot the entry) must not cache what it read.
    generation: AtomicU64,
}

impl DeploymentCache {
    pub async fn get(
        &self,
        store: &dyn MetadataStore,
        tenant: &str,
        function: &str,
    ) -> StoreResult<Option<Arc<Deployment>>> {
        let key = (tenant.to_owned(), function.to_owned());
        if let Some(hit) = self.read().get(&key) {
            return Ok(Some(hit.clone()));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some(found) = store.resolve(tenant, function).await? else {
            return Ok(None);
        };
        let found = Arc::new(found);
        let mut map = self.write();
        if self.generation.load(Ordering::Acquire) == generation {
            map.insert(key, found.clone());
        }
        Ok(Some(found))
    }

    pub fn forget(&self, tenant: &str, function: &str) {
        let mut map = self.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.remove(&(tenant.to_owned(), function.to_owned()));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(String, String), Arc<Deployment>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<(String, String), Arc<Deployment>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Module digest → loaded, pre-linked function. Loading maps the compiled
/// artifact from disk; it never compiles.
#[derive(Default)]
pub struct FunctionCache {
    map: RwLock<HashMap<Digest, Function>>,
}

impl FunctionCache {
    pub async fn get(&self, runtime: &Arc<Runtime>, digest: Digest) -> Result<Function, LoadError> {
        if let Some(hit) = self
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
        {
            return Ok(hit.clone());
        }
        let runtime = runtime.clone();
        let function = tokio::task::spawn_blocking(move || runtime.load(&digest))
            .await
            .map_err(|e| LoadError::Compile(format!("loader task failed: {e}")))??;
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest, function.clone());
        Ok(function)
    }
}
