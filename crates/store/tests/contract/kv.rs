//! The contract's key-value, secrets, metering of stored data and tenant
//! deletion tests (the state a tenant keeps, and what removes it).

use super::{Backend, delta, version};
use kiln_api::{TenantId, UsageTotals};
use kiln_store::*;

pub(crate) fn set(key: &str, value: &[u8]) -> KvWrite {
    KvWrite::Set {
        key: key.into(),
        value: value.into(),
    }
}

const CAPS: kiln_api::KvCaps = kiln_api::KvCaps {
    keys: 1000,
    bytes: 1 << 20,
};

pub(crate) async fn kv_values_are_per_tenant_and_bucket_and_survive_reopening(backend: Backend) {
    let (a, b) = {
        let (store, kv) = backend.open_kv().await;
        let a = store.create_tenant("a").await.unwrap().id;
        let b = store.create_tenant("b").await.unwrap().id;
        kv.kv_write(a, "cache", vec![set("k", b"a's value")], CAPS)
            .await
            .unwrap();
        kv.kv_write(b, "cache", vec![set("k", &[0, 255, 1])], CAPS)
            .await
            .unwrap();
        kv.kv_write(a, "other", vec![set("k2", b"")], CAPS)
            .await
            .unwrap();
        (a, b)
    };
    let (_, kv) = backend.open_kv().await;
    assert_eq!(
        kv.kv_get(a, "cache", "k").await.unwrap().as_deref(),
        Some(&b"a's value"[..])
    );
    assert_eq!(
        kv.kv_get(b, "cache", "k").await.unwrap().as_deref(),
        Some(&[0, 255, 1][..])
    );
    assert_eq!(kv.kv_get(b, "other", "k2").await.unwrap(), None);
    assert_eq!(
        kv.kv_get(a, "other", "k2").await.unwrap().as_deref(),
        Some(&b""[..])
    );
    assert!(kv.kv_exists(a, "other", "k2").await.unwrap());
    assert!(!kv.kv_exists(a, "cache", "k2").await.unwrap());
    let many = kv
        .kv_get_many(a, "cache", vec!["k".into(), "absent".into(), "k".into()])
        .await
        .unwrap();
    assert_eq!(
        many,
        vec![
            Some(b"a's value".to_vec()),
            None,
            Some(b"a's value".to_vec())
        ]
    );
    let buckets = kv.kv_buckets(a).await.unwrap();
    assert_eq!(
        buckets,
        vec![
            kiln_api::KvBucket {
                name: "cache".into(),
                keys: 1,
                bytes: 10
            },
            kiln_api::KvBucket {
                name: "other".into(),
                keys: 1,
                bytes: 2
            },
        ]
    );
    assert_eq!(
        kv.kv_usage(a).await.unwrap(),
        kiln_api::KvUsage { keys: 2, bytes: 12 }
    );
    assert_eq!(
        kv.kv_usage(b).await.unwrap(),
        kiln_api::KvUsage { keys: 1, bytes: 4 }
    );
}

pub(crate) async fn kv_increments_from_many_handles_add_up_exactly(backend: Backend) {
    let (store, _) = backend.open_kv().await;
    let a = store.create_tenant("a").await.unwrap().id;
    // Several handles on one store: several nodes of a cluster, or several
    // processes on one SQLite file.
    let mut handles = Vec::new();
    for _ in 0..3 {
        handles.push(backend.open_kv().await.1);
    }
    let tasks: Vec<_> = (0..150)
        .map(|i| {
            let kv = handles[i % handles.len()].clone();
            tokio::spawn(async move { kv.kv_increment(a, "c", "hits", 1, CAPS).await })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap().unwrap());
    }
    seen.sort_unstable();
    // Each increment saw a distinct total: none was lost or doubled.
    assert_eq!(seen, (1..=150).collect::<Vec<u64>>());
    assert_eq!(
        handles[0].kv_get(a, "c", "hits").await.unwrap().as_deref(),
        Some(&b"150"[..])
    );
    assert_eq!(
        handles[1]
            .kv_increment(a, "c", "hits", 50, CAPS)
            .await
            .unwrap(),
        200
    );
    assert_eq!(
        handles[1].kv_usage(a).await.unwrap(),
        kiln_api::KvUsage { keys: 1, bytes: 7 }
    );
}

