//! Names of tenants and functions. They appear in URLs (`/fn/{tenant}/{function}`)
//! and may one day be host names, so they are kept to a DNS label's alphabet.
//! The CLI checks a name before it builds a URL with it and the server checks it
//! again: both with [`check_name`].

use std::fmt;

/// What a name names, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameKind {
    /// A tenant (an account).
    Tenant,
    /// A function of a tenant.
    Function,
    /// A key-value bucket of a tenant.
    Bucket,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Tenant => "tenant",
            NameKind::Function => "function",
            NameKind::Bucket => "bucket",
        })
    }
}

/// A name outside the alphabet, with what was wrong and what to use instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {kind} name {name:?}: use 1-63 lower-case letters, digits and '-', not starting with '-'"
)]
pub struct InvalidName {
    /// What the name was for.
    pub kind: NameKind,
    /// The name as given.
    pub name: String,
}

/// Accepts lower-case ASCII letters, digits and `-`, not starting with `-`, 1 to 63
/// characters (a DNS label).
///
/// ```
/// use kiln_api::{NameKind, check_name};
/// assert!(check_name(NameKind::Function, "hello-2").is_ok());
/// assert!(check_name(NameKind::Function, "bad name!").is_err());
/// ```
pub fn check_name(kind: NameKind, name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    match ok {
        true => Ok(()),
        false => Err(InvalidName {
            kind,
            name: name.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["hello", "a", "my-fn-2", &"x".repeat(63)] {
            assert!(check_name(NameKind::Function, good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Hello",
            "-x",
            "a_b",
            "a/b",
            "a.b",
            "bad name!",
            &"x".repeat(64),
            "héllo",
        ] {
            let err = check_name(NameKind::Tenant, bad).unwrap_err();
            assert!(err.to_string().starts_with("invalid tenant name"), "{err}");
        }
    }
}
