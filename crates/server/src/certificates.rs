//! Custom domains' certificates: where they come from and how they are served.
//!
//! A [`CertificateProvider`] obtains a certificate for a domain; what it
//! obtains is checked ([`check_certificate`]: the key fits, the certificate
//! names the domain, it has not expired), its key sealed with the server's
//! secret key, and stored in the metadata store, so every node of a cluster
//! serves it. Kiln ships one provider, [`Uploaded`]: the tenant (or the
//! operator) uploads a PEM pair through `PUT /v1/domains/{domain}/certificate`
//! (`kiln domain cert DOMAIN --cert FILE --key FILE`). ARCHITECTURE.md says how
//! an ACME provider plugs in ([`CertificateProvider::obtain`], driven by
//! [`renewal_pass`]).
//!
//! Serving: [`SniCertificates`] holds the opened certificates by domain; the
//! HTTPS resolver (`tls.rs`) asks it for the handshake's SNI name first and
//! falls back to the server's own certificate.

use crate::secrets::SecretKeys;
use crate::sync::lock;
use async_trait::async_trait;
use kiln_api::{CertificateUpload, TenantId};
use kiln_store::{StoredCertificate, StoredDomain};
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Largest PEM upload (a chain and a key), in bytes.
pub(crate) const MAX_PEM_BYTES: usize = 64 * 1024;

/// A certificate whose renewal is due: this many seconds before it expires.
pub(crate) const RENEW_BEFORE: i64 = 30 * 24 * 3600;

/// The domains' certificates this node serves, by domain.
#[derive(Debug, Default)]
pub(crate) struct SniCertificates(Mutex<Arc<HashMap<String, Arc<CertifiedKey>>>>);

impl SniCertificates {
    /// The certificate of `server_name` (an SNI name, any case), if its domain
    /// has one.
    pub(crate) fn get(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let table = lock(&self.0).clone();
        match table.is_empty() {
            true => None,
            false => table.get(&server_name.to_ascii_lowercase()).cloned(),
        }
    }

    pub(crate) fn replace(&self, certificates: HashMap<String, Arc<CertifiedKey>>) {
        *lock(&self.0) = Arc::new(certificates);
    }
}

/// A certificate that passed [`check_certificate`].
pub(crate) struct CheckedCertificate {
    pub(crate) names: Vec<String>,
    pub(crate) not_after: i64,
}