pub(crate) async fn kv_batches_and_refused_writes_are_all_or_nothing(backend: Backend) {
    let (store, kv) = backend.open_kv().await;
    let a = store.create_tenant("a").await.unwrap().id;
    kv.kv_write(
        a,
        "b",
        vec![
            set("x", b"1"),
            set("y", b"2"),
            KvWrite::Delete { key: "x".into() },
        ],
        CAPS,
    )
    .await
    .unwrap();
    assert_eq!(kv.kv_get(a, "b", "x").await.unwrap(), None);
    assert_eq!(
        kv.kv_get(a, "b", "y").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );

    // The third write crosses the key cap: none of the three stays.
    let two_keys = kiln_api::KvCaps {
        keys: 2,
        bytes: 1 << 20,
    };
    let err = kv
        .kv_write(
            a,
            "b",
            vec![set("y", b"changed"), set("z", b"3"), set("w", b"4")],
            two_keys,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::QuotaExceeded(_)), "{err}");
    assert!(err.to_string().contains("2 keys"), "{err}");
    assert_eq!(
        kv.kv_get(a, "b", "y").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(kv.kv_get(a, "b", "z").await.unwrap(), None);
    assert_eq!(
        kv.kv_usage(a).await.unwrap(),
        kiln_api::KvUsage { keys: 1, bytes: 2 }
    );

    // A value that is not a number is not incremented, and stays as it was.
    kv.kv_write(a, "b", vec![set("word", b"ten")], CAPS)
        .await
        .unwrap();
    let err = kv.kv_increment(a, "b", "word", 1, CAPS).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(
        kv.kv_get(a, "b", "word").await.unwrap().as_deref(),
        Some(&b"ten"[..])
    );
    kv.kv_write(
        a,
        "b",
        vec![set("big", u64::MAX.to_string().as_bytes())],
        CAPS,
    )
    .await
    .unwrap();
    let err = kv.kv_increment(a, "b", "big", 1, CAPS).await.unwrap_err();
    assert!(err.to_string().contains("overflows"), "{err}");
}

pub(crate) async fn kv_listing_pages_see_each_lasting_key_once(backend: Backend) {
    let (store, kv) = backend.open_kv().await;
    let a = store.create_tenant("a").await.unwrap().id;
    let b = store.create_tenant("b").await.unwrap().id;
    let writes = (0..25).map(|i| set(&format!("key-{i:02}"), b"v")).collect();
    kv.kv_write(a, "b", writes, CAPS).await.unwrap();
    kv.kv_write(b, "b", vec![set("theirs", b"v")], CAPS)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = kv.kv_list(a, "b", cursor, 10).await.unwrap();
        assert!(page.keys.len() <= 10);
        seen.extend(page.keys);
        pages += 1;
        if pages == 1 {
            // Changes between pages: an overwrite keeps its place, a key set
            // now comes last, a deleted key is gone.
            kv.kv_write(
                a,
                "b",
                vec![
                    set("key-03", b"new"),
                    set("late", b"v"),
                    KvWrite::Delete {
                        key: "key-20".into(),
                    },
                ],
                CAPS,
            )
            .await
            .unwrap();
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> = (0..25)
        .filter(|i| *i != 20)
        .map(|i| format!("key-{i:02}"))
        .collect();
    expected.push("late".into());
    assert_eq!(seen, expected);
    let empty = kv.kv_list(a, "nothing", None, 10).await.unwrap();
    assert_eq!(empty, kiln_api::KvKeys::default());
}

pub(crate) async fn kv_quota_counts_keys_and_bytes_and_deleting_frees_them(backend: Backend) {
    let (store, kv) = backend.open_kv().await;
    let a = store.create_tenant("a").await.unwrap().id;
    let caps = kiln_api::KvCaps {
        keys: 10,
        bytes: 100,
    };
    kv.kv_write(a, "b", vec![set("k", &[7; 50])], caps)
        .await
        .unwrap();
    // Overwriting counts the difference: 1 + 99 = 100 bytes fits exactly...
    kv.kv_write(a, "b", vec![set("k", &[7; 99])], caps)
        .await
        .unwrap();
    // ...one more byte does not, anywhere in the tenant.
    let err = kv
        .kv_write(a, "other", vec![set("j", b"")], caps)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::QuotaExceeded(_)), "{err}");
    assert!(err.to_string().contains("allows 100 bytes"), "{err}");
    assert_eq!(
        kv.kv_usage(a).await.unwrap(),
        kiln_api::KvUsage {
            keys: 1,
            bytes: 100
        }
    );
    // Shrinking is allowed even past a cap lowered since.
    let lowered = kiln_api::KvCaps {
        keys: 10,
        bytes: 10,
    };
    kv.kv_write(a, "b", vec![set("k", &[7; 20])], lowered)
        .await
        .unwrap();
    assert_eq!(
        kv.kv_usage(a).await.unwrap(),
        kiln_api::KvUsage { keys: 1, bytes: 21 }
    );
    kv.kv_write(a, "b", vec![set("k2", b"x")], caps)
        .await
        .unwrap();
    assert!(kv.kv_delete_bucket(a, "b").await.unwrap());
    assert!(!kv.kv_delete_bucket(a, "b").await.unwrap());
    assert_eq!(kv.kv_usage(a).await.unwrap(), kiln_api::KvUsage::default());
    assert_eq!(kv.kv_buckets(a).await.unwrap(), vec![]);
    // A deleted bucket is an empty one: it can be written again.
    kv.kv_write(a, "b", vec![set("k", b"v")], caps)
        .await
        .unwrap();
    assert_eq!(kv.kv_usage(a).await.unwrap().keys, 1);
}

