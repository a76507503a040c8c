//! What can go wrong in a store, with the cause kept as the error's source.

/// Any error a backend reports, kept as the source of a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong in a store. `Conflict` and `NotFound` are the caller's to
/// answer; the others are the store's own failures and keep their cause (the
/// SQLite, PostgreSQL, S3 or I/O error) as their `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// It exists already (a tenant or token name).
    #[error("{0}")]
    Conflict(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be applied to what is stored (incrementing a value
    /// that is not a number).
    #[error("{0}")]
    Invalid(String),
    /// It would take the tenant past a storage quota; nothing was changed.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The store failed.
    #[error("storage failure: {context}")]
    Internal {
        /// What the store was doing.
        context: String,
        /// The backend's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The disk (or quota) holding the store has no room left.
    #[error("storage is full: {context}")]
    Full {
        /// What the store was doing.
        context: String,
        /// The backend's error.
        #[source]
        source: Option<BoxError>,
    },
    /// The store's server cannot be reached now (a cluster's PostgreSQL or S3).
    #[error("storage unavailable: {context}")]
    Unavailable {
        /// What the store was doing.
        context: String,
        /// The backend's error.
        #[source]
        source: Option<BoxError>,
    },
}

impl StoreError {
    /// The store failed doing `context`, because of `source`.
    pub fn internal(context: impl Into<String>, source: impl Into<BoxError>) -> StoreError {
        StoreError::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// The store found something wrong that no backend error explains.
    pub fn inconsistent(context: impl Into<String>) -> StoreError {
        StoreError::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// No room left doing `context`.
    pub fn full(context: impl Into<String>, source: impl Into<BoxError>) -> StoreError {
        StoreError::Full {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// The backend cannot be reached doing `context`.
    pub fn unavailable(context: impl Into<String>, source: impl Into<BoxError>) -> StoreError {
        StoreError::Unavailable {
            context: context.into(),
            source: Some(source.into()),
        }
    }
}

/// Refuses a database whose schema has more migrations applied than this build
/// knows (`known`): a newer kiln wrote it.
pub(crate) fn check_schema(applied: usize, known: usize) -> StoreResult<()> {
    if applied > known {
        return Err(StoreError::inconsistent(format!(
            "the database schema is version {applied}, newer than this kiln knows ({known}): \
             upgrade kiln"
        )));
    }
    Ok(())
}

/// Whether an I/O error means the storage has no room left (ENOSPC, EDQUOT).
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// What every store method returns.
pub type StoreResult<T> = Result<T, StoreError>;
