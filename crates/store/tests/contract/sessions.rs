//! Console sessions, on both stores: a session speaks for its token until it
//! expires, is deleted, or the token is revoked.

use super::Backend;
use kiln_store::*;

pub(crate) async fn a_session_speaks_for_its_token_until_it_ends(backend: Backend) {
    let store = backend.open().await;
    let acme = store.create_tenant("acme").await.unwrap();
    let (token, admin) = ([1u8; 32], [2u8; 32]);
    let info = store
        .create_token(Some(acme.id), "browser", token)
        .await
        .unwrap();
    store.create_token(None, "admin", admin).await.unwrap();
    // No session for a token that does not exist.
    assert!(matches!(
        store.create_session([9; 32], [8; 32], 2000).await,
        Err(StoreError::NotFound(_))
    ));
    store.create_session([10; 32], token, 2000).await.unwrap();
    store.create_session([11; 32], admin, 1500).await.unwrap();
    assert_eq!(
        store.session([10; 32], 1000).await.unwrap(),
        Some(Principal::Tenant(acme.clone()))
    );
    assert_eq!(
        store.session([11; 32], 1000).await.unwrap(),
        Some(Principal::Admin)
    );
    assert_eq!(store.session([12; 32], 1000).await.unwrap(), None);
    // Expired.
    assert_eq!(store.session([11; 32], 1500).await.unwrap(), None);
    assert_eq!(store.forget_expired_sessions(1600).await.unwrap(), 1);
    // Reopened: still there.
    drop(store);
    let store = backend.open().await;
    assert!(store.session([10; 32], 1000).await.unwrap().is_some());
    // The token revoked: its sessions end; none can be opened with it.
    assert!(store.revoke_token(Some(acme.id), info.id).await.unwrap());
    assert_eq!(store.session([10; 32], 1000).await.unwrap(), None);
    assert!(store.create_session([13; 32], token, 2000).await.is_err());
    // Signed out.
    store.create_session([14; 32], admin, 2000).await.unwrap();
    assert!(store.delete_session([14; 32]).await.unwrap());
    assert!(!store.delete_session([14; 32]).await.unwrap());
    assert_eq!(store.session([14; 32], 1000).await.unwrap(), None);
}
