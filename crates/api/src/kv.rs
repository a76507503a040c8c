//! Key-value state: the names of a tenant's buckets, what a key may be, the
//! limits on keys and values, and the JSON of `/v1/kv`.
//!
//! A bucket belongs to a tenant; a deployment names the buckets it may open
//! (`kv=NAME`, repeatable), and the name a function opens is always resolved
//! inside its own tenant, so no name reaches another tenant's data.

use crate::names::{InvalidName, NameKind, check_name};
use crate::units::{KIB, MIB};
use serde::{Deserialize, Serialize};

/// Checks a bucket name: the alphabet of tenant and function names (1-63
/// lower-case letters, digits and `-`).
pub fn check_bucket(name: &str) -> Result<(), InvalidName> {
    check_name(NameKind::Bucket, name)
}

/// The sizes a key and a value may have, and the keys a listing returns at
/// most. The server's defaults are [`KvLimits::default`]; `kiln up` overrides
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvLimits {
    /// Longest key, in bytes of UTF-8.
    pub max_key_bytes: u64,
    /// Largest value, in bytes.
    pub max_value_bytes: u64,
    /// Most keys one `list-keys` page returns.
    pub page_keys: u32,
}

impl Default for KvLimits {
    fn default() -> KvLimits {
        KvLimits {
            max_key_bytes: KIB,
            max_value_bytes: MIB,
            page_keys: 1000,
        }
    }
}

/// A key or value refused by [`KvLimits`], said so that a user can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadKv {
    /// The empty key.
    #[error("a key may not be empty")]
    EmptyKey,
    /// A key with a NUL character (no store keeps them faithfully).
    #[error("a key may not contain the NUL character")]
    NulInKey,
    /// A key over [`KvLimits::max_key_bytes`].
    #[error("key of {len} bytes is over the limit of {limit} bytes")]
    KeyTooLong {
        /// The key's length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A value over [`KvLimits::max_value_bytes`].
    #[error("value of {len} bytes is over the limit of {limit} bytes")]
    ValueTooLarge {
        /// The value's length.
        len: u64,
        /// The limit.
        limit: u64,
    },
}

impl KvLimits {
    /// Whether `key` may be stored: 1 to `max_key_bytes` bytes of UTF-8
    /// without NUL (any other character is allowed, `/` included).
    ///
    /// ```
    /// let limits = kiln_api::KvLimits::default();
    /// assert!(limits.check_key("users/42").is_ok());
    /// assert!(limits.check_key("").is_err());
    /// ```
    pub fn check_key(&self, key: &str) -> Result<(), BadKv> {
        let len = key.len() as u64;
        if len == 0 {
            return Err(BadKv::EmptyKey);
        }
        if len > self.max_key_bytes {
            return Err(BadKv::KeyTooLong {
                len,
                limit: self.max_key_bytes,
            });
        }
        if key.contains('\0') {
            return Err(BadKv::NulInKey);
        }
        Ok(())
    }

    /// Whether a value of `len` bytes may be stored.
    pub fn check_value(&self, len: usize) -> Result<(), BadKv> {
        let len = len as u64;
        match len > self.max_value_bytes {
            true => Err(BadKv::ValueTooLarge {
                len,
                limit: self.max_value_bytes,
            }),
            false => Ok(()),
        }
    }
}

/// The bytes a stored pair counts against a tenant's storage quota: its key
/// and its value.
pub fn stored_bytes(key: &str, value_len: usize) -> u64 {
    (key.len() + value_len) as u64
}

/// One write of a batch, applied with the others or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWrite {
    /// Sets `key` to `value`.
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: Vec<u8>,
    },
    /// Deletes `key` (nothing if it is absent).
    Delete {
        /// The key.
        key: String,
    },
}

impl KvWrite {
    /// The key written.
    pub fn key(&self) -> &str {
        match self {
            KvWrite::Set { key, .. } | KvWrite::Delete { key } => key,
        }
    }
}

/// A tenant's bucket, in `GET /v1/kv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvBucket {
    /// The bucket's name.
    pub name: String,
    /// Keys in it.
    pub keys: u64,
    /// Bytes of its keys and values.
    pub bytes: u64,
}

/// One page of a bucket's keys, in the order they were first set; `cursor`
/// continues the listing (absent: it is complete). A key present for the whole
/// listing appears in exactly one page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvKeys {
    /// The keys of this page.
    pub keys: Vec<String>,
    /// Where the next page starts, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
}

/// What a tenant stores, against its quota (`GET /v1/kv`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvUsage {
    /// Keys in all its buckets.
    pub keys: u64,
    /// Bytes of those keys and their values.
    pub bytes: u64,
}

/// `GET /v1/kv`: a tenant's buckets, what it stores and what it may store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvOverview {
    /// Its buckets that hold keys, by name.
    pub buckets: Vec<KvBucket>,
    /// What it stores in all of them.
    pub used: KvUsage,
    /// The most it may store (its quota, or the server's default).
    pub quota: KvUsage,
}

/// The most a tenant may store: [`crate::Quota`]'s fields, or the server's
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCaps {
    /// Keys in all its buckets.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

impl Default for KvCaps {
    fn default() -> KvCaps {
        KvCaps {
            keys: 1_000_000,
            bytes: crate::GIB,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_by_length_in_bytes_and_for_nul() {
        let limits = KvLimits {
            max_key_bytes: 4,
            ..KvLimits::default()
        };
        assert_eq!(limits.check_key(""), Err(BadKv::EmptyKey));
        assert!(limits.check_key("abcd").is_ok());
        assert_eq!(
            limits.check_key("é/é"),
            Err(BadKv::KeyTooLong { len: 5, limit: 4 })
        );
        assert_eq!(limits.check_key("a\0"), Err(BadKv::NulInKey));
        assert!(limits.check_value(MIB as usize).is_ok());
        assert!(limits.check_value(MIB as usize + 1).is_err());
    }

    #[test]
    fn bucket_names_use_the_name_alphabet() {
        assert!(check_bucket("sessions").is_ok());
        let err = check_bucket("Other/Tenant").unwrap_err();
        assert!(err.to_string().contains("invalid bucket name"), "{err}");
    }
}
