//! The shared quota counters (`QuotaGrants`), which only PostgreSQL has: many
//! nodes asking at once are never granted more than the cap.

use super::delta;
use kiln_store::*;
use std::sync::Arc;

const MONTH: i64 = 1_900_000_000;

#[tokio::test]
#[ignore = "needs the test services (PostgreSQL, S3): scripts/test starts them and runs it"]
async fn shared_counters_never_grant_past_their_cap_under_concurrency() {
    let url = kiln_guests::services::postgres_database("kiln_test");
    let store = Arc::new(PostgresStore::connect(&url).await.expect("connect"));
    let acme = store.create_tenant("acme").await.unwrap().id;
    // Eight nodes asking for 7 at a time: exactly the cap of 100, in all.
    let askers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut granted = 0;
                loop {
                    match store.grant_requests(acme, MONTH, 7, 100).await.unwrap() {
                        0 => return granted,
                        n => granted += n,
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for asker in askers {
        total += asker.await.unwrap();
    }
    assert_eq!(total, 100);
    // A raised cap grants the difference.
    assert_eq!(
        store.grant_requests(acme, MONTH, 50, 120).await.unwrap(),
        20
    );

    // A month's count starts at the requests it has recorded.
    let next = MONTH + 31 * 86_400;
    store
        .add_usage(vec![delta(acme, "f", next + 3600, 40, 0)])
        .await
        .unwrap();
    assert_eq!(store.grant_requests(acme, next, 100, 50).await.unwrap(), 10);

    // A second's counter: the rate, then nothing; the next second anew.
    assert_eq!(store.grant_rate(acme, 77, 30, 20).await.unwrap(), 20);
    assert_eq!(store.grant_rate(acme, 77, 1, 20).await.unwrap(), 0);
    assert_eq!(store.grant_rate(acme, 78, 5, 20).await.unwrap(), 5);
    // Past counters are dropped; the current ones kept.
    store.forget_grants(next, 78).await.unwrap();
    assert_eq!(store.grant_requests(acme, next, 100, 50).await.unwrap(), 0);
    assert_eq!(store.grant_rate(acme, 78, 100, 20).await.unwrap(), 15);
    assert_eq!(store.grant_rate(acme, 77, 100, 20).await.unwrap(), 20);
}
