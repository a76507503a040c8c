//! Secrets encrypted at rest, by envelope: each value is sealed with a data key
//! of its own (AES-256-GCM, random nonce), and that data key is sealed with the
//! node's key-encryption key, which never reaches the store. Both seals bind
//! the secret's tenant and name as associated data, so a sealed value copied
//! to another row does not open.
//!
//! The key-encryption key is 32 random bytes, hex-encoded, from
//! `kiln up --secret-key-file FILE` or `KILN_SECRET_KEY`; on its embedded
//! store `kiln up` makes one (`secret.key` in the data directory, mode 0600)
//! when it has none. Nodes of a cluster must share it: a cluster node without
//! one refuses to store or read secrets, saying so.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use anyhow::Context;
use kiln_api::TenantId;
use std::path::Path;

/// Bytes of a key.
const KEY_BYTES: usize = 32;
/// Bytes of a nonce.
const NONCE_BYTES: usize = 12;
/// The sealed format's version, its first byte.
const VERSION: u8 = 1;
/// The environment variable holding the key, hex-encoded.
pub const SECRET_KEY_ENV: &str = "KILN_SECRET_KEY";

/// Why a secret cannot be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SecretError {
    #[error(
        "this server has no secret key: start it with --secret-key-file FILE or \
         {SECRET_KEY_ENV} (every node of a cluster with the same key)"
    )]
    NoKey,
    #[error("secret {0:?} cannot be opened with this server's secret key (was it changed?)")]
    Undecryptable(String),
}

/// The node's key-encryption key, if it has one.
pub(crate) struct SecretKeys {
    kek: Option<Aes256Gcm>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys")
            .field("has_key", &self.kek.is_some())
            .finish()
    }
}

/// Reads a hex-encoded 32-byte key.
fn parse_key(text: &str) -> anyhow::Result<[u8; KEY_BYTES]> {
    let text = text.trim();
    anyhow::ensure!(
        text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()),
        "a secret key is {} hexadecimal digits (e.g. `openssl rand -hex 32`)",
        2 * KEY_BYTES
    );
    let mut key = [0u8; KEY_BYTES];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)?;
    }
    Ok(key)
}

fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(bytes)
}

