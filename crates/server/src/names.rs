//! Names of tenants and functions: they appear in URLs, so they are kept to a
//! safe, readable alphabet.

use crate::error::ApiError;

/// Lower-case letters, digits and `-`, starting with a letter or digit, 1 to 63
/// characters (a DNS label, so host-based routing can use it later).
pub fn check(kind: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid {kind} name {name:?}: use 1-63 lower-case letters, digits and '-', \
             not starting with '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn names() {
        for good in ["hello", "a", "my-fn-2", &"x".repeat(63)] {
            assert!(check("function", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Hello",
            "-x",
            "a_b",
            "a/b",
            "a.b",
            &"x".repeat(64),
            "héllo",
        ] {
            assert!(check("function", bad).is_err(), "{bad}");
        }
    }
}
