//! pouw-storage: the node's embedded, crash-safe database (one per data directory).
//!
//! Built on [redb](https://docs.rs/redb) (pure Rust, ACID, copy-on-write B-trees). One file,
//! `chain.redb`, holds these tables, every record in the canonical codec:
//!
//! | table       | key                    | value                                              |
//! |-------------|------------------------|----------------------------------------------------|
//! | `blocks`    | block hash             | the [`Block`]                                      |
//! | `headers`   | block hash             | [`HeaderEntry`]: header, cumulative work, status   |
//! | `canonical` | height (`u64`)         | block hash                                         |
//! | `state`     | encoded [`StateKey`]   | encoded [`StateValue`]                             |
//! | `undo`      | block hash             | [`BlockUndo`] of an executed block                 |
//! | `meta`      | name                   | schema version, spec hash, genesis hash, tip       |
//!
//! Crash safety: all writes go through one [`StoreWriter`] (one redb write transaction), and the
//! chain commits a block (block, header index, state changes, undo data, canonical index, tip)
//! or a whole reorg in one of them. With the default [`Durability::Immediate`] a commit is on disk
//! when [`StoreWriter::commit`] returns; a crash before that leaves the previous commit intact.
//!
//! Fail-stop on bad data: every record is decoded with the canonical codec on read; a record that
//! does not decode, a missing record the index points to, a state that does not hash to the tip's
//! `state_root`, or a database made for another chain spec gives a named [`StorageError`] and the
//! node refuses to start, never runs on it.
//!
//! Feature `test-utils`: [`Store::put_raw`] writes raw bytes into a table (corruption tests).

mod error;
mod proofs;
mod store;

pub use error::{StorageError, Table};
pub use proofs::{ProofKind, ProofStore, PROOFS_FILE};
pub use store::{
    spec_hash, BlockStatus, Durability, HeaderEntry, Store, StoreWriter, DB_FILE, SCHEMA_VERSION,
};

#[cfg(feature = "test-utils")]
pub use store::RawTable;

// Re-exported for the docs above.
#[allow(unused_imports)]
use {
    pouw_consensus::{BlockUndo, StateKey, StateValue},
    pouw_primitives::Block,
};

/// Renames a fully written file into place: fsync the file, rename, fsync the directory, so
/// that after a crash either the old name is absent or the new file is complete.
pub(crate) fn durable_rename(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    let io = |path: &std::path::Path, source| StorageError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::File::open(from).and_then(|f| f.sync_all()).map_err(|e| io(from, e))?;
    std::fs::rename(from, to).map_err(|e| io(to, e))?;
    if let Some(dir) = to.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))?;
    }
    Ok(())
}

/// `Result` with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
