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

use crate::{guarded, DbFile, Result, StorageError, Table};
use pouw_consensus::pouw::ProofData;
use pouw_primitives::{codec, Hash, IterationBody, IterationMessage};
use redb::TableDefinition;
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
    /// The Merkle proofs of a client-task batch's samples (key: the winning message's body
    /// id; absent when empty, as for a filler task).
    SampleProofs,
}

impl ProofKind {
    fn tag(self) -> u8 {
        match self {
            Self::Model => 1,
            Self::Residual => 2,
            Self::Batch => 3,
            Self::Message => 4,
            Self::SampleProofs => 5,
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
    /// Opens (or creates) `proofs.redb` in `datadir`. Every error names the file; an existing
    /// file that is empty, not a file, or damaged is an error, never replaced.
    pub fn open(datadir: &Path) -> Result<Self> {
        std::fs::create_dir_all(datadir)
            .map_err(|source| StorageError::Io { path: datadir.display().to_string(), source })?;
        let path = datadir.join(PROOFS_FILE);
        if !crate::file_exists(DbFile::Proofs, &path)? {
            // Built under a temporary name and renamed into place (see `Store::open`).
            let tmp = datadir.join(format!("{PROOFS_FILE}.new"));
            guarded(DbFile::Proofs, &tmp, || {
                match std::fs::remove_file(&tmp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(StorageError::Io { path: tmp.display().to_string(), source })
                    }
                }
                let db = redb::Builder::new().set_cache_size(crate::CACHE_BYTES).create(&tmp)?;
                let txn = db.begin_write()?;
                txn.open_table(BLOBS)?;
                txn.commit()?;
                Ok(())
            })?;
            crate::durable_rename(&tmp, &path)?;
        }
        let db = crate::open_existing(DbFile::Proofs, &path)?;
        let store = Self { db, path };
        // The one table must be there (an empty file laid out by another program is not ours).
        store.len()?;
        Ok(store)
    }

    fn guard<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        guarded(DbFile::Proofs, &self.path, f)
    }