/// Checks a PEM pair for `domain`: a chain and a private key rustls can sign
/// with, the key the leaf's, the leaf naming `domain` (exactly or by a
/// `*.` wildcard of its parent), and not expired at `now`.
pub(crate) fn check_certificate(
    domain: &str,
    pem: &CertificateUpload,
    now: i64,
) -> Result<(CertifiedKey, CheckedCertificate), String> {
    if pem.cert_pem.len() + pem.key_pem.len() > MAX_PEM_BYTES {
        return Err(format!(
            "the certificate and key are over {MAX_PEM_BYTES} bytes"
        ));
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pem.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot read the certificate PEM: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err("no certificate in the certificate PEM".into());
    };
    let key = PrivateKeyDer::from_pem_slice(pem.key_pem.as_bytes())
        .map_err(|e| format!("no private key in the key PEM ({e})"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let not_after = parsed.validity().not_after.timestamp();
    if not_after <= now {
        return Err(format!(
            "the certificate expired at {}",
            kiln_api::rfc3339(not_after)
        ));
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if !names.iter().any(|name| covers(name, domain)) {
        return Err(format!(
            "the certificate is not for {domain} (it names: {})",
            match names.is_empty() {
                true => "no DNS name".to_owned(),
                false => names.join(", "),
            }
        ));
    }
    let certified = CertifiedKey::from_der(chain, key, &provider::default_provider())
        .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
    Ok((certified, CheckedCertificate { names, not_after }))
}

/// Whether the certificate name `name` covers `domain`.
fn covers(name: &str, domain: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(parent) => domain
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => name == domain,
    }
}

/// What the key of `domain`'s certificate is sealed as (bound to its tenant).
fn key_name(domain: &str) -> String {
    format!("tls-key:{domain}")
}

/// Checks `pem` for `domain` of `tenant` and seals its key: what the store keeps.
pub(crate) fn seal_certificate(
    keys: &SecretKeys,
    tenant: TenantId,
    domain: &str,
    pem: &CertificateUpload,
    source: &str,
    now: i64,
) -> Result<StoredCertificate, String> {
    let (_, checked) = check_certificate(domain, pem, now)?;
    let key_sealed = keys
        .seal(tenant, &key_name(domain), pem.key_pem.as_bytes())
        .map_err(|e| format!("cannot seal the private key: {e}"))?;
    Ok(StoredCertificate {
        chain_pem: pem.cert_pem.clone(),
        key_sealed,
        names: checked.names,
        not_after: checked.not_after,
        source: source.to_owned(),
        updated_at: now,
    })
}

/// Opens a stored certificate for serving.
pub(crate) fn open_certificate(
    keys: &SecretKeys,
    tenant: TenantId,
    domain: &str,
    stored: &StoredCertificate,
) -> Result<CertifiedKey, String> {
    let key = keys
        .open(tenant, &key_name(domain), &stored.key_sealed)
        .map_err(|e| e.to_string())?;
    let pem = CertificateUpload {
        cert_pem: stored.chain_pem.clone(),
        key_pem: String::from_utf8(key).map_err(|_| "the sealed key is not PEM".to_owned())?,
    };
    // Checked again as of its upload (an expired one is still served, as the
    // server's own would be: the client decides).
    check_certificate(domain, &pem, stored.updated_at).map(|(certified, _)| certified)
}

/// A source of certificates for custom domains.
#[async_trait]
pub(crate) trait CertificateProvider: Send + Sync {
    /// Its name, stored with every certificate it provides.
    fn name(&self) -> &'static str;
    /// A certificate for `domain`, obtained now, or `None` if this provider
    /// does not issue on its own (its certificates arrive another way).
    async fn obtain(&self, domain: &str) -> anyhow::Result<Option<CertificateUpload>>;
}

/// Certificates uploaded through the API: nothing is obtained on its own.
pub(crate) struct Uploaded;

/// The name of [`Uploaded`].
pub(crate) const UPLOADED: &str = "upload";

#[async_trait]
impl CertificateProvider for Uploaded {
    fn name(&self) -> &'static str {
        UPLOADED
    }

    async fn obtain(&self, _domain: &str) -> anyhow::Result<Option<CertificateUpload>> {
        Ok(None)
    }
}

/// Asks `provider` for a certificate for every domain whose own is missing
/// or expires within [`RENEW_BEFORE`] of `now`; answers those it obtained.
/// A domain it obtains none for keeps what it has (its certificate, or the
/// server's), and an expiring certificate is logged.
pub(crate) async fn renewal_pass(
    domains: &[StoredDomain],
    provider: &dyn CertificateProvider,
    now: i64,
) -> Vec<(String, CertificateUpload)> {
    let mut obtained = Vec::new();
    for domain in domains {
        let not_after = domain.certificate.as_ref().map(|c| c.not_after);
        if not_after.is_some_and(|t| t - now > RENEW_BEFORE) {
            continue;
        }
        match provider.obtain(&domain.domain).await {
            Ok(Some(pem)) => obtained.push((domain.domain.clone(), pem)),
            Ok(None) => {
                if let Some(t) = not_after {
                    tracing::warn!(
                        domain = %domain.domain,
                        expires = %kiln_api::rfc3339(t),
                        provider = provider.name(),
                        "this domain's certificate expires soon; upload a new one"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(domain = %domain.domain, error = %e, "cannot obtain a certificate")
            }
        }
    }
    obtained
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("api.example.com", "api.example.com"));
        assert!(covers("*.example.com", "api.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("example.com", "api.example.com"));
    }
}
