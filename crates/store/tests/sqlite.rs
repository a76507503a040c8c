//! The SQLite metadata store against its contract.

use kiln_runtime::Digest;
use kiln_store::*;

fn open() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("kiln.db")).unwrap();
    (store, dir)
}

fn version(bytes: &[u8]) -> NewVersion {
    NewVersion {
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        config: FunctionConfig::default(),
    }
}

#[tokio::test]
async fn tokens_authenticate_until_revoked() {
    let (store, _dir) = open();
    assert!(!store.has_admin().await.unwrap());
    store.create_token(None, "admin", [1; 32]).await.unwrap();
    assert!(store.has_admin().await.unwrap());
    let acme = store.create_tenant("acme").await.unwrap();
    let token = store
        .create_token(Some(acme.id), "ci", [2; 32])
        .await
        .unwrap();

    assert_eq!(
        store.authenticate([1; 32]).await.unwrap(),
        Some(Principal::Admin)
    );
    assert_eq!(
        store.authenticate([2; 32]).await.unwrap(),
        Some(Principal::Tenant(acme.clone()))
    );
    assert_eq!(store.authenticate([3; 32]).await.unwrap(), None);

    // Another tenant cannot revoke it; its own tenant can, once.
    let other = store.create_tenant("other").await.unwrap();
    assert!(!store.revoke_token(Some(other.id), token.id).await.unwrap());
    assert!(store.revoke_token(Some(acme.id), token.id).await.unwrap());
    assert!(!store.revoke_token(Some(acme.id), token.id).await.unwrap());
    assert_eq!(store.authenticate([2; 32]).await.unwrap(), None);
    assert!(store.list_tokens(Some(acme.id)).await.unwrap()[0].revoked);
}

#[tokio::test]
async fn tenant_names_are_unique() {
    let (store, _dir) = open();
    store.create_tenant("acme").await.unwrap();
    let err = store.create_tenant("acme").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(store.list_tenants().await.unwrap().len(), 1);
}

#[tokio::test]
async fn versions_deploy_roll_back_and_delete() {
    let (store, _dir) = open();
    let acme = store.create_tenant("acme").await.unwrap();
    let v1 = store
        .deploy(acme.id, "hello", version(b"one"))
        .await
        .unwrap();
    let v2 = store
        .deploy(acme.id, "hello", version(b"two"))
        .await
        .unwrap();
    assert_eq!((v1.number, v2.number), (1, 2));
    let live = store.resolve("acme", "hello").await.unwrap().unwrap();
    assert_eq!((live.version, live.digest), (2, Digest::of(b"two")));

    let back = store.rollback(acme.id, "hello", None).await.unwrap();
    assert_eq!(back.number, 1);
    assert_eq!(
        store
            .resolve("acme", "hello")
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    // Nothing before version 1.
    assert!(matches!(
        store.rollback(acme.id, "hello", None).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.rollback(acme.id, "hello", Some(9)).await,
        Err(StoreError::NotFound(_))
    ));
    store.rollback(acme.id, "hello", Some(2)).await.unwrap();

    let detail = store.function(acme.id, "hello").await.unwrap().unwrap();
    assert_eq!(detail.current_version, 2);
    assert_eq!(detail.versions.len(), 2);
    assert_eq!(store.list_functions(acme.id).await.unwrap()[0].versions, 2);

    assert!(store.delete_function(acme.id, "hello").await.unwrap());
    assert!(store.resolve("acme", "hello").await.unwrap().is_none());
    assert!(!store.delete_function(acme.id, "hello").await.unwrap());
}

#[tokio::test]
async fn a_tenant_sees_only_its_functions() {
    let (store, _dir) = open();
    let a = store.create_tenant("a").await.unwrap();
    let b = store.create_tenant("b").await.unwrap();
    store.deploy(a.id, "f", version(b"a")).await.unwrap();
    assert!(store.list_functions(b.id).await.unwrap().is_empty());
    assert!(store.function(b.id, "f").await.unwrap().is_none());
    assert!(!store.delete_function(b.id, "f").await.unwrap());
    assert!(store.logs(b.id, "f", None, 10).await.unwrap().is_none());
    assert!(store.resolve("b", "f").await.unwrap().is_none());
}

#[tokio::test]
async fn logs_are_kept_newest_last_and_pruned() {
    let (store, _dir) = open();
    let a = store.create_tenant("a").await.unwrap();
    store.deploy(a.id, "f", version(b"a")).await.unwrap();
    let id = store.resolve("a", "f").await.unwrap().unwrap().function_id;
    let entry = |i: u32| NewLogEntry {
        function_id: id,
        version: 1,
        at: i as i64,
        outcome: "success".into(),
        status: 200,
        wall_us: 1,
        stderr: format!("line {i}"),
        cpu_us: 2,
        peak_memory_bytes: 65536,
        bytes_out: i as u64,
        ..Default::default()
    };
    store
        .append_logs((0..LOGS_KEPT + 5).map(entry).collect())
        .await
        .unwrap();
    let all = store.logs(a.id, "f", None, 5000).await.unwrap().unwrap();
    assert_eq!(all.len(), LOGS_KEPT as usize);
    assert_eq!(
        all.last().unwrap().stderr,
        format!("line {}", LOGS_KEPT + 4)
    );
    let last_two = store.logs(a.id, "f", None, 2).await.unwrap().unwrap();
    assert_eq!(last_two[1].stderr, format!("line {}", LOGS_KEPT + 4));
    // The per-invocation usage record is kept with the entry.
    let newest = &last_two[1];
    assert_eq!((newest.cpu_us, newest.peak_memory_bytes), (2, 65536));
    assert_eq!(newest.bytes_out, (LOGS_KEPT + 4) as u64);
    let after = store
        .logs(a.id, "f", Some(last_two[0].id), 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, vec![last_two[1].clone()]);
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiln.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let a = store.create_tenant("a").await.unwrap();
        store.deploy(a.id, "f", version(b"x")).await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.resolve("a", "f").await.unwrap().unwrap().version, 1);
}

