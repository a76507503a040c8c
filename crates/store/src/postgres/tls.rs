//! TLS to PostgreSQL, with rustls, as libpq's `sslmode` says (in the URL):
//!
//! | `sslmode` | encrypted | server certificate |
//! |---|---|---|
//! | `disable`, `prefer` (the default), none | no | — |
//! | `require` | yes | not checked; with `sslrootcert`, as `verify-ca` |
//! | `verify-ca` | yes | signed by `sslrootcert` (else the web's roots) |
//! | `verify-full` | yes | that, and issued for the URL's host |
//!
//! `sslrootcert=FILE` names the PEM file of the certificate authorities to
//! trust. `prefer` stays plain, as before TLS was supported: a server whose
//! certificate cannot be checked would otherwise stop a node that worked.
//! tokio-postgres knows only `disable`, `prefer` and `require`, so the two
//! `verify-*` modes and `sslrootcert` are taken out of the URL here.

use crate::error::{StoreError, StoreResult};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use tokio_postgres::config::SslMode;

/// How a node's connections to PostgreSQL are made.
#[derive(Clone)]
pub(crate) enum Tls {
    Plain,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

/// What the server's certificate must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Authority,
    AuthorityAndHost,
}

/// The connection settings of `url` and the TLS its `sslmode` asks for.
pub(crate) fn parse(url: &str) -> StoreResult<(tokio_postgres::Config, Tls)> {
    let invalid =
        |message: String| StoreError::Invalid(format!("invalid PostgreSQL URL: {message}"));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let (mut mode, mut root) = (None::<String>, None::<String>);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => mode = Some(value.to_owned()),
            Some(("sslrootcert", value)) => root = Some(value.to_owned()),
            _ => kept.push(pair),
        }
    }
    let check = match mode.as_deref() {
        None | Some("disable" | "prefer") => None,
        Some("require") if root.is_some() => Some(Check::Authority),
        Some("require") => Some(Check::Nothing),
        Some("verify-ca") => Some(Check::Authority),
        Some("verify-full") => Some(Check::AuthorityAndHost),
        Some(other) => {
            return Err(invalid(format!(
                "sslmode={other} (expected disable, prefer, require, verify-ca or verify-full)"
            )));
        }
    };
    let url = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| invalid(format!("{e}")))?;
    let Some(check) = check else {
        config.ssl_mode(SslMode::Disable);
        return Ok((config, Tls::Plain));
    };
    config.ssl_mode(SslMode::Require);
    let roots = match &root {
        Some(path) => authorities(path)?,
        None => rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        },
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::internal("TLS for PostgreSQL", e))?;
    let client = match check {
        Check::AuthorityAndHost => builder.with_root_certificates(roots),
        Check::Authority | Check::Nothing => {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| invalid(format!("sslrootcert: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    webpki,
                    provider,
                    check,
                }))
        }
    }
    .with_no_client_auth();
    Ok((
        config,
        Tls::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(client)),
    ))
}

/// The certificate authorities in the PEM file at `path`.
fn authorities(path: &str) -> StoreResult<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let unreadable = |e: &dyn std::fmt::Display| {
        StoreError::Invalid(format!("cannot read sslrootcert {path}: {e}"))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
        roots
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(unreadable(&"no certificate in it"));
    }
    Ok(roots)
}

/// `require` (no check) and `verify-ca` (the chain, not the name): what
/// libpq does, which rustls leaves to the caller. Handshake signatures are
/// always verified.
#[derive(Debug)]
struct Lenient {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    check: Check,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.check == Check::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_chooses_plain_or_tls_and_bad_values_are_refused() {
        for url in [
            "postgres://kiln@127.0.0.1:5432/db",
            "postgres://kiln@127.0.0.1:5432/db?sslmode=prefer",
            "postgres://kiln@127.0.0.1:5432/db?sslmode=disable&application_name=x",
        ] {
            let (config, tls) = parse(url).unwrap();
            assert!(matches!(tls, Tls::Plain), "{url}");
            assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        }
        for url in [
            "postgres://kiln@127.0.0.1:5432/db?sslmode=require",
            "postgres://kiln@127.0.0.1:5432/db?sslmode=verify-full",
            "postgres://kiln@127.0.0.1:5432/db?application_name=x&sslmode=verify-ca",
        ] {
            let (config, tls) = parse(url).unwrap();
            assert!(matches!(tls, Tls::Rustls(_)), "{url}");
            assert_eq!(config.get_ssl_mode(), SslMode::Require);
        }
        let (config, _) =
            parse("postgres://kiln@127.0.0.1:5432/db?application_name=x&sslmode=verify-ca")
                .unwrap();
        assert_eq!(config.get_application_name(), Some("x"));
        let bad = parse("postgres://kiln@h/db?sslmode=verify-nothing")
            .err()
            .unwrap();
        assert!(bad.to_string().contains("sslmode=verify-nothing"), "{bad}");
        let missing =
            parse("postgres://kiln@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem")
                .err()
                .unwrap();
        assert!(
            missing.to_string().contains("cannot read sslrootcert"),
            "{missing}"
        );
    }
}
