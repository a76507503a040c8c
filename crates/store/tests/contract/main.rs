//! Every metadata store against the one contract: each test runs on the embedded
//! SQLite store and on PostgreSQL (a throwaway cluster on loopback, started by
//! `scripts/services/postgres`; a fresh database per test).

mod edge;
mod gc;
mod grants;
mod kv;
mod sessions;

use edge::*;
use gc::*;
use kiln_api::{BinaryKind, Digest, FunctionConfig, Quota, TenantId, UsageTotals};
use kiln_store::*;
use kv::*;
use sessions::*;

/// Where a test's store lives; `open` may be called again to reopen it.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().expect("tempdir"))
    }

    /// A new, empty database on the test cluster.
    fn postgres() -> Backend {
        Backend::Postgres(kiln_guests::services::postgres_database("kiln_test"))
    }

    async fn open(&self) -> Box<dyn MetadataStore> {
        match self {
            Backend::Sqlite(dir) => {
                Box::new(SqliteStore::open(&dir.path().join("kiln.db")).expect("open SQLite"))
            }
            Backend::Postgres(url) => Box::new(
                PostgresStore::connect(url)
                    .await
                    .expect("connect PostgresStore"),
            ),
        }
    }

    /// The store's metadata and key-value sides, one store behind both.
    async fn open_kv(&self) -> (Box<dyn MetadataStore>, std::sync::Arc<dyn KvStore>) {
        match self {
            Backend::Sqlite(dir) => {
                let store = SqliteStore::open(&dir.path().join("kiln.db")).expect("open SQLite");
                (Box::new(store.clone()), std::sync::Arc::new(store))
            }
            Backend::Postgres(url) => {
                let store = PostgresStore::connect(url)
                    .await
                    .expect("connect PostgresStore");
                (Box::new(store.clone()), std::sync::Arc::new(store))
            }
        }
    }
}

/// Each contract test, once per store.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::sqlite()).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            #[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
            async fn $name() {
                super::$name(super::Backend::postgres()).await
            })*
        }
    };
}

contract!(
    concurrent_deploys_of_one_function_get_distinct_versions,
    tokens_authenticate_until_revoked,
    tenant_names_are_unique,
    versions_deploy_roll_back_and_delete,
    a_tenant_sees_only_its_functions,
    logs_are_kept_newest_last_and_pruned,
    a_batch_keeps_its_entries_and_skips_those_of_a_deleted_function,
    data_survives_reopening,
    usage_adds_up_per_tenant_function_and_hour_and_survives_reopening,
    quotas_are_stored_per_tenant,
    bundles_are_known_only_to_the_tenants_that_uploaded_them,
    kv_values_are_per_tenant_and_bucket_and_survive_reopening,
    kv_increments_from_many_handles_add_up_exactly,
    kv_batches_and_refused_writes_are_all_or_nothing,
    kv_listing_pages_see_each_lasting_key_once,
    kv_quota_counts_keys_and_bytes_and_deleting_frees_them,
    secrets_are_per_tenant_replaced_listed_and_deleted,
    kv_storage_is_metered_per_tenant_and_hour_at_its_peak,
    deleting_a_tenant_takes_everything_it_owns_and_nothing_else,
    shared_artifacts_are_recorded_by_key,
    blobs_go_only_unreferenced_unpinned_and_past_their_grace,
    a_pin_waits_for_a_collection_in_progress_and_then_keeps_the_blob,
    domains_belong_to_one_tenant_with_their_routes_and_certificate,
    each_tick_is_claimed_once_however_many_ask_and_a_lost_run_is_reaped_once,
    a_session_speaks_for_its_token_until_it_ends,
    nodes_report_under_their_names_and_silent_ones_are_forgotten,
);

async fn shared_artifacts_are_recorded_by_key(backend: Backend) {
    let store = backend.open().await;
    let (a, b) = (Digest::of(b"one"), Digest::of(b"two"));
    assert_eq!(store.artifact_sha256("e/x.cwasm").await.unwrap(), None);
    store.record_artifact("e/x.cwasm", a).await.unwrap();
    store.record_artifact("e/y.cwasm", b).await.unwrap();
    assert_eq!(store.artifact_sha256("e/x.cwasm").await.unwrap(), Some(a));
    // A recompile (another compiler version under the same key) replaces it.
    store.record_artifact("e/x.cwasm", b).await.unwrap();
    drop(store);
    let store = backend.open().await;
    assert_eq!(store.artifact_sha256("e/x.cwasm").await.unwrap(), Some(b));
    assert_eq!(store.artifact_sha256("e/y.cwasm").await.unwrap(), Some(b));
}

fn version(bytes: &[u8]) -> NewVersion {
    NewVersion {
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        config: FunctionConfig::default(),
        kind: BinaryKind::Module,
    }
}

