//! Where the CLI finds its server and token: flags, then `KILN_URL` / `KILN_TOKEN`,
//! then the credentials file that `kiln up` writes on first start
//! (`$XDG_CONFIG_HOME/kiln/credentials.json`, else `~/.config/kiln/credentials.json`).

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the CLI talks to when nothing says otherwise.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:8080";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Credentials {
    pub url: String,
    pub tenant: String,
    pub token: String,
    pub admin_token: String,
}

pub(crate) fn path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kiln").join("credentials.json")
}

/// The credentials file, if there is one.
pub(crate) fn load() -> anyhow::Result<Option<Credentials>> {
    let path = path();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not a valid credentials file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the credentials file, readable by its owner only.
pub(crate) fn save(credentials: &Credentials) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(&serde_json::to_vec_pretty(credentials)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
