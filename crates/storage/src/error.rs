//! Storage errors. Every one of them is fatal for the node: it stops rather than run on data it
//! cannot trust, or on a state ahead of what is on disk.
//!
//! Every error out of [`Store`](crate::Store) and [`ProofStore`](crate::ProofStore) is a
//! [`StorageError::File`]: it names the database file, says what is wrong with it in words
//! (corrupt, locked, out of space, ...) and what to do about it.

use pouw_primitives::Hash;
use std::{fmt, io, path::Path, path::PathBuf};

/// One of the two databases of a data directory (named in error messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbFile {
    /// `chain.redb`: blocks, header index, canonical chain, state, undo data, meta.
    Chain,
    /// `proofs.redb`: proof data.
    Proofs,
}

impl fmt::Display for DbFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Chain => "chain database",
            Self::Proofs => "proof database",
        })
    }
}

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
    /// A file system operation on `path` failed (creating the data directory, laying out or
    /// renaming a new database file, reading a file's metadata).
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The database engine failed (I/O error, lock held by another process, engine-level
    /// corruption detected by redb, ...).
    #[error("database error: {0}")]
    Db(Box<redb::Error>),
    /// The database file is damaged in a way the engine cannot describe by a record: empty,
    /// cut short, or so malformed that reading it failed.
    #[error("damaged database file: {0}")]
    Damaged(String),
    /// Something other than a database file is where the database file should be.
    #[error("not a database file: it is {0}")]
    NotAFile(&'static str),
    /// A failure of one database file: the file, and the failure (never itself a `File`).
    #[error("{}", file_message(*.db, .path, .error))]
    File {
        /// Which database.
        db: DbFile,
        /// Its path.
        path: PathBuf,
        /// What went wrong.
        error: Box<Self>,
    },
}

/// What kind of failure an error is, for the words of its message.
enum Kind<'a> {
    Corrupt(String),
    NotAFile(&'static str),
    Locked,
    NoSpace(&'a io::Error),
    Io(&'a io::Error),
    PreviousIo,
    Other,
}

fn kind(e: &StorageError) -> Kind<'_> {
    match e {
        StorageError::Corrupt { table, key, reason } => {
            Kind::Corrupt(format!("table {table}, key {key}: {reason}"))
        }
        StorageError::Damaged(reason) => Kind::Corrupt(reason.clone()),
        StorageError::NotAFile(what) => Kind::NotAFile(what),
        StorageError::Db(e) => match &**e {
            redb::Error::Corrupted(reason) => Kind::Corrupt(reason.clone()),
            redb::Error::DatabaseAlreadyOpen => Kind::Locked,
            redb::Error::PreviousIo => Kind::PreviousIo,
            // redb's word for a file that does not start with its magic number.
            redb::Error::Io(io) if io.kind() == io::ErrorKind::InvalidData => Kind::Corrupt(
                "it does not start with a redb header (damaged header, or not a redb file)".into(),
            ),
            redb::Error::Io(io) => io_kind(io),
            _ => Kind::Other,
        },
        StorageError::Io { source, .. } => io_kind(source),
        StorageError::File { error, .. } => kind(error),
        _ => Kind::Other,
    }
}

fn io_kind(e: &io::Error) -> Kind<'_> {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            Kind::Corrupt(format!("the file ends early, it was cut short ({e})"))
        }
        io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge | io::ErrorKind::QuotaExceeded => {
            Kind::NoSpace(e)
        }
        _ => Kind::Io(e),
    }
}

/// What to do about a damaged file.
const CORRUPT_ADVICE: &str =
    "restore it from a backup, or delete the data directory and restart to resync";