async fn tokens_authenticate_until_revoked(backend: Backend) {
    let store = backend.open().await;
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

async fn tenant_names_are_unique(backend: Backend) {
    let store = backend.open().await;
    store.create_tenant("acme").await.unwrap();
    let err = store.create_tenant("acme").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(store.list_tenants().await.unwrap().len(), 1);
}

async fn versions_deploy_roll_back_and_delete(backend: Backend) {
    let store = backend.open().await;
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
    // The kind the deploy found is kept with each version.
    assert!(
        detail
            .versions
            .iter()
            .all(|v| v.kind == Some(BinaryKind::Module))
    );
    let listed = store.list_functions(acme.id).await.unwrap();
    assert_eq!(listed[0].versions, 2);
    assert_eq!(listed[0].current.kind, Some(BinaryKind::Module));

    assert!(store.delete_function(acme.id, "hello").await.unwrap());
    assert!(store.resolve("acme", "hello").await.unwrap().is_none());
    assert!(!store.delete_function(acme.id, "hello").await.unwrap());
}

async fn a_tenant_sees_only_its_functions(backend: Backend) {
    let store = backend.open().await;
    let a = store.create_tenant("a").await.unwrap();
    let b = store.create_tenant("b").await.unwrap();
    store.deploy(a.id, "f", version(b"a")).await.unwrap();
    assert!(store.list_functions(b.id).await.unwrap().is_empty());
    assert!(store.function(b.id, "f").await.unwrap().is_none());
    assert!(!store.delete_function(b.id, "f").await.unwrap());
    assert!(store.logs(b.id, "f", None, 10).await.unwrap().is_none());
    assert!(store.resolve("b", "f").await.unwrap().is_none());
}

async fn logs_are_kept_newest_last_and_pruned(backend: Backend) {
    let store = backend.open().await;
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
        stdout: format!("out {i}"),
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
    assert_eq!(newest.stdout, format!("out {}", LOGS_KEPT + 4));
    let after = store
        .logs(a.id, "f", Some(last_two[0].id), 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, vec![last_two[1].clone()]);
}

async fn a_batch_keeps_its_entries_and_skips_those_of_a_deleted_function(backend: Backend) {
    let store = backend.open().await;
    let a = store.create_tenant("a").await.unwrap();
    store.deploy(a.id, "kept", version(b"k")).await.unwrap();
    store.deploy(a.id, "gone", version(b"g")).await.unwrap();
    let kept = store
        .resolve("a", "kept")
        .await
        .unwrap()
        .unwrap()
        .function_id;
    let gone = store
        .resolve("a", "gone")
        .await
        .unwrap()
        .unwrap()
        .function_id;
    assert!(store.delete_function(a.id, "gone").await.unwrap());
    let entry = |function_id: i64, i: u32| NewLogEntry {
        function_id,
        version: 1,
        at: i64::from(i),
        outcome: "success".into(),
        status: 200,
        stderr: format!("line {i}"),
        ..Default::default()
    };
    // The deleted function's entries come first, between and last.
    let batch = vec![
        entry(gone, 0),
        entry(kept, 1),
        entry(gone, 2),
        entry(kept, 3),
        entry(gone, 4),
    ];
    store.append_logs(batch).await.unwrap();
    let logs = store.logs(a.id, "kept", None, 10).await.unwrap().unwrap();
    let lines: Vec<&str> = logs.iter().map(|e| e.stderr.as_str()).collect();
    assert_eq!(lines, ["line 1", "line 3"]);
    assert!(store.logs(a.id, "gone", None, 10).await.unwrap().is_none());
}

async fn data_survives_reopening(backend: Backend) {
    {
        let store = backend.open().await;
        let a = store.create_tenant("a").await.unwrap();
        store.deploy(a.id, "f", version(b"x")).await.unwrap();
    }
    let store = backend.open().await;
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

async fn usage_adds_up_per_tenant_function_and_hour_and_survives_reopening(backend: Backend) {
    let store = backend.open().await;
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

    let store = backend.open().await;
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

async fn quotas_are_stored_per_tenant(backend: Backend) {
    let store = backend.open().await;
    let acme = store.create_tenant("acme").await.unwrap();
    let other = store.create_tenant("other").await.unwrap();
    let quota = Quota {
        requests_per_month: Some(10),
        cost_per_month: Some(2.5),
        max_concurrent: Some(3),
        requests_per_second: Some(50),
        kv_keys: Some(7),
        kv_bytes: Some(1 << 20),
        cpu_weight: Some(4),
    };
    store.set_quota(acme.id, quota).await.unwrap();
    let quotas = store.quotas().await.unwrap();
    assert_eq!(quotas, vec![(acme.id, quota), (other.id, Quota::default())]);
    let missing = store.set_quota(999, quota).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing}");
}

async fn concurrent_deploys_of_one_function_get_distinct_versions(backend: Backend) {
    let store: std::sync::Arc<dyn MetadataStore> = backend.open().await.into();
    let acme = store.create_tenant("acme").await.unwrap();
    let deploys: Vec<_> = (0..8u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.deploy(acme.id, "f", version(&[i])).await })
        })
        .collect();
    let mut numbers = Vec::new();
    for deploy in deploys {
        numbers.push(deploy.await.unwrap().unwrap().number);
    }
    numbers.sort();
    assert_eq!(numbers, (1..=8).collect::<Vec<u32>>());
    let detail = store.function(acme.id, "f").await.unwrap().unwrap();
    assert_eq!(detail.versions.len(), 8);
}

async fn bundles_are_known_only_to_the_tenants_that_uploaded_them(backend: Backend) {
    let store = backend.open().await;
    let a = store.create_tenant("a").await.unwrap();
    let b = store.create_tenant("b").await.unwrap();
    let bundle = kiln_api::BundleInfo {
        digest: Digest::of(b"tree"),
        size: 10240,
        files: 3,
        file_bytes: 1234,
    };
    store.add_bundle(a.id, &bundle).await.unwrap();
    store.add_bundle(a.id, &bundle).await.unwrap();
    assert_eq!(
        store.bundle(a.id, &bundle.digest).await.unwrap(),
        Some(bundle.clone())
    );
    assert_eq!(store.bundle(b.id, &bundle.digest).await.unwrap(), None);
    drop(store);
    let reopened = backend.open().await;
    assert_eq!(
        reopened.bundle(a.id, &bundle.digest).await.unwrap(),
        Some(bundle)
    );
}
