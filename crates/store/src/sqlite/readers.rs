//! Read-only connections for the hot paths: a key-value `get` from a guest,
//! and the lookup of the deployment a function's first request on this node
//! runs, are answered on the calling thread, from a connection of their own,
//! with a prepared statement and no explicit transaction.
//!
//! Why on the calling thread: a point read by primary key on a WAL database
//! takes a few microseconds with its pages cached, while the hop to tokio's
//! blocking pool and back costs two thread wake-ups, several times that on a
//! loaded machine. A WAL reader never waits for the writer (it reads the last
//! committed snapshot), so the only way it blocks is a cold page read from the
//! disk, which a request would have waited for on the other thread anyway. A
//! reader that finds every connection taken (more concurrent reads than
//! connections) goes to the blocking pool instead of waiting on a lock.

use super::internal;
use crate::error::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

/// How long a reader waits on a lock SQLite holds briefly (recovering the
/// WAL index after a crash): short, since it may wait on an async thread.
const BUSY_TIMEOUT: Duration = Duration::from_millis(100);

/// The connection the next reader sent to the blocking pool waits for.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fixed set of read-only connections. Cheap to clone.
#[derive(Clone)]
pub(super) struct Readers {
    connections: Arc<[Mutex<Connection>]>,
}

impl Readers {
    /// One connection per core (at least two) to the database at `path`,
    /// whose schema is already in place.
    pub(super) fn open(path: &Path) -> StoreResult<Readers> {
        let count = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        let connections = (0..count)
            .map(|_| {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(internal)?;
                conn.busy_timeout(BUSY_TIMEOUT).map_err(internal)?;
                Ok(Mutex::new(conn))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Readers {
            connections: connections.into(),
        })
    }

    /// Runs `read` on a free connection on this thread, or on the blocking
    /// pool when every connection is in use.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        for connection in self.connections.iter() {
            match connection.try_lock() {
                Ok(mut conn) => return read(&mut conn),
                Err(TryLockError::Poisoned(p)) => return read(&mut p.into_inner()),
                Err(TryLockError::WouldBlock) => continue,
            }
        }
        self.read_blocking(read).await
    }

    /// Runs `read` on the blocking pool (a read that may take long: a page of
    /// keys, the usage of a tenant).
    pub(super) async fn read_blocking<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let connections = self.connections.clone();
        tokio::task::spawn_blocking(move || {
            // Waiting readers take the connections in turn.
            let index = NEXT.fetch_add(1, Ordering::Relaxed) % connections.len();
            let mut conn = connections[index].lock().unwrap_or_else(|p| p.into_inner());
            read(&mut conn)
        })
        .await
        .map_err(|e| StoreError::internal("SQLite reader", e))?
    }
}