    /// Stores several records in one durable transaction.
    pub fn put_many(&self, records: &[(ProofKind, Hash, &[u8])]) -> Result<()> {
        self.guard(|| {
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(BLOBS)?;
                for (kind, hash, bytes) in records {
                    table.insert(key(*kind, hash).as_slice(), *bytes)?;
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// The record `(kind, hash)`, if stored.
    pub fn get(&self, kind: ProofKind, hash: &Hash) -> Result<Option<Vec<u8>>> {
        self.guard(|| {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(BLOBS)?;
            Ok(table.get(key(kind, hash).as_slice())?.map(|v| v.value().to_vec()))
        })
    }

    /// True if `(kind, hash)` is stored.
    pub fn contains(&self, kind: ProofKind, hash: &Hash) -> Result<bool> {
        Ok(self.get(kind, hash)?.is_some())
    }

    /// Stores the proof data of a block whose winning message is `winning`: each piece under the
    /// hash the message names it by (start model, start residual and optimiser state, batch, peer
    /// messages), in one durable transaction. The caller has checked the data against those
    /// hashes (a replay does), so what is stored is what the block commits to.
    pub fn put_proof(&self, winning: &IterationBody, data: &ProofData) -> Result<()> {
        let params = codec::encode(&bits(&data.start_params));
        let residual = codec::encode(&(bits(&data.start_residual), bits(&data.start_velocity)));
        let peers: Vec<Vec<u8>> = data.peers.iter().map(codec::encode).collect();
        let mut records: Vec<(ProofKind, Hash, &[u8])> = vec![
            (ProofKind::Model, winning.start_model_hash, &params),
            (ProofKind::Residual, winning.start_residual_hash, &residual),
            (ProofKind::Batch, winning.batch_hash, &data.batch),
        ];
        for (id, bytes) in winning.peer_msgs.iter().zip(&peers) {
            records.push((ProofKind::Message, *id, bytes));
        }
        let sample_proofs = codec::encode(&data.sample_proofs);
        if !data.sample_proofs.is_empty() {
            records.push((ProofKind::SampleProofs, winning.id(), &sample_proofs));
        }
        self.put_many(&records)
    }

    /// The proof data a block with winning message `winning` needs for its replay; `None` if any
    /// piece is missing. A stored piece that does not decode is a [`StorageError::Corrupt`].
    /// (Whether the pieces hash to what `winning` names is the replay's check.)
    pub fn get_proof(&self, winning: &IterationBody) -> Result<Option<ProofData>> {
        let corrupt = |kind: ProofKind, hash: &Hash, e: codec::CodecError| {
            StorageError::corrupt(Table::Proofs, format!("{kind:?}:{hash}"), e)
                .in_file(DbFile::Proofs, &self.path)
        };
        let Some(params) = self.get(ProofKind::Model, &winning.start_model_hash)? else {
            return Ok(None);
        };
        let Some(residual) = self.get(ProofKind::Residual, &winning.start_residual_hash)? else {
            return Ok(None);
        };
        let Some(batch) = self.get(ProofKind::Batch, &winning.batch_hash)? else {
            return Ok(None);
        };
        let params: Vec<u32> = codec::decode(&params)
            .map_err(|e| corrupt(ProofKind::Model, &winning.start_model_hash, e))?;
        let (residual, velocity): (Vec<u32>, Vec<u32>) = codec::decode(&residual)
            .map_err(|e| corrupt(ProofKind::Residual, &winning.start_residual_hash, e))?;
        let mut peers = Vec::with_capacity(winning.peer_msgs.len());
        for id in &winning.peer_msgs {
            let Some(bytes) = self.get(ProofKind::Message, id)? else {
                return Ok(None);
            };
            let msg: IterationMessage =
                codec::decode(&bytes).map_err(|e| corrupt(ProofKind::Message, id, e))?;
            peers.push(msg);
        }
        let id = winning.id();
        let sample_proofs: Vec<Hash> = match self.get(ProofKind::SampleProofs, &id)? {
            Some(bytes) => {
                codec::decode(&bytes).map_err(|e| corrupt(ProofKind::SampleProofs, &id, e))?
            }
            None => Vec::new(),
        };
        Ok(Some(ProofData {
            start_params: floats(&params),
            start_residual: floats(&residual),
            start_velocity: floats(&velocity),
            batch,
            peers,
            sample_proofs,
        }))
    }

    /// Number of records.
    pub fn len(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        self.guard(|| {
            let txn = self.db.begin_read()?;
            Ok(txn.open_table(BLOBS)?.len()?)
        })
    }

    /// True if empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn floats(bits: &[u32]) -> Vec<f32> {
    bits.iter().map(|b| f32::from_bits(*b)).collect()
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
            store
                .put_many(&[(ProofKind::Model, h, b"params"), (ProofKind::Batch, h, b"batch")])
                .unwrap();
            assert_eq!(store.get(ProofKind::Model, &h).unwrap().as_deref(), Some(&b"params"[..]));
            assert_eq!(store.get(ProofKind::Batch, &h).unwrap().as_deref(), Some(&b"batch"[..]));
            assert_eq!(store.get(ProofKind::Residual, &h).unwrap(), None);
        }
        let store = ProofStore::open(dir.path()).unwrap();
        assert_eq!(store.len().unwrap(), 2);
        assert!(store.contains(ProofKind::Model, &h).unwrap());
    }

    #[test]
    fn proof_data_round_trips_bit_for_bit_and_missing_pieces_give_none() {
        use pouw_primitives::{Keypair, PublicKey};
        let dir = tempfile::tempdir().unwrap();
        let store = ProofStore::open(dir.path()).unwrap();
        let key = Keypair::from_label("peer");
        let peer = IterationBody {
            task_id: Hash::digest(b"task"),
            miner: key.public(),
            epoch: 0,
            iteration: 3,
            batch_hash: Hash::digest(b"b"),
            start_model_hash: Hash::digest(b"m"),
            start_residual_hash: Hash::digest(b"r"),
            peer_msgs: vec![],
            map: vec![1, 2, 0x8000_0003],
            loss: 1,
            accuracy: 2,
            commitment: Hash::ZERO,
            order_seed: Hash::ZERO,
        }
        .sign(&key);
        let data = ProofData {
            start_params: vec![1.5, -0.0, f32::MIN_POSITIVE / 2.0],
            start_residual: vec![0.25, -3.0, 0.0],
            start_velocity: vec![],
            batch: vec![7; 40],
            peers: vec![peer.clone()],
            sample_proofs: vec![Hash::digest(b"sibling"), Hash::digest(b"uncle")],
        };
        let winning = IterationBody {
            miner: PublicKey::default(),
            iteration: 9,
            peer_msgs: vec![peer.id()],
            ..peer.body
        };
        assert_eq!(store.get_proof(&winning).unwrap(), None);
        store.put_proof(&winning, &data).unwrap();
        let back = store.get_proof(&winning).unwrap().unwrap();
        assert_eq!(bits(&back.start_params), bits(&data.start_params));
        assert_eq!(bits(&back.start_residual), bits(&data.start_residual));
        assert_eq!(back.batch, data.batch);
        assert_eq!(back.peers, data.peers);
        assert_eq!(back.sample_proofs, data.sample_proofs);
        let mut other = winning.clone();
        other.peer_msgs.push(Hash::digest(b"unknown peer"));
        assert_eq!(store.get_proof(&other).unwrap(), None);
        store.put_many(&[(ProofKind::Model, winning.start_model_hash, b"\x05")]).unwrap();
        let err = store.get_proof(&winning).unwrap_err();
        assert!(err.is_corrupt());
        let text = err.to_string();
        let path = dir.path().join(PROOFS_FILE);
        assert!(
            text.starts_with(&format!("proof database {} is corrupt:", path.display())),
            "{text}"
        );
    }
}
