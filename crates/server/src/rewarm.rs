//! A restarted node comes back warm. The functions it has loaded are written
//! down in the data directory (within [`RECORD_AFTER`] of a load, so a kill -9
//! loses at most that, and at shutdown); after a restart a background task
//! loads them again, one at a time, the smallest artifact first (one Python
//! snapshot's ~36 MiB takes as long as dozens of small functions: the most
//! functions are ready soonest), then puts them back in the order of use they
//! had. A function loaded so is found loaded by its first request: for a big
//! one that is the copy of its artifact taken off that request.
//!
//! Nothing is compiled or fetched for it: a digest without an artifact on this
//! node is skipped, and the cache's bounds (`--max-loaded-functions`,
//! `--max-loaded-code`) hold as for any load. The file is a hint in Kiln's own
//! directory: a line that is not a digest is ignored, and the list is read no
//! further than the cache could hold.

use crate::functions::Functions;
use crate::state::Counters;
use kiln_api::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The file, in the data directory.
pub(crate) const FILE: &str = "loaded-functions";

/// How long after a load the set is written: a burst of loads is one write.
const RECORD_AFTER: Duration = Duration::from_secs(1);

/// Writes the loaded set down whenever it changes, until aborted.
pub(crate) async fn keep_recording(
    functions: Arc<Functions>,
    counters: Arc<Counters>,
    path: PathBuf,
) {
    loop {
        functions.loaded_changed().notified().await;
        tokio::time::sleep(RECORD_AFTER).await;
        record(&functions, &counters, &path).await;
    }
}

/// Writes the loaded set down now (also at shutdown). Not while a rewarm is
/// under way: the list it reads from stays whole until every function on it
/// is loaded again, so a node restarted again meanwhile loses none of them.
pub(crate) async fn record(functions: &Functions, counters: &Counters, path: &Path) {
    if counters.rewarm_pending.load(Ordering::Relaxed) > 0 {
        return;
    }
    let text: String = functions
        .loaded_digests()
        .iter()
        .map(|digest| format!("{digest}\n"))
        .collect();
    let path = path.to_owned();
    let written = tokio::task::spawn_blocking(move || write_whole(&path, text.as_bytes())).await;
    if let Ok(Err(e)) | Err(e) = written.map_err(std::io::Error::other) {
        tracing::warn!(error = %e, "cannot write down the loaded functions");
    }
}

/// Replaces the file whole (a reader never sees half of it).
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

/// The digests written down, the most recently used first: at most `max`,
/// lines that are not a digest skipped; none if there is no file.
pub(crate) fn read(path: &Path, max: usize) -> Vec<Digest> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| line.trim().parse().ok())
        .take(max)
        .collect()
}

/// Loads `digests` (most recently used first) again, the smallest artifact
/// first, then restores their order of use. [`Counters::rewarm_pending`] is
/// set when this is called (before the task runs: nothing records the loaded
/// set meanwhile) and counts down to zero as it goes (`GET /v1/status`).
pub(crate) fn rewarm(
    functions: Arc<Functions>,
    digests: Vec<Digest>,
    counters: Arc<Counters>,
) -> impl Future<Output = ()> + Send + 'static {
    counters
        .rewarm_pending
        .store(digests.len(), Ordering::Relaxed);
    reload(functions, digests, counters)
}

