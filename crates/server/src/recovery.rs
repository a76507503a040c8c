//! Offline recovery: a new admin token minted straight in the store, for an
//! operator who lost the credentials file. It needs access to the store and
//! nothing else (not a running server, not an old token); the server may be
//! running meanwhile (SQLite takes a second writer; PostgreSQL is shared).

use crate::auth;
use anyhow::{Context, bail};
use kiln_store::{MetadataStore, PostgresStore, SqliteStore};
use std::path::Path;

/// What [`reset_admin_token`] did.
#[derive(Debug)]
pub struct ResetToken {
    /// The new admin token (its hash is all the store keeps).
    pub token: String,
    /// Admin tokens revoked with it.
    pub revoked: usize,
}

/// Mints an admin token in the store of `data_dir` (its SQLite file) or, with
/// `database`, in that PostgreSQL database; with `revoke_others`, every other
/// admin token stops working. Refuses a store Kiln never initialized.
pub async fn reset_admin_token(
    data_dir: &Path,
    database: Option<&str>,
    revoke_others: bool,
) -> anyhow::Result<ResetToken> {
    let store: Box<dyn MetadataStore> = match database {
        Some(url) => Box::new(
            PostgresStore::connect(url)
                .await
                .context("cannot open the PostgreSQL store")?,
        ),
        None => {
            let path = data_dir.join("kiln.db");
            if !path.is_file() {
                bail!(
                    "{} holds no Kiln store (no kiln.db): give the data directory `kiln up` uses (--data)",
                    data_dir.display()
                );
            }
            Box::new(
                SqliteStore::open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            )
        }
    };
    if !store.has_admin().await? {
        bail!("this store was never initialized: `kiln up` on it creates the first admin token");
    }
    let others = store.list_tokens(None).await?;
    let (token, hash) = auth::generate()?;
    store.create_token(None, "reset", hash).await?;
    let mut revoked = 0;
    if revoke_others {
        for other in others.iter().filter(|t| !t.revoked) {
            if store.revoke_token(None, other.id).await? {
                revoked += 1;
            }
        }
    }
    Ok(ResetToken { token, revoked })
}