pub(crate) async fn secrets_are_per_tenant_replaced_listed_and_deleted(backend: Backend) {
    let store = backend.open().await;
    let a = store.create_tenant("a").await.unwrap().id;
    let b = store.create_tenant("b").await.unwrap().id;
    store
        .put_secret(a, "KEY", b"sealed-1".to_vec())
        .await
        .unwrap();
    store
        .put_secret(a, "KEY", b"sealed-2".to_vec())
        .await
        .unwrap();
    store.put_secret(a, "OTHER", b"x".to_vec()).await.unwrap();
    store
        .put_secret(b, "KEY", b"theirs".to_vec())
        .await
        .unwrap();
    let names = vec!["KEY".to_owned(), "MISSING".to_owned(), "OTHER".to_owned()];
    assert_eq!(
        store.secrets(a, names.clone()).await.unwrap(),
        vec![
            ("KEY".to_owned(), b"sealed-2".to_vec()),
            ("OTHER".to_owned(), b"x".to_vec())
        ]
    );
    assert_eq!(
        store.secrets(b, names).await.unwrap(),
        vec![("KEY".to_owned(), b"theirs".to_vec())]
    );
    let listed: Vec<String> = store
        .list_secrets(a)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(listed, ["KEY", "OTHER"]);
    assert!(store.delete_secret(a, "KEY").await.unwrap());
    assert!(!store.delete_secret(a, "KEY").await.unwrap());
    assert_eq!(store.secrets(a, vec!["KEY".into()]).await.unwrap(), vec![]);
    assert_eq!(store.secrets(b, vec!["KEY".into()]).await.unwrap().len(), 1);
}

