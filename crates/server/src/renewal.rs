//! Keeping a node's custom domains current: the table reloaded on every change
//! notified (through this node, or another's `Change::Domains`) and every
//! [`RELOAD_EVERY`], and every [`RENEW_EVERY`] the certificate provider asked
//! for the certificates that are missing or due, which are stored for every
//! node (`certificates.rs` says how a provider plugs in).

use crate::certificates::{CertificateProvider, Uploaded, renewal_pass, seal_certificate};
use crate::state::AppState;
use kiln_store::StoredDomain;
use std::sync::Arc;
use std::time::Duration;

/// How often a node reloads the domains even when told of no change (a
/// missed notification costs at most this).
pub(crate) const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// How often the certificate provider is asked for the certificates that are
/// missing or due for renewal.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(3600);

/// Reloads the domains on every change notified and every [`RELOAD_EVERY`];
/// every [`RENEW_EVERY`], asks the certificate provider for what is due.
pub(crate) async fn keep_loaded(state: Arc<AppState>) {
    let provider = Uploaded;
    let mut renewed: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = state.domains_changed.notified() => {}
            _ = tokio::time::sleep(RELOAD_EVERY) => {}
        }
        let reloaded = state
            .domains
            .reload(&*state.store, &state.secret_keys)
            .await;
        match reloaded {
            Ok(stored) if renewed.is_none_or(|at| at.elapsed() >= RENEW_EVERY) => {
                renewed = Some(std::time::Instant::now());
                renew(&state, &provider, &stored).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload the custom domains; keeping those loaded")
            }
        }
    }
}

/// Stores what `provider` obtains for the domains due a certificate.
async fn renew(state: &AppState, provider: &dyn CertificateProvider, stored: &[StoredDomain]) {
    let now = kiln_store::now();
    for (domain, pem) in renewal_pass(stored, provider, now).await {
        let Some(held) = stored.iter().find(|d| d.domain == domain) else {
            continue;
        };
        let sealed = seal_certificate(
            &state.secret_keys,
            held.tenant_id,
            &domain,
            &pem,
            provider.name(),
            now,
        );
        let stored = match sealed {
            Ok(certificate) => {
                state
                    .store
                    .put_certificate(None, &domain, certificate)
                    .await
            }
            Err(why) => {
                tracing::warn!(%domain, provider = provider.name(), "a certificate obtained is unfit: {why}");
                continue;
            }
        };
        match stored {
            Ok(()) => state.domains_changed.notify_one(),
            Err(e) => tracing::warn!(%domain, error = %e, "cannot store a certificate obtained"),
        }
    }
}
