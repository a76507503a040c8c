//! Secrets: named values a tenant stores encrypted, and grants to its
//! functions by name (`secret=NAME`, repeatable). A function sees a granted
//! secret as an environment variable of that name and, for components, in
//! `wasi:config`; nothing else ever shows its value.

use serde::{Deserialize, Serialize};

/// The most bytes one secret's value may hold.
pub const MAX_SECRET_BYTES: usize = 64 << 10;

/// A secret name refused, with what to use instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid secret name {0:?}: use 1-64 ASCII letters, digits and '_', not starting with a digit \
     (it becomes an environment variable)"
)]
pub struct InvalidSecretName(pub String);

/// Accepts an environment variable's name: ASCII letters, digits and `_`, not
/// starting with a digit, 1 to 64 characters.
///
/// ```
/// assert!(kiln_api::check_secret_name("STRIPE_KEY").is_ok());
/// assert!(kiln_api::check_secret_name("1PASSWORD").is_err());
/// ```
pub fn check_secret_name(name: &str) -> Result<(), InvalidSecretName> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    match ok {
        true => Ok(()),
        false => Err(InvalidSecretName(name.to_owned())),
    }
}

/// A secret as `GET /v1/secrets` lists it: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// When it was last set, in seconds since the Unix epoch.
    pub updated_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_environment_variable_names() {
        for good in ["A", "api_key", "_X1", &"K".repeat(64)] {
            assert!(check_secret_name(good).is_ok(), "{good}");
        }
        for bad in ["", "9LIVES", "A-B", "A B", "É", &"K".repeat(65)] {
            assert!(check_secret_name(bad).is_err(), "{bad}");
        }
    }
}
