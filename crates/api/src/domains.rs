//! Custom domains: a host name an operator grants to one tenant, whose requests
//! are served by that tenant's functions by path prefix (routes), over a
//! certificate of its own chosen by SNI. The names, the prefixes and the
//! `/v1/domains` bodies.

use serde::{Deserialize, Serialize};

/// Longest host name (RFC 1035).
pub const MAX_DOMAIN: usize = 253;

/// Most routes one domain may have.
pub const MAX_ROUTES: usize = 64;

/// Longest route prefix.
pub const MAX_PREFIX: usize = 256;

/// A domain name or a route prefix that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDomain {
    /// Not a host name Kiln serves.
    #[error(
        "invalid domain {0:?}: use a host name of two or more dot-separated labels of letters, \
         digits and '-' (e.g. api.example.com), not an address"
    )]
    Name(String),
    /// Not a path prefix.
    #[error(
        "invalid route prefix {0:?}: use an absolute path such as /api (or /api/*), without \
         '.', '..', '?', '#' or '%' segments"
    )]
    Prefix(String),
}

/// The canonical form of a host name (lower case, without a trailing dot),
/// if it is one Kiln may serve: two or more labels of 1-63 letters, digits
/// and `-` (not at a label's ends), the last not all digits (no IPv4
/// address), 253 characters at most.
///
/// ```
/// assert_eq!(kiln_api::check_domain("API.Example.com.").unwrap(), "api.example.com");
/// assert!(kiln_api::check_domain("127.0.0.1").is_err());
/// assert!(kiln_api::check_domain("localhost").is_err());
/// ```
pub fn check_domain(name: &str) -> Result<String, BadDomain> {
    let bad = || BadDomain::Name(name.to_owned());
    let lower = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if lower.is_empty() || lower.len() > MAX_DOMAIN {
        return Err(bad());
    }
    let labels: Vec<&str> = lower.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let last_numeric = labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    match labels.len() >= 2 && labels.iter().all(label_ok) && !last_numeric {
        true => Ok(lower),
        false => Err(bad()),
    }
}

/// The canonical form of a route prefix: `/api`, `/api/` and `/api/*` are all
/// `/api`; `/`, `/*` and the empty string are `/`. A prefix matches its own
/// path and the paths under it (`/api` matches `/api` and `/api/users`, not
/// `/apix`).
///
/// ```
/// assert_eq!(kiln_api::check_prefix("/api/*").unwrap(), "/api");
/// assert_eq!(kiln_api::check_prefix("/*").unwrap(), "/");
/// assert!(kiln_api::check_prefix("/a/../b").is_err());
/// ```
pub fn check_prefix(prefix: &str) -> Result<String, BadDomain> {
    let bad = || BadDomain::Prefix(prefix.to_owned());
    let trimmed = prefix.strip_suffix('*').unwrap_or(prefix);
    let trimmed = trimmed.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    if !trimmed.starts_with('/') || trimmed.len() > MAX_PREFIX {
        return Err(bad());
    }
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"?#%*".contains(&b))
    };
    match trimmed[1..].split('/').all(segment_ok) {
        true => Ok(trimmed.to_owned()),
        false => Err(bad()),
    }
}

/// Whether the request path `path` falls under the canonical `prefix`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `PUT /v1/admin/domains/{domain}`: the tenant the operator grants it to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainGrant {
    /// The tenant's name.
    pub tenant: String,
}

/// `PUT /v1/domains/{domain}/routes`: serve `prefix` with `function`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRequest {
    /// The path prefix (`/`, `/api`, `/api/*`).
    pub prefix: String,
    /// A function of the domain's tenant.
    pub function: String,
}

/// One route of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The canonical prefix.
    pub prefix: String,
    /// The function serving it.
    pub function: String,
}

/// `PUT /v1/domains/{domain}/certificate`: a certificate chain and its private
/// key, PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateUpload {
    /// The certificate, then its intermediates.
    pub cert_pem: String,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
}

/// What `/v1/domains` says of a domain's certificate (never its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// The names the certificate is for.
    pub names: Vec<String>,
    /// When it expires, seconds since the Unix epoch.
    pub not_after: i64,
    /// Where it came from (`upload`, or another provider's name).
    pub source: String,
    /// When it was stored.
    pub updated_at: i64,
}

/// One of `GET /v1/domains`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// The domain, canonical.
    pub domain: String,
    /// The tenant it is granted to.
    pub tenant: String,
    /// Its routes, longest prefix first.
    pub routes: Vec<Route>,
    /// Its own certificate, if it has one (else the server's is served).
    pub certificate: Option<CertificateInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_host_names_in_canonical_form() {
        assert_eq!(check_domain("Api.Example.COM").unwrap(), "api.example.com");
        assert_eq!(check_domain("a-b.c9.io.").unwrap(), "a-b.c9.io");
        for bad in [
            "",
            "com",
            "localhost",
            "10.0.0.1",
            "[::1]",
            "a..b",
            "-a.com",
            "a-.com",
            "a.com:443",
            "a b.com",
            "*.example.com",
            "ex_ample.com",
        ] {
            assert!(check_domain(bad).is_err(), "{bad:?}");
        }
        assert!(check_domain(&format!("{}.com", "a".repeat(64))).is_err());
        assert!(check_domain(&format!("{}com", "a.".repeat(130))).is_err());
    }

    #[test]
    fn prefixes_match_whole_segments() {
        for (given, canonical) in [
            ("/", "/"),
            ("", "/"),
            ("/*", "/"),
            ("/api/*", "/api"),
            ("/api/", "/api"),
            ("/a/b", "/a/b"),
        ] {
            assert_eq!(check_prefix(given).unwrap(), canonical, "{given}");
        }
        for bad in [
            "api", "/a/../b", "/a/./b", "/a//b", "/a?b", "/a%2f", "/a b", "/a/*/b",
        ] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/users"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(!prefix_matches("/api", "/"));
    }
}
