//! Custom domains and scheduled runs, on both stores: a domain held by one
//! tenant at a time with its routes and certificate; a tick claimed by one
//! caller however many ask at once, never older than one claimed, and a lost
//! run reaped once.

use super::{Backend, version};
use kiln_api::{FunctionConfig, Route, Schedule};
use kiln_store::*;

fn route(prefix: &str, function: &str) -> Route {
    Route {
        prefix: prefix.into(),
        function: function.into(),
    }
}

fn certificate(names: &[&str]) -> StoredCertificate {
    StoredCertificate {
        chain_pem: "chain".into(),
        key_sealed: vec![1, 2, 3],
        names: names.iter().map(|n| n.to_string()).collect(),
        not_after: 2_000_000_000,
        source: "upload".into(),
        updated_at: 1_800_000_000,
    }
}

pub(crate) async fn domains_belong_to_one_tenant_with_their_routes_and_certificate(
    backend: Backend,
) {
    let store = backend.open().await;
    let acme = store.create_tenant("acme").await.unwrap().id;
    let other = store.create_tenant("other").await.unwrap().id;
    let d = "api.example.test";
    // Not granted: nothing may be attached to it.
    assert!(matches!(
        store.put_route(acme, d, route("/", "site"), 4).await,
        Err(StoreError::NotFound(_))
    ));
    store.grant_domain(d, acme).await.unwrap();
    store.grant_domain(d, acme).await.unwrap();
    assert!(matches!(
        store.grant_domain(d, other).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .put_route(acme, d, route("/", "site"), 4)
        .await
        .unwrap();
    store
        .put_route(acme, d, route("/api", "api"), 4)
        .await
        .unwrap();
    store
        .put_route(acme, d, route("/api", "api2"), 4)
        .await
        .unwrap();
    assert!(matches!(
        store.put_route(other, d, route("/x", "theirs"), 4).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(!store.delete_route(other, d, "/").await.unwrap());
    // The most routes a domain may have.
    store.put_route(acme, d, route("/a", "f"), 4).await.unwrap();
    store.put_route(acme, d, route("/b", "f"), 4).await.unwrap();
    assert!(matches!(
        store.put_route(acme, d, route("/c", "f"), 4).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.delete_route(acme, d, "/b").await.unwrap());
    assert!(matches!(
        store
            .put_certificate(Some(other), d, certificate(&[d]))
            .await,
        Err(StoreError::NotFound(_))
    ));
    store
        .put_certificate(Some(acme), d, certificate(&[d]))
        .await
        .unwrap();
    // The operator may replace it.
    store
        .put_certificate(None, d, certificate(&[d, "www.example.test"]))
        .await
        .unwrap();

    drop(store);
    let store = backend.open().await;
    let all = store.domains(None).await.unwrap();
    assert_eq!(all.len(), 1);
    let domain = &all[0];
    assert_eq!(
        (domain.domain.as_str(), domain.tenant.as_str()),
        (d, "acme")
    );
    assert_eq!(
        domain.routes,
        [route("/api", "api2"), route("/a", "f"), route("/", "site")]
    );
    assert_eq!(
        domain.certificate,
        Some(certificate(&[d, "www.example.test"]))
    );
    assert_eq!(store.domains(Some(acme)).await.unwrap(), all);
    assert!(store.domains(Some(other)).await.unwrap().is_empty());
    assert!(!store.delete_certificate(Some(other), d).await.unwrap());
    assert!(store.delete_certificate(Some(acme), d).await.unwrap());

    // Revoked: its routes go with it, and another tenant may have it.
    assert!(store.revoke_domain(d).await.unwrap());
    assert!(!store.revoke_domain(d).await.unwrap());
    store.grant_domain(d, other).await.unwrap();
    let all = store.domains(None).await.unwrap();
    assert!(all[0].routes.is_empty() && all[0].certificate.is_none());
    // A deleted tenant's domains go with it.
    store.delete_tenant("other").await.unwrap();
    assert!(store.domains(None).await.unwrap().is_empty());
}

pub(crate) async fn each_tick_is_claimed_once_however_many_ask_and_a_lost_run_is_reaped_once(
    backend: Backend,
) {
    let store = backend.open().await;
    let acme = store.create_tenant("acme").await.unwrap().id;
    let scheduled = FunctionConfig {
        schedule: Some(Schedule::parse("*/2 * * * * *").unwrap()),
        ..FunctionConfig::default()
    };
    store
        .deploy(
            acme,
            "job",
            NewVersion {
                config: scheduled,
                ..version(b"job")
            },
        )
        .await
        .unwrap();
    store
        .deploy(acme, "plain", version(b"plain"))
        .await
        .unwrap();
    let listed = store.scheduled_functions().await.unwrap();
    assert_eq!(listed.len(), 1);
    let job = &listed[0].deployment;
    assert_eq!((job.function.as_str(), job.version), ("job", 1));
    let claim = |tick: i64, node: &str| TickClaim {
        function_id: job.function_id,
        tick,
        version: 1,
        node: node.into(),
        started_at: tick,
        lease_until: tick + 10,
    };

    // Eight nodes claim the same tick at once: one wins.
    let mut handles = Vec::new();
    for i in 0..8 {
        let node = backend.open().await;
        let claim = claim(1000, &format!("node{i}"));
        handles.push(tokio::spawn(async move {
            node.claim_tick(claim).await.unwrap()
        }));
    }
    let mut won = 0;
    for handle in handles {
        won += usize::from(handle.await.unwrap());
    }
    assert_eq!(won, 1);
    // Never an older tick than one claimed (a catch-up is one run).
    assert!(!store.claim_tick(claim(998, "late")).await.unwrap());
    assert!(store.claim_tick(claim(1002, "a")).await.unwrap());
    store
        .finish_run(job.function_id, 1002, 1003, "ok", 200)
        .await
        .unwrap();

    // Unfinished past its lease: reaped once, by one caller.
    assert!(store.reap_lost_runs(1005).await.unwrap().is_empty());
    let lost = store.reap_lost_runs(1011).await.unwrap();
    assert_eq!(lost.len(), 1);
    assert_eq!((lost[0].tick, lost[0].version), (1000, 1));
    assert!(store.reap_lost_runs(1100).await.unwrap().is_empty());
    let runs = store.runs(acme, "job", 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[0].tick, runs[0].outcome.as_deref(), runs[0].status),
        (1002, Some("ok"), Some(200))
    );
    assert_eq!(
        (runs[1].tick, runs[1].outcome.as_deref(), runs[1].status),
        (1000, Some(kiln_api::NODE_LOST), None)
    );
    assert!(runs[1].node.starts_with("node"));

    // Only the newest runs are kept.
    for i in 0..RUNS_KEPT + 5 {
        assert!(store.claim_tick(claim(2000 + 2 * i, "a")).await.unwrap());
    }
    assert_eq!(
        store.runs(acme, "job", 1000).await.unwrap().len(),
        RUNS_KEPT as usize
    );
    // A deleted function's runs go with it.
    assert!(store.delete_function(acme, "job").await.unwrap());
    assert!(store.scheduled_functions().await.unwrap().is_empty());
    assert!(store.runs(acme, "job", 10).await.unwrap().is_empty());
}
