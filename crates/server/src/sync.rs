//! Locking a std mutex that a panicking holder may have poisoned: the data it
//! guards (caches, maps of counters) stays usable, so the poison is ignored.

/// Locks `mutex`, ignoring poison.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
