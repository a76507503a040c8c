//! HTTPS for `kiln up --tls-cert FILE --tls-key FILE`: rustls with its safe
//! defaults (TLS 1.3 preferred, 1.2 allowed, AEAD suites only), HTTP/2 and
//! HTTP/1.1 offered by ALPN. The certificate is held by a resolver that can
//! be swapped while serving: [`watch`] reloads it when its files change (looked
//! at every [`RELOAD_CHECK`]) or on SIGHUP. A handshake in progress or a
//! connection already open keeps the certificate it started with; a bad pair
//! of files at start is a clear error, and at a reload is logged and ignored
//! (the old certificate stays). A custom domain with a certificate of its own
//! (`certificates.rs`) gets it when the handshake names it by SNI.

use crate::certificates::SniCertificates;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;

/// How often the certificate's files are looked at for a change.
pub(crate) const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The certificate chain and private key files (PEM) of `--tls-cert` and
/// `--tls-key`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or held no PEM item of the kind wanted.
    #[error("{}: {why}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The key is not one rustls can sign with, or is not the certificate's.
    #[error("the key in {} does not fit the certificate in {}: {why}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        why: String,
    },
}

impl TlsFiles {
    /// Reads and checks the pair.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let file_error = |path: &Path, why: String| TlsError::File {
            path: path.to_owned(),
            why,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| file_error(&self.cert, e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_error(&self.cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(file_error(&self.cert, "no certificate in it".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| file_error(&self.key, format!("no private key in it ({e})")))?;
        let mismatch = |why: String| TlsError::Mismatch {
            cert: self.cert.clone(),
            key: self.key.clone(),
            why,
        };
        let certified = CertifiedKey::from_der(chain, key, &provider::default_provider())
            .map_err(|e| mismatch(e.to_string()))?;
        Ok(certified)
    }

    /// When either file last changed (`None` if one cannot be read).
    fn changed(&self) -> Option<(SystemTime, SystemTime)> {
        let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Some((modified(&self.cert)?, modified(&self.key)?))
    }
}

/// The certificate a handshake gets: its SNI name's custom domain's own, or
/// the server's, which is swappable while serving.
#[derive(Debug)]
pub(crate) struct CurrentCertificate {
    server: RwLock<Arc<CertifiedKey>>,
    domains: Arc<SniCertificates>,
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(own) = hello.server_name().and_then(|name| self.domains.get(name)) {
            return Some(own);
        }
        Some(
            self.server
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

impl CurrentCertificate {
    fn replace(&self, certified: CertifiedKey) {
        *self.server.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
    }
}

/// The acceptor of the HTTPS listener, and the certificate it serves.
pub(crate) struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) current: Arc<CurrentCertificate>,
    pub(crate) files: TlsFiles,
}

impl Tls {
    /// Loads the pair (a clear error if it is bad) and builds the acceptor,
    /// which serves `domains`' own certificates by SNI.
    pub(crate) fn load(files: TlsFiles, domains: Arc<SniCertificates>) -> Result<Tls, TlsError> {
        let current = Arc::new(CurrentCertificate {
            server: RwLock::new(Arc::new(files.load()?)),
            domains,
        });
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| TlsError::File {
                    path: files.cert.clone(),
                    why: e.to_string(),
                })?
                .with_no_client_auth()
                .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            current,
            files,
        })
    }
}

/// Reloads the certificate when its files change or on SIGHUP, until the
/// task is dropped. A pair that does not load is logged and the old one kept.
pub(crate) async fn watch(current: Arc<CurrentCertificate>, files: TlsFiles) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(
                "cannot listen for SIGHUP ({e}); the certificate reloads when its files change"
            );
            None
        }
    };
    let mut seen = files.changed();
    let mut ticks = tokio::time::interval(RELOAD_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let hangup = async {
            match hangups.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        let asked = tokio::select! {
            _ = ticks.tick() => false,
            _ = hangup => true,
        };
        let now = files.changed();
        if !asked && now == seen {
            continue;
        }
        seen = now;
        match files.load() {
            Ok(certified) => {
                current.replace(certified);
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!("keeping the TLS certificate in use: {e}"),
        }
    }
}

/// The plain HTTP listener's app (`kiln up --http-redirect`): every request
/// is sent to the same host and path over HTTPS, on `https_port`.
pub(crate) fn redirect_app(https_port: u16) -> axum::Router {
    use axum::http::{HeaderMap, StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};
    let redirect = move |headers: HeaderMap, uri: Uri| async move {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<axum::http::uri::Authority>().ok());
        let Some(host) = host else {
            let why = "kiln: HTTPS only; send a Host header to be redirected\n";
            return (StatusCode::BAD_REQUEST, why).into_response();
        };
        let port = match https_port {
            443 => String::new(),
            port => format!(":{port}"),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let location = format!("https://{}{port}{path}", host.host());
        let answer: Response = (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
            "kiln: HTTPS only\n",
        )
            .into_response();
        answer
    };
    axum::Router::new().fallback(redirect)
}