fn file_message(db: DbFile, path: &Path, error: &StorageError) -> String {
    let path = path.display();
    match kind(error) {
        Kind::Corrupt(reason) => format!("{db} {path} is corrupt: {reason}; {CORRUPT_ADVICE}"),
        Kind::NotAFile(what) => {
            format!("{db} {path} is not a database file: it is {what}; move it out of the way")
        }
        Kind::Locked => {
            format!("{db} {path} is locked: another process (a running node?) has it open")
        }
        Kind::NoSpace(e) => format!(
            "{db} {path} could not be written: {e}; the disk is full or the file size limit is \
             reached: free space and restart (the node goes on from the last block it stored)"
        ),
        // EIO (5 on every platform the node runs on): the device itself failed.
        Kind::Io(e) if e.raw_os_error() == Some(5) => format!(
            "{db} {path} could not be read or written: {e}; the disk reported an error: check it \
             (e.g. the system log) before restarting"
        ),
        Kind::Io(e) => format!("{db} {path}: I/O error: {e}"),
        Kind::PreviousIo => {
            format!("{db} {path}: an earlier write failed, the database must be reopened (restart)")
        }
        Kind::Other => format!("{db} {path}: {error}"),
    }
}

impl StorageError {
    /// The failure itself, without the file it happened in.
    pub fn cause(&self) -> &Self {
        match self {
            Self::File { error, .. } => error.cause(),
            other => other,
        }
    }

    /// True if the file's contents are damaged (a record, the engine's structures, or the
    /// file's length): the database must be restored or rebuilt.
    pub fn is_corrupt(&self) -> bool {
        matches!(kind(self), Kind::Corrupt(_))
    }

    /// True if another process holds the database open.
    pub fn is_locked(&self) -> bool {
        matches!(kind(self), Kind::Locked)
    }

    /// True if a write failed for lack of space (`ENOSPC`, `EFBIG`, `EDQUOT`).
    pub fn is_out_of_space(&self) -> bool {
        matches!(kind(self), Kind::NoSpace(_))
    }

    /// The table of a [`StorageError::Corrupt`] record.
    pub fn corrupt_table(&self) -> Option<Table> {
        match self.cause() {
            Self::Corrupt { table, .. } => Some(*table),
            _ => None,
        }
    }

    /// This error as a failure of the file `path` (unchanged if it already names a file).
    pub(crate) fn in_file(self, db: DbFile, path: &Path) -> Self {
        match self {
            Self::File { .. } => self,
            error => Self::File { db, path: path.to_path_buf(), error: Box::new(error) },
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn in_chain_file(e: StorageError) -> String {
        e.in_file(DbFile::Chain, Path::new("/d/chain.redb")).to_string()
    }

    #[test]
    fn messages_name_the_file_the_failure_and_what_to_do() {
        let io =
            |code| StorageError::Db(Box::new(redb::Error::Io(io::Error::from_raw_os_error(code))));
        let full = io(28).in_file(DbFile::Chain, Path::new("/d/chain.redb"));
        assert!(full.is_out_of_space() && !full.is_corrupt());
        assert!(full.to_string().starts_with(
            "chain database /d/chain.redb could not be written: No space left on device"
        ));
        assert!(in_chain_file(io(27)).contains("could not be written: File too large"));
        assert!(in_chain_file(io(5)).contains("the disk reported an error"));
        assert_eq!(
            in_chain_file(io(13)),
            "chain database /d/chain.redb: I/O error: Permission denied (os error 13)"
        );
        let locked = StorageError::Db(Box::new(redb::Error::DatabaseAlreadyOpen))
            .in_file(DbFile::Proofs, Path::new("/d/proofs.redb"));
        assert!(locked.is_locked());
        assert!(locked.to_string().starts_with("proof database /d/proofs.redb is locked"));
        let corrupt = StorageError::corrupt(Table::Blocks, "ab", "block hashes differently")
            .in_file(DbFile::Chain, Path::new("/d/chain.redb"));
        assert_eq!(corrupt.corrupt_table(), Some(Table::Blocks));
        assert_eq!(
            corrupt.to_string(),
            format!(
                "chain database /d/chain.redb is corrupt: table blocks, key ab: block hashes \
                 differently; {CORRUPT_ADVICE}"
            )
        );
        // Wrapping twice keeps the first file.
        let again = corrupt.in_file(DbFile::Proofs, Path::new("/x"));
        assert!(again.to_string().starts_with("chain database /d/chain.redb is corrupt"));
    }
}
