//! Storage errors. Every one of them is fatal for the node: it stops rather than run on data it
//! cannot trust.

use pouw_primitives::Hash;
use std::fmt;

/// The tables of the database (for error messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Table {
    /// Blocks by hash.
    Blocks,
    /// Header index by hash.
    Headers,
    /// Canonical chain by height.
    Canonical,
    /// State entries.
    State,
    /// Undo data by block hash.
    Undo,
    /// Metadata.
    Meta,
    /// Proof data (`proofs.redb`).
    Proofs,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Blocks => "blocks",
            Self::Headers => "headers",
            Self::Canonical => "canonical",
            Self::State => "state",
            Self::Undo => "undo",
            Self::Meta => "meta",
            Self::Proofs => "proof_blobs",
        })
    }
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A stored record is unreadable, missing where the index points to it, or inconsistent
    /// with the others. The database must be restored or rebuilt.
    #[error("corrupted database: table {table}, key {key}: {reason}")]
    Corrupt {
        /// Table holding the record.
        table: Table,
        /// The record's key (hex or text).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The database was created for another genesis block.
    #[error("database genesis {stored} does not match the chain spec's genesis {expected}")]
    GenesisMismatch {
        /// Genesis hash in the database.
        stored: Hash,
        /// Genesis hash of the chain spec given.
        expected: Hash,
    },
    /// The database was created with another chain spec.
    #[error("database chain spec hash {stored} does not match the chain spec given ({expected})")]
    SpecMismatch {
        /// Spec hash in the database.
        stored: Hash,
        /// Hash of the chain spec given.
        expected: Hash,
    },
    /// The database was written by an incompatible version of the node.
    #[error("database schema version {found} is not supported (this node reads {supported})")]
    SchemaVersion {
        /// Version found.
        found: u32,
        /// Version this node reads and writes.
        supported: u32,
    },
    /// The genesis block or state could not be built from the spec.
    #[error("cannot build genesis: {0}")]
    Genesis(Box<pouw_consensus::ConsensusError>),
    /// The data directory could not be created.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// Directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The database engine failed (I/O error, lock held by another process, engine-level
    /// corruption detected by redb, ...).
    #[error("database error: {0}")]
    Db(Box<redb::Error>),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                Self::Db(Box::new(e.into()))
            }
        }
    )*};
}
impl From<pouw_consensus::ConsensusError> for StorageError {
    fn from(e: pouw_consensus::ConsensusError) -> Self {
        Self::Genesis(Box::new(e))
    }
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl StorageError {
    /// A [`StorageError::Corrupt`].
    pub(crate) fn corrupt(table: Table, key: impl fmt::Display, reason: impl fmt::Display) -> Self {
        Self::Corrupt { table, key: key.to_string(), reason: reason.to_string() }
    }
}
