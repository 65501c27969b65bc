//! The proof-data store: the bulky inputs of a PoUW replay, addressed by hash.
//!
//! A block names its proof data by hash (design/003): the start model and start residual of the
//! winning iteration, the mini-batch, and the peer messages applied. Every node that must replay
//! a block needs them, so they are kept in `proofs.redb` beside the chain database, one record
//! per `(kind, hash)`; identical pieces shared by several blocks are stored once.
//!
//! Write order: a node stores a block's proof data (durably) *before* it commits the block, so
//! a crash can leave unreferenced records (harmless, never read) but never a block whose proof
//! is missing.
//!
//! Pruning rule: nothing is pruned. `pouw chain verify` replays every block from genesis, and a
//! node serving sync must be able to hand any block's proof to a peer that replays it, so the
//! data of every stored block is kept for as long as the block is. (Records of blocks that were
//! reorged away are kept too: the branch may come back.)

use crate::{Result, StorageError};
use pouw_primitives::Hash;
use redb::{ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

/// File name of the proof-data database in a data directory.
pub const PROOFS_FILE: &str = "proofs.redb";

const BLOBS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("proof_blobs");

/// What a proof record holds (part of its key, so two kinds never collide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ProofKind {
    /// A model's parameters (key: model hash).
    Model,
    /// A gradient residual and optimiser state (key: residual hash).
    Residual,
    /// A mini-batch in canonical bytes (key: batch hash).
    Batch,
    /// An iteration message (key: message id).
    Message,
}

impl ProofKind {
    fn tag(self) -> u8 {
        match self {
            Self::Model => 1,
            Self::Residual => 2,
            Self::Batch => 3,
            Self::Message => 4,
        }
    }
}

fn key(kind: ProofKind, hash: &Hash) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = kind.tag();
    k[1..].copy_from_slice(hash.as_bytes());
    k
}

/// The proof-data database of one node.
pub struct ProofStore {
    db: redb::Database,
    path: PathBuf,
}

impl std::fmt::Debug for ProofStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofStore").field("path", &self.path).finish()
    }
}

impl ProofStore {
    /// Opens (or creates) `proofs.redb` in `datadir`.
    pub fn open(datadir: &Path) -> Result<Self> {
        std::fs::create_dir_all(datadir)
            .map_err(|source| StorageError::Io { path: datadir.display().to_string(), source })?;
        let path = datadir.join(PROOFS_FILE);
        let db = redb::Database::create(&path)?;
        let txn = db.begin_write()?;
        txn.open_table(BLOBS)?;
        txn.commit()?;
        Ok(Self { db, path })
    }

    /// Stores several records in one durable transaction.
    pub fn put_many(&self, records: &[(ProofKind, Hash, &[u8])]) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(BLOBS)?;
            for (kind, hash, bytes) in records {
                table.insert(key(*kind, hash).as_slice(), *bytes)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The record `(kind, hash)`, if stored.
    pub fn get(&self, kind: ProofKind, hash: &Hash) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOBS)?;
        Ok(table.get(key(kind, hash).as_slice())?.map(|v| v.value().to_vec()))
    }

    /// True if `(kind, hash)` is stored.
    pub fn contains(&self, kind: ProofKind, hash: &Hash) -> Result<bool> {
        Ok(self.get(kind, hash)?.is_some())
    }

    /// Number of records.
    pub fn len(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(BLOBS)?.len()?)
    }

    /// True if empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let h = Hash::digest(b"model");
        {
            let store = ProofStore::open(dir.path()).unwrap();
            assert!(store.is_empty().unwrap());
            store.put_many(&[(ProofKind::Model, h, b"params"), (ProofKind::Batch, h, b"batch")]).unwrap();
            assert_eq!(store.get(ProofKind::Model, &h).unwrap().as_deref(), Some(&b"params"[..]));
            assert_eq!(store.get(ProofKind::Batch, &h).unwrap().as_deref(), Some(&b"batch"[..]));
            assert_eq!(store.get(ProofKind::Residual, &h).unwrap(), None);
        }
        let store = ProofStore::open(dir.path()).unwrap();
        assert_eq!(store.len().unwrap(), 2);
        assert!(store.contains(ProofKind::Model, &h).unwrap());
    }
}