fn delta(tenant_id: TenantId, function: &str, hour: i64, requests: u64, peak: u64) -> UsageDelta {
    UsageDelta {
        tenant_id,
        function: function.into(),
        hour,
        totals: UsageTotals {
            requests,
            cpu_us: 10 * requests,
            peak_memory_bytes: peak,
            bytes_out: 3 * requests,
            ..Default::default()
        },
    }
}

#[tokio::test]
async fn usage_adds_up_per_tenant_function_and_hour_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiln.db");
    let store = SqliteStore::open(&path).unwrap();
    let acme = store.create_tenant("acme").await.unwrap();
    let other = store.create_tenant("other").await.unwrap();
    store
        .add_usage(vec![
            delta(acme.id, "hello", 3600, 2, 100),
            delta(acme.id, "hello", 7200, 1, 50),
            delta(other.id, "hello", 3600, 5, 10),
        ])
        .await
        .unwrap();
    store
        .add_usage(vec![delta(acme.id, "hello", 3600, 3, 70)])
        .await
        .unwrap();
    drop(store);

    let store = SqliteStore::open(&path).unwrap();
    let all = UsageQuery {
        since: 0,
        until: i64::MAX,
        ..Default::default()
    };
    let rows = store.usage(all.clone()).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!((rows[0].tenant.as_str(), rows[0].hour), ("acme", 3600));
    assert_eq!(rows[0].totals.requests, 5);
    assert_eq!(rows[0].totals.cpu_us, 50);
    assert_eq!(rows[0].totals.bytes_out, 15);
    assert_eq!(rows[0].totals.peak_memory_bytes, 100);

    let acme_only = UsageQuery {
        tenant: Some(acme.id),
        since: 7200,
        ..all.clone()
    };
    let rows = store.usage(acme_only).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].totals.requests, 1);

    let mut totals = store.usage_by_tenant(0).await.unwrap();
    totals.sort_by_key(|(id, _)| *id);
    assert_eq!(totals[0].0, acme.id);
    assert_eq!(totals[0].1.requests, 6);
    assert_eq!(totals[0].1.peak_memory_bytes, 100);
    assert_eq!(totals[1].1.requests, 5);
    assert_eq!(store.usage_by_tenant(7200).await.unwrap()[0].1.requests, 1);
}

#[tokio::test]
async fn quotas_are_stored_per_tenant() {
    let (store, _dir) = open();
    let acme = store.create_tenant("acme").await.unwrap();
    let other = store.create_tenant("other").await.unwrap();
    let quota = Quota {
        requests_per_month: Some(10),
        cost_per_month: Some(2.5),
        max_concurrent: Some(3),
        requests_per_second: Some(50),
    };
    store.set_quota(acme.id, quota).await.unwrap();
    let quotas = store.quotas().await.unwrap();
    assert_eq!(quotas, vec![(acme.id, quota), (other.id, Quota::default())]);
    let missing = store.set_quota(999, quota).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing}");
}