pub(crate) async fn kv_storage_is_metered_per_tenant_and_hour_at_its_peak(backend: Backend) {
    let (store, kv) = backend.open_kv().await;
    let a = store.create_tenant("a").await.unwrap().id;
    let b = store.create_tenant("b").await.unwrap().id;
    let empty = store.create_tenant("empty").await.unwrap().id;
    let caps = kiln_api::KvCaps::default();
    kv.kv_write(a, "x", vec![set("k", &[1; 99])], caps)
        .await
        .unwrap();
    kv.kv_write(b, "x", vec![set("k", &[1; 9])], caps)
        .await
        .unwrap();
    assert_eq!(kv.kv_meter_storage(3600).await.unwrap(), 2);
    // More stored later in the hour: the hour keeps the most; less: unchanged.
    kv.kv_write(a, "x", vec![set("k", &[1; 199])], caps)
        .await
        .unwrap();
    assert_eq!(kv.kv_meter_storage(3600).await.unwrap(), 2);
    kv.kv_write(a, "x", vec![KvWrite::Delete { key: "k".into() }], caps)
        .await
        .unwrap();
    assert_eq!(kv.kv_meter_storage(3600).await.unwrap(), 1);
    kv.kv_write(a, "x", vec![set("k", &[1; 49])], caps)
        .await
        .unwrap();
    // A second node sampling the same hour changes nothing.
    assert_eq!(kv.kv_meter_storage(7200).await.unwrap(), 2);
    assert_eq!(kv.kv_meter_storage(7200).await.unwrap(), 2);

    let rows = store
        .usage(UsageQuery {
            since: 0,
            until: i64::MAX,
            ..Default::default()
        })
        .await
        .unwrap();
    let stored: Vec<(&str, &str, i64, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r.tenant.as_str(),
                r.function.as_str(),
                r.hour,
                r.totals.kv_byte_hours,
                r.totals.requests,
            )
        })
        .collect();
    assert_eq!(
        stored,
        [
            ("a", kiln_api::STORAGE, 3600, 200, 0),
            ("a", kiln_api::STORAGE, 7200, 50, 0),
            ("b", kiln_api::STORAGE, 3600, 10, 0),
            ("b", kiln_api::STORAGE, 7200, 10, 0),
        ]
    );
    let totals: std::collections::HashMap<TenantId, UsageTotals> = store
        .usage_by_tenant(0)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(totals[&a].kv_byte_hours, 250);
    assert_eq!(totals[&b].kv_byte_hours, 20);
    assert!(!totals.contains_key(&empty));
}

pub(crate) async fn deleting_a_tenant_takes_everything_it_owns_and_nothing_else(backend: Backend) {
    let (store, kv) = backend.open_kv().await;
    let gone = store.create_tenant("gone").await.unwrap();
    let kept = store.create_tenant("kept").await.unwrap();
    let caps = kiln_api::KvCaps::default();
    let token: TokenHash = [9; 32];
    for tenant in [&gone, &kept] {
        store.deploy(tenant.id, "f", version(b"m")).await.unwrap();
        store.deploy(tenant.id, "g", version(b"n")).await.unwrap();
        kv.kv_write(tenant.id, "b", vec![set("k", b"v")], caps)
            .await
            .unwrap();
        store
            .put_secret(tenant.id, "S", b"sealed".to_vec())
            .await
            .unwrap();
        store
            .add_usage(vec![delta(tenant.id, "f", 3600, 1, 1)])
            .await
            .unwrap();
    }
    store.create_token(Some(gone.id), "t", token).await.unwrap();

    let mut functions = store.delete_tenant("gone").await.unwrap().unwrap();
    functions.sort();
    assert_eq!(functions, ["f", "g"]);
    assert_eq!(store.delete_tenant("gone").await.unwrap(), None);
    assert!(store.tenant("gone").await.unwrap().is_none());
    assert!(store.authenticate(token).await.unwrap().is_none());
    assert!(store.resolve("gone", "f").await.unwrap().is_none());
    // Usage recorded for it afterwards (invocations that were in flight) is
    // dropped, not an error that would hold back everyone else's.
    store
        .add_usage(vec![
            delta(gone.id, "f", 3600, 1, 1),
            delta(kept.id, "f", 3600, 1, 1),
        ])
        .await
        .unwrap();

    // The name is free again, and a new tenant of that name starts empty,
    // under an id no earlier tenant had.
    let again = store.create_tenant("gone").await.unwrap();
    assert!(again.id != gone.id && again.id != kept.id);
    assert_eq!(kv.kv_get(again.id, "b", "k").await.unwrap(), None);
    assert_eq!(
        kv.kv_usage(again.id).await.unwrap(),
        kiln_api::KvUsage::default()
    );
    assert_eq!(store.list_secrets(again.id).await.unwrap(), vec![]);
    assert_eq!(store.list_functions(again.id).await.unwrap(), vec![]);
    assert_eq!(kv.kv_get(gone.id, "b", "k").await.unwrap(), None);

    // The other tenant keeps all of its own.
    assert!(store.resolve("kept", "f").await.unwrap().is_some());
    assert_eq!(
        kv.kv_get(kept.id, "b", "k").await.unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(store.list_secrets(kept.id).await.unwrap().len(), 1);
    let usage = store.usage_by_tenant(0).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!((usage[0].0, usage[0].1.requests), (kept.id, 2));
}
