//! Reading a function's versions out of SQLite rows, for the store's queries.

use super::internal;
use crate::error::StoreResult;
use kiln_api::{BinaryKind, Version};
use rusqlite::{OptionalExtension, Transaction, params};

pub(super) fn read_version(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Version> {
    let config: String = row.get(first + 3)?;
    let digest: String = row.get(first + 1)?;
    Ok(Version {
        number: row.get(first)?,
        digest: digest.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                first + 1,
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        })?,
        size: row.get(first + 2)?,
        config: serde_json::from_str(&config).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                first + 3,
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        })?,
        created_at: row.get(first + 4)?,
        kind: row
            .get::<_, Option<String>>(first + 5)?
            .and_then(|k| BinaryKind::from_name(&k)),
    })
}

pub(super) fn version(
    tx: &Transaction<'_>,
    function_id: i64,
    number: u32,
) -> StoreResult<Option<Version>> {
    tx.query_row(
        "SELECT number, digest, size, config, created_at, kind FROM versions
         WHERE function_id = ?1 AND number = ?2",
        params![function_id, number],
        |r| read_version(r, 0),
    )
    .optional()
    .map_err(internal)
}