/// The task of [`rewarm`].
async fn reload(functions: Arc<Functions>, digests: Vec<Digest>, counters: Arc<Counters>) {
    let pending = &counters.rewarm_pending;
    let mut loaded = 0;
    // One look at each artifact's size (a file's metadata), not one per comparison.
    let mut smallest_first = digests.clone();
    smallest_first.sort_by_cached_key(|digest| functions.artifact_len(digest).unwrap_or(u64::MAX));
    for digest in smallest_first {
        match functions.warm(digest).await {
            Ok(true) => loaded += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(%digest, error = %e, "cannot load a function again after the restart")
            }
        }
        pending.fetch_sub(1, Ordering::Relaxed);
    }
    // Then the order of use they had, the least recent touched first (one
    // requested since the restart takes its place from before: the cache's
    // order of eviction, off by a few seconds of use at most).
    for digest in digests.iter().rev() {
        functions.touch(digest);
    }
    if loaded > 0 {
        tracing::info!(
            loaded,
            "loaded again the functions loaded before the restart"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_reads_back_in_order_skipping_what_is_not_a_digest_up_to_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        assert!(read(&path, 10).is_empty(), "no file: nothing to load");
        let [a, b, c] = [b"a", b"b", b"c"].map(|bytes| Digest::of(bytes));
        write_whole(&path, format!("{a}\nnot a digest\n\n{b}\n{c}\n").as_bytes()).unwrap();
        assert_eq!(read(&path, 10), [a, b, c]);
        assert_eq!(read(&path, 2), [a, b]);
        assert!(!path.with_extension("partial").exists());
    }

    #[tokio::test]
    async fn the_smallest_artifact_is_loaded_first_and_the_order_of_use_is_kept() {
        use crate::functions::tests::{add_module, functions_holding, setup};
        let dir = tempfile::tempdir().unwrap();
        let (runtime, blobs, small) = setup(dir.path()).await;
        let data = "k".repeat(1 << 20);
        let big = add_module(
            &blobs,
            &format!(
                r#"(module (memory 17) (data (i32.const 0) "{data}") (func (export "_start")))"#
            ),
        )
        .await;
        let [one, two] = [1, 2].map(|n| std::num::NonZeroUsize::new(n).unwrap());
        let before = functions_holding(&runtime, &blobs, 1, two);
        before.get(big).await.unwrap();
        before.get(small).await.unwrap();
        runtime.flush_artifacts();
        let used = before.loaded_digests();
        assert_eq!(used, [small, big], "the small one used last");
        assert!(before.artifact_len(&big) > before.artifact_len(&small));

        // A restart: an empty cache over the same artifacts. Both are loaded
        // again, and end in the order of use they had.
        let after = functions_holding(&runtime, &blobs, 1, two);
        let counters = Arc::new(Counters::default());
        rewarm(after.clone(), used.clone(), counters.clone()).await;
        assert_eq!(after.loaded_digests(), used, "the order of use kept");
        assert_eq!(counters.rewarm_pending.load(Ordering::Relaxed), 0);

        // Room for one: what is left is what was loaded last, the biggest
        // (loading it pushed out the small one, loaded before it).
        let room_for_one = functions_holding(&runtime, &blobs, 1, one);
        rewarm(room_for_one.clone(), used, counters).await;
        assert_eq!(room_for_one.loaded_digests(), [big], "the smallest first");
    }

    #[tokio::test]
    async fn the_list_stays_whole_while_a_rewarm_is_under_way_and_only_artifacts_here_are_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let (runtime, blobs, digest) = crate::functions::tests::setup(dir.path()).await;
        let functions = crate::functions::tests::functions(&runtime, &blobs, 1);
        // No artifact here yet: a rewarm does not compile it.
        assert!(!functions.warm(digest).await.unwrap());
        assert!(functions.loaded_digests().is_empty());
        functions.get(digest).await.unwrap();
        assert_eq!(functions.loaded_digests(), [digest]);

        let path = dir.path().join(FILE);
        let counters = Counters::default();
        let before = format!("{}\n", Digest::of(b"still to load"));
        write_whole(&path, before.as_bytes()).unwrap();
        counters.rewarm_pending.store(1, Ordering::Relaxed);
        record(&functions, &counters, &path).await;
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        counters.rewarm_pending.store(0, Ordering::Relaxed);
        record(&functions, &counters, &path).await;
        assert_eq!(read(&path, 10), [digest]);
    }
}
