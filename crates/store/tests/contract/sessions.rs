//! Console sessions and node reports, on both stores: a session speaks for its
//! token until it expires, is deleted, or the token is revoked; a node's report
//! replaces its last one.

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

pub(crate) async fn nodes_report_under_their_names_and_silent_ones_are_forgotten(backend: Backend) {
    let store = backend.open().await;
    assert!(store.nodes().await.unwrap().is_empty());
    let status = |in_flight| kiln_api::NodeStatus {
        in_flight,
        connections: 2,
        active_instances: 1,
        compiles: 3,
        artifact_downloads: 0,
        loaded_functions: 4,
        rewarm_pending: 0,
        function_cache_hits: 5,
        function_cache_misses: 6,
        function_cache_evictions: 0,
        gc: None,
    };
    let report = |node: &str, seen_at, stopped, in_flight| kiln_api::NodeSeen {
        node: node.into(),
        started_at: 1_000,
        seen_at,
        stopped,
        status: status(in_flight),
    };
    store
        .report_node(&report("b:8080", 1_010, false, 1))
        .await
        .unwrap();
    store
        .report_node(&report("a:8080", 1_010, false, 7))
        .await
        .unwrap();
    // A later report replaces the node's last one.
    store
        .report_node(&report("b:8080", 1_020, true, 0))
        .await
        .unwrap();
    drop(store);
    let store = backend.open().await;
    assert_eq!(
        store.nodes().await.unwrap(),
        vec![
            report("a:8080", 1_010, false, 7),
            report("b:8080", 1_020, true, 0)
        ]
    );
    // A node silent for longer than a day is forgotten at the next report.
    let later = 1_015 + NODES_KEPT_SECONDS;
    store
        .report_node(&report("c:8080", later, false, 0))
        .await
        .unwrap();
    let names: Vec<String> = store
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node)
        .collect();
    assert_eq!(names, ["b:8080", "c:8080"]);
}
