//! `wasi:keyvalue` 0.2.0-draft (`store`, `atomics`, `batch`; WIT in
//! `wit/keyvalue`) for components, over the invocation's [`crate::kv::KvGrant`]. A
//! component without a grant can still import the interfaces: every `open`
//! answers `no-such-store`.

use crate::function::ComponentHost;
use crate::kv::{KeyValue, KvError};
use kiln_api::KvWrite;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, Resource};

/// The interfaces, as components import them.
pub(crate) const INTERFACES: &[&str] = &[
    "wasi:keyvalue/store@0.2.0-draft",
    "wasi:keyvalue/atomics@0.2.0-draft",
    "wasi:keyvalue/batch@0.2.0-draft",
];

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::OpenBucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::HostError,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// A bucket a component opened: its name, checked against the grant.
#[allow(unreachable_pub)] // `pub`: the generated bindings re-export it.
pub struct OpenBucket {
    name: String,
}

/// A host call's failure: an error for the guest, or a trap.
#[allow(unreachable_pub)] // `pub`: the generated bindings re-export it.
pub enum HostError {
    /// Told to the guest as `wasi:keyvalue/store.error`.
    Guest(KvError),
    /// Ends the invocation (a bad resource handle).
    Trap(wasmtime::Error),
}

impl From<KvError> for HostError {
    fn from(e: KvError) -> HostError {
        HostError::Guest(e)
    }
}

impl From<wasmtime::component::ResourceTableError> for HostError {
    fn from(e: wasmtime::component::ResourceTableError) -> HostError {
        HostError::Trap(e.into())
    }
}

/// Adds the three interfaces to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<ComponentHost>) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasSelf<ComponentHost>>(linker, |host| host)?;
    atomics::add_to_linker::<_, HasSelf<ComponentHost>>(linker, |host| host)?;
    batch::add_to_linker::<_, HasSelf<ComponentHost>>(linker, |host| host)?;
    Ok(())
}

impl ComponentHost {
    fn kv(&self) -> Result<Arc<dyn KeyValue>, HostError> {
        self.kv
            .clone()
            .ok_or_else(|| KvError::NotGranted(String::new()).into())
    }

    fn bucket(&self, bucket: &Resource<OpenBucket>) -> Result<String, HostError> {
        Ok(self.wasi.table.get(bucket)?.name.clone())
    }
}

impl store::Host for ComponentHost {
    async fn open(&mut self, identifier: String) -> Result<Resource<OpenBucket>, HostError> {
        match &self.kv {
            Some(kv) => kv.open(&identifier)?,
            None => return Err(KvError::NotGranted(identifier).into()),
        }
        Ok(self.wasi.table.push(OpenBucket { name: identifier })?)
    }

    fn convert_error(&mut self, err: HostError) -> wasmtime::Result<store::Error> {
        match err {
            HostError::Guest(KvError::NotGranted(_)) => Ok(store::Error::NoSuchStore),
            HostError::Guest(e) => Ok(store::Error::Other(e.to_string())),
            HostError::Trap(trap) => Err(trap),
        }
    }
}

impl store::HostBucket for ComponentHost {
    async fn get(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, HostError> {
        let name = self.bucket(&bucket)?;
        self.kv_ops.reads += 1;
        Ok(self.kv()?.get(&name, &key).await?)
    }

    async fn set(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), HostError> {
        let name = self.bucket(&bucket)?;
        self.kv_ops.writes += 1;
        Ok(self
            .kv()?
            .write(&name, vec![KvWrite::Set { key, value }])
            .await?)
    }

    async fn delete(&mut self, bucket: Resource<OpenBucket>, key: String) -> Result<(), HostError> {
        let name = self.bucket(&bucket)?;
        self.kv_ops.writes += 1;
        Ok(self
            .kv()?
            .write(&name, vec![KvWrite::Delete { key }])
            .await?)
    }

    async fn exists(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> Result<bool, HostError> {
        let name = self.bucket(&bucket)?;
        self.kv_ops.reads += 1;
        Ok(self.kv()?.exists(&name, &key).await?)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<OpenBucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, HostError> {
        let name = self.bucket(&bucket)?;
        self.kv_ops.reads += 1;
        let page = self.kv()?.list(&name, cursor).await?;
        Ok(store::KeyResponse {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    async fn drop(&mut self, bucket: Resource<OpenBucket>) -> wasmtime::Result<()> {
        self.wasi.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for ComponentHost {
    async fn increment(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, HostError> {
        let name = self.bucket(&bucket)?;
        self.kv_ops.writes += 1;
        Ok(self.kv()?.increment(&name, &key, delta).await?)
    }
}

impl batch::Host for ComponentHost {
    async fn get_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, HostError> {
        let name = self.bucket(&bucket)?;
        self.kv_ops.reads += keys.len() as u64;
        let values = self.kv()?.get_many(&name, keys.clone()).await?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(key, value)| value.map(|v| (key, v)))
            .collect())
    }

    async fn set_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), HostError> {
        let name = self.bucket(&bucket)?;
        let writes = key_values
            .into_iter()
            .map(|(key, value)| KvWrite::Set { key, value })
            .collect::<Vec<_>>();
        self.kv_ops.writes += writes.len() as u64;
        Ok(self.kv()?.write(&name, writes).await?)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> Result<(), HostError> {
        let name = self.bucket(&bucket)?;
        let writes = keys
            .into_iter()
            .map(|key| KvWrite::Delete { key })
            .collect::<Vec<_>>();
        self.kv_ops.writes += writes.len() as u64;
        Ok(self.kv()?.write(&name, writes).await?)
    }
}