impl SecretKeys {
    /// The key from `file`, else from `env` (the variable's value), else, when
    /// `generated` names a file, from it (made on first use); else none.
    pub(crate) fn load(
        file: Option<&Path>,
        env: Option<String>,
        generated: Option<&Path>,
    ) -> anyhow::Result<SecretKeys> {
        let text = match (file, env, generated) {
            (Some(file), _, _) => Some(
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the secret key {}", file.display()))?,
            ),
            (None, Some(env), _) => Some(env),
            (None, None, Some(path)) => Some(Self::made(path)?),
            (None, None, None) => None,
        };
        let kek = match text {
            Some(text) => {
                let key = parse_key(&text).context("invalid secret key")?;
                Some(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)))
            }
            None => None,
        };
        Ok(SecretKeys { kek })
    }

    /// The key in `path`, made (0600) if there is none yet.
    fn made(path: &Path) -> anyhow::Result<String> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(text);
        }
        let key: [u8; KEY_BYTES] = random()?;
        let text: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create the secret key {}", path.display()))?;
        file.write_all(format!("{text}\n").as_bytes())?;
        file.sync_all()?;
        Ok(text)
    }

    fn kek(&self) -> Result<&Aes256Gcm, SecretError> {
        self.kek.as_ref().ok_or(SecretError::NoKey)
    }

    /// Seals `value` as `tenant`'s secret `name`.
    pub(crate) fn seal(
        &self,
        tenant: TenantId,
        name: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, SecretError> {
        let kek = self.kek()?;
        let aad = associated(tenant, name);
        let sealed = (|| -> anyhow::Result<Vec<u8>> {
            let dek: [u8; KEY_BYTES] = random()?;
            let dek_nonce: [u8; NONCE_BYTES] = random()?;
            let value_nonce: [u8; NONCE_BYTES] = random()?;
            let wrapped = kek
                .encrypt(
                    Nonce::from_slice(&dek_nonce),
                    Payload {
                        msg: &dek,
                        aad: &aad,
                    },
                )
                .map_err(|_| anyhow::anyhow!("sealing a data key"))?;
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&dek));
            let body = cipher
                .encrypt(
                    Nonce::from_slice(&value_nonce),
                    Payload {
                        msg: value,
                        aad: &aad,
                    },
                )
                .map_err(|_| anyhow::anyhow!("sealing a value"))?;
            let mut out = vec![VERSION];
            out.extend_from_slice(&dek_nonce);
            out.extend_from_slice(&wrapped);
            out.extend_from_slice(&value_nonce);
            out.extend_from_slice(&body);
            Ok(out)
        })();
        sealed.map_err(|_| SecretError::Undecryptable(name.to_owned()))
    }

    /// Opens what [`SecretKeys::seal`] sealed as `tenant`'s secret `name`.
    pub(crate) fn open(
        &self,
        tenant: TenantId,
        name: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SecretError> {
        let kek = self.kek()?;
        let aad = associated(tenant, name);
        let undecryptable = || SecretError::Undecryptable(name.to_owned());
        let wrapped_len = KEY_BYTES + 16;
        let (version, rest) = sealed.split_first().ok_or_else(undecryptable)?;
        if *version != VERSION || rest.len() < NONCE_BYTES + wrapped_len + NONCE_BYTES + 16 {
            return Err(undecryptable());
        }
        let (dek_nonce, rest) = rest.split_at(NONCE_BYTES);
        let (wrapped, rest) = rest.split_at(wrapped_len);
        let (value_nonce, body) = rest.split_at(NONCE_BYTES);
        let dek = kek
            .decrypt(
                Nonce::from_slice(dek_nonce),
                Payload {
                    msg: wrapped,
                    aad: &aad,
                },
            )
            .map_err(|_| undecryptable())?;
        let cipher = Aes256Gcm::new_from_slice(&dek).map_err(|_| undecryptable())?;
        cipher
            .decrypt(
                Nonce::from_slice(value_nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| undecryptable())
    }
}

/// The secrets `row`'s configuration grants, read and opened now (so that a
/// secret set a moment ago is the one a request sees): a granted secret that
/// was never set is absent, as an unset environment variable is.
pub(crate) async fn granted(
    store: &dyn kiln_store::MetadataStore,
    keys: &SecretKeys,
    row: &kiln_store::Deployment,
) -> Result<Vec<(String, String)>, GrantedError> {
    let sealed = store
        .secrets(row.tenant_id, row.config.secrets.clone())
        .await
        .map_err(GrantedError::Store)?;
    sealed
        .into_iter()
        .map(|(name, sealed)| {
            let value = keys
                .open(row.tenant_id, &name, &sealed)
                .map_err(GrantedError::Secret)?;
            // Values are set through the API as UTF-8 (an environment variable).
            let value = String::from_utf8_lossy(&value).into_owned();
            Ok((name, value))
        })
        .collect()
}

/// Why a request's secrets cannot be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GrantedError {
    #[error(transparent)]
    Store(kiln_store::StoreError),
    #[error(transparent)]
    Secret(SecretError),
}

/// What binds a sealed value to its row.
fn associated(tenant: TenantId, name: &str) -> Vec<u8> {
    format!("kiln-secret\0{tenant}\0{name}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SecretKeys {
        SecretKeys::load(None, Some("11".repeat(32)), None).expect("key")
    }

    #[test]
    fn a_sealed_secret_opens_only_as_itself_with_the_same_key() {
        let keys = keys();
        let sealed = keys.seal(7, "API_KEY", b"hunter2").expect("seal");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(keys.open(7, "API_KEY", &sealed).expect("open"), b"hunter2");
        // Another row, another key, a flipped bit: nothing opens.
        assert!(keys.open(8, "API_KEY", &sealed).is_err());
        assert!(keys.open(7, "OTHER", &sealed).is_err());
        let other = SecretKeys::load(None, Some("22".repeat(32)), None).expect("key");
        assert!(other.open(7, "API_KEY", &sealed).is_err());
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(keys.open(7, "API_KEY", &flipped).is_err());
        assert!(keys.open(7, "API_KEY", &sealed[..10]).is_err());
        // Two seals of one value differ (fresh keys and nonces).
        assert_ne!(keys.seal(7, "API_KEY", b"hunter2").expect("seal"), sealed);
    }

    #[test]
    fn no_key_and_bad_keys_are_clear_errors() {
        let none = SecretKeys::load(None, None, None).expect("no key");
        assert_eq!(none.seal(1, "A", b"v"), Err(SecretError::NoKey));
        let bad = SecretKeys::load(None, Some("abc".into()), None).unwrap_err();
        assert!(
            format!("{bad:#}").contains("64 hexadecimal digits"),
            "{bad:#}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        let made = SecretKeys::load(None, None, Some(&path)).expect("made");
        let sealed = made.seal(1, "A", b"v").expect("seal");
        let again = SecretKeys::load(None, None, Some(&path)).expect("read");
        assert_eq!(again.open(1, "A", &sealed).expect("open"), b"v");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
