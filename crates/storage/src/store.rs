//! The redb-backed store.

use crate::{guarded, DbFile, Result, StorageError, Table};
use borsh::{BorshDeserialize, BorshSerialize};
use pouw_consensus::{genesis_block, genesis_state, BlockUndo, State, StateKey, StateValue};
use pouw_primitives::{codec, Block, ChainSpec, Hash, Header, Uint256};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "chain.redb";

/// Version of the table layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

const BLOCKS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("blocks");
const HEADERS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("headers");
const CANONICAL: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("canonical");
const STATE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("state");
const UNDO: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("undo");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

const META_SCHEMA: &str = "schema_version";
const META_SPEC: &str = "spec_hash";
const META_GENESIS: &str = "genesis_hash";
const META_TIP: &str = "tip";

/// When a commit reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: a block whose import returned is never lost (the default).
    #[default]
    Immediate,
    /// Commits are persisted some time later; a crash may lose the latest commits (never
    /// consistency). For benchmarks and throwaway nodes.
    Eventual,
}

/// Validation status of a block in the header index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BlockStatus {
    /// Cheap checks passed; not executed yet (a side-chain block).
    Unvalidated,
    /// Executed successfully (it is or was on the canonical chain).
    Valid,
    /// Failed a rule, or descends from a block that did.
    Invalid,
}

/// A header index record.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct HeaderEntry {
    /// The header (its `height` is the block height).
    pub header: Header,
    /// Sum of the work of this block and all its ancestors, 32 bytes big-endian.
    pub cumulative_work: [u8; 32],
    /// Validation status.
    pub status: BlockStatus,
    /// Arrival order (fork-choice ties go to the block seen first).
    pub seen: u64,
}

impl HeaderEntry {
    /// The cumulative work as a number.
    pub fn work(&self) -> Uint256 {
        Uint256::from_be_bytes(self.cumulative_work)
    }

    /// Stores `work` as the cumulative work.
    pub fn set_work(&mut self, work: Uint256) {
        self.cumulative_work = work.to_be_bytes();
    }
}

/// The hash identifying a chain spec in the database (over its canonical TOML form).
pub fn spec_hash(spec: &ChainSpec) -> Hash {
    Hash::tagged("pouw/chainspec", spec.to_toml().as_bytes())
}

/// The database of one node.
pub struct Store {
    db: redb::Database,
    durability: Durability,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish()
    }
}

fn decode_record<T: BorshSerialize + BorshDeserialize>(
    table: Table,
    key: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<T> {
    codec::decode(bytes).map_err(|e| StorageError::corrupt(table, key, e))
}

fn hash_key(table: Table, bytes: &[u8]) -> Result<Hash> {
    <[u8; 32]>::try_from(bytes)
        .map(Hash)
        .map_err(|_| StorageError::corrupt(table, hex(bytes), "key is not a 32-byte hash"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Opens the database in `datadir` (creating the directory and, on first open, the genesis
    /// block and state of `spec`), checks it belongs to `spec`, loads the state and checks it
    /// against the tip's `state_root`. Returns the store and the tip state.
    ///
    /// Every error names the file ([`StorageError::File`]); an existing file that is empty, not
    /// a file, or damaged is an error, never replaced by a fresh database.
    pub fn open(datadir: &Path, spec: &ChainSpec, durability: Durability) -> Result<(Self, State)> {
        std::fs::create_dir_all(datadir)
            .map_err(|source| StorageError::Io { path: datadir.display().to_string(), source })?;
        let path = datadir.join(DB_FILE);
        let genesis = genesis_block(spec)?;
        if !crate::file_exists(DbFile::Chain, &path)? {
            // A new database is built under a temporary name and renamed into place once its
            // genesis is durable: a crash while redb lays out a fresh file cannot leave a
            // half-written `chain.redb` behind (the next start just builds it again).
            let tmp = datadir.join(format!("{DB_FILE}.new"));
            guarded(DbFile::Chain, &tmp, || {
                match std::fs::remove_file(&tmp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(StorageError::Io { path: tmp.display().to_string(), source })
                    }
                }
                let fresh = Self {
                    db: redb::Builder::new().set_cache_size(crate::CACHE_BYTES).create(&tmp)?,
                    durability: Durability::Immediate,
                    path: tmp.clone(),
                };
                fresh.init(spec, &genesis)
            })?;
            crate::durable_rename(&tmp, &path)?;
        }
        let db = crate::open_existing(DbFile::Chain, &path)?;
        let store = Self { db, durability, path };
        let state = store.guard(|| store.check(spec, &genesis))?;
        Ok((store, state))
    }

    fn guard<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        guarded(DbFile::Chain, &self.path, f)
    }

    /// The checks of [`Store::open`] on an opened file; returns the tip state.
    fn check(&self, spec: &ChainSpec, genesis: &Block) -> Result<State> {
        let store = self;
        let genesis_hash = genesis.hash();
        let expected_spec = spec_hash(spec);
        // A file without a schema version is not a chain database (or its creation never
        // finished: new files are only renamed into place once complete).
        let schema: u32 = store.meta(META_SCHEMA)?;
        if schema != SCHEMA_VERSION {
            return Err(StorageError::SchemaVersion { found: schema, supported: SCHEMA_VERSION });
        }
        let stored_genesis: Hash = store.meta(META_GENESIS)?;
        if stored_genesis != genesis_hash {
            return Err(StorageError::GenesisMismatch {
                stored: stored_genesis,
                expected: genesis_hash,
            });
        }
        let stored_spec: Hash = store.meta(META_SPEC)?;
        if stored_spec != expected_spec {
            return Err(StorageError::SpecMismatch {
                stored: stored_spec,
                expected: expected_spec,
            });
        }
        let tip = store.tip()?;
        let tip_entry = store.header_entry(&tip)?.ok_or_else(|| {
            StorageError::corrupt(
                Table::Meta,
                META_TIP,
                format!("tip {tip} is not in the header index"),
            )
        })?;
        // The tip block itself (read and hash-checked): older blocks are checked when read.
        if store.block(&tip)?.is_none() {
            return Err(StorageError::corrupt(Table::Blocks, tip, "the tip block is missing"));
        }
        let height = tip_entry.header.height;
        match store.canonical_hash(height)? {
            Some(h) if h == tip => {}
            other => {
                return Err(StorageError::corrupt(
                    Table::Canonical,
                    height,
                    format!("expected the tip {tip}, found {other:?}"),
                ))
            }
        }
        if store.canonical_len()? != height + 1 {
            return Err(StorageError::corrupt(
                Table::Canonical,
                height,
                "canonical index does not end at the tip",
            ));
        }
        let state = store.load_state()?;
        if state.root() != tip_entry.header.state_root {
            return Err(StorageError::corrupt(
                Table::State,
                "*",
                format!(
                    "state root {} does not match the tip's state root {}",
                    state.root(),
                    tip_entry.header.state_root
                ),
            ));
        }
        tracing::debug!(target: "storage", path = %store.path.display(), height, %tip, "database opened");
        Ok(state)
    }

    fn init(&self, spec: &ChainSpec, genesis: &Block) -> Result<()> {
        let state = genesis_state(spec)?;
        let hash = genesis.hash();
        let mut w = self.begin_write()?;
        {
            let txn = &w.txn;
            // Create every table so later reads never see a missing one.
            txn.open_table(UNDO)?;
            txn.open_table(STATE)?;
        }
        w.put_block(&hash, genesis)?;
        let mut entry = HeaderEntry {
            header: genesis.header.clone(),
            cumulative_work: [0; 32],
            status: BlockStatus::Valid,
            seen: 0,
        };
        entry.set_work(genesis.header.target.work());
        w.put_header(&hash, &entry)?;
        let changes: BTreeMap<StateKey, Option<StateValue>> =
            state.entries().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        w.write_state(&changes)?;
        w.set_canonical(0, &hash)?;
        w.set_tip(&hash)?;
        w.put_meta(META_SCHEMA, &SCHEMA_VERSION)?;
        w.put_meta(META_SPEC, &spec_hash(spec))?;
        w.put_meta(META_GENESIS, &hash)?;
        w.commit()?;
        tracing::info!(target: "storage", genesis = %hash, "initialised a new database");
        Ok(())
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A [`StorageError::Corrupt`] of this file, for inconsistencies between records that only
    /// the caller sees (e.g. an index entry whose block is missing).
    pub fn corrupt(
        &self,
        table: Table,
        key: impl std::fmt::Display,
        reason: impl std::fmt::Display,
    ) -> StorageError {
        StorageError::corrupt(table, key, reason).in_file(DbFile::Chain, &self.path)
    }

    fn meta_raw(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.guard(|| {
            let txn = self.db.begin_read()?;
            let table = match txn.open_table(META) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    fn meta<T: BorshSerialize + BorshDeserialize>(&self, key: &str) -> Result<T> {
        let bytes = self
            .meta_raw(key)?
            .ok_or_else(|| StorageError::corrupt(Table::Meta, key, "missing"))?;
        decode_record(Table::Meta, key, &bytes)
    }

    /// The tip (best valid block) as last committed.
    pub fn tip(&self) -> Result<Hash> {
        self.guard(|| self.meta(META_TIP))
    }

    /// The genesis hash.
    pub fn genesis_hash(&self) -> Result<Hash> {
        self.guard(|| self.meta(META_GENESIS))
    }

    /// A block by hash.
    pub fn block(&self, hash: &Hash) -> Result<Option<Block>> {
        self.guard(|| {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(BLOCKS)?;
            let Some(v) = table.get(hash.as_bytes().as_slice())? else { return Ok(None) };
            let block: Block = decode_record(Table::Blocks, hash, v.value())?;
            if block.hash() != *hash {
                return Err(StorageError::corrupt(Table::Blocks, hash, "block hashes differently"));
            }
            Ok(Some(block))
        })
    }

    /// A header index record by hash.
    pub fn header_entry(&self, hash: &Hash) -> Result<Option<HeaderEntry>> {
        self.guard(|| {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(HEADERS)?;
            let Some(v) = table.get(hash.as_bytes().as_slice())? else { return Ok(None) };
            let entry: HeaderEntry = decode_record(Table::Headers, hash, v.value())?;
            if entry.header.hash() != *hash {
                return Err(StorageError::corrupt(
                    Table::Headers,
                    hash,
                    "header hashes differently",
                ));
            }
            Ok(Some(entry))
        })
    }

    /// Every header index record (loaded into memory by the chain on open).
    pub fn header_entries(&self) -> Result<Vec<(Hash, HeaderEntry)>> {
        self.guard(|| {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(HEADERS)?;
            let mut out = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
            for item in table.iter()? {
                let (k, v) = item?;
                let hash = hash_key(Table::Headers, k.value())?;
                let entry: HeaderEntry = decode_record(Table::Headers, hash, v.value())?;
                if entry.header.hash() != hash {
                    return Err(StorageError::corrupt(
                        Table::Headers,
                        hash,
                        "header hashes differently",
                    ));
                }
                out.push((hash, entry));
            }
            Ok(out)
        })
    }

    /// The canonical block at `height`.
    pub fn canonical_hash(&self, height: u64) -> Result<Option<Hash>> {
        self.guard(|| {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(CANONICAL)?;
            table.get(height)?.map(|v| hash_key(Table::Canonical, v.value())).transpose()
        })
    }

    fn canonical_len(&self) -> Result<u64> {
        self.guard(|| {
            let txn = self.db.begin_read()?;
            Ok(txn.open_table(CANONICAL)?.len()?)
        })
    }

    /// The canonical chain, genesis first. Fails if the index has a hole.
    pub fn canonical_chain(&self) -> Result<Vec<Hash>> {
        self.guard(|| {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(CANONICAL)?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let (k, v) = item?;
                if k.value() != out.len() as u64 {
                    return Err(StorageError::corrupt(
                        Table::Canonical,
                        k.value(),
                        "gap in the index",
                    ));
                }
                out.push(hash_key(Table::Canonical, v.value())?);
            }
            Ok(out)
        })
    }

    /// Undo data of an executed block.
    pub fn undo(&self, hash: &Hash) -> Result<Option<BlockUndo>> {
        self.guard(|| {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(UNDO)?;
            table
                .get(hash.as_bytes().as_slice())?
                .map(|v| decode_record(Table::Undo, hash, v.value()))
                .transpose()
        })
    }

    /// Loads the whole state (the root is recomputed from the entries).
    pub fn load_state(&self) -> Result<State> {
        self.guard(|| {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(STATE)?;
            let mut entries = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
            for item in table.iter()? {
                let (k, v) = item?;
                let key: StateKey = decode_record(Table::State, hex(k.value()), k.value())?;
                let value: StateValue = decode_record(Table::State, hex(k.value()), v.value())?;
                entries.push((key, value));
            }
            Ok(State::from_entries(entries))
        })
    }

    /// Starts the one write transaction of a block import or reorg.
    pub fn begin_write(&self) -> Result<StoreWriter> {
        self.guard(|| {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(match self.durability {
                Durability::Immediate => redb::Durability::Immediate,
                Durability::Eventual => redb::Durability::Eventual,
            });
            Ok(StoreWriter { txn, path: self.path.clone() })
        })
    }

    /// Test hook: writes raw `value` bytes at raw `key` in `table`, bypassing the codec.
    #[cfg(feature = "test-utils")]
    pub fn put_raw(&self, table: RawTable, key: &[u8], value: &[u8]) -> Result<()> {
        self.guard(|| {
            let txn = self.db.begin_write()?;
            {
                match table {
                    RawTable::Blocks => txn.open_table(BLOCKS)?.insert(key, value).map(drop)?,
                    RawTable::Headers => txn.open_table(HEADERS)?.insert(key, value).map(drop)?,
                    RawTable::State => txn.open_table(STATE)?.insert(key, value).map(drop)?,
                    RawTable::Undo => txn.open_table(UNDO)?.insert(key, value).map(drop)?,
                    RawTable::Meta => {
                        let k = std::str::from_utf8(key).expect("meta keys are text");
                        txn.open_table(META)?.insert(k, value).map(drop)?
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })
    }
}

/// Tables writable through [`Store::put_raw`].
#[cfg(feature = "test-utils")]
#[derive(Clone, Copy, Debug)]
pub enum RawTable {
    /// `blocks`.
    Blocks,
    /// `headers`.
    Headers,
    /// `state`.
    State,
    /// `undo`.
    Undo,
    /// `meta` (key must be UTF-8).
    Meta,
}

/// One atomic write: everything put through it lands together on [`StoreWriter::commit`], or
/// not at all (dropping it aborts).
pub struct StoreWriter {
    txn: redb::WriteTransaction,
    path: PathBuf,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreWriter")
    }
}

impl StoreWriter {
    /// Stores a block.
    pub fn put_block(&mut self, hash: &Hash, block: &Block) -> Result<()> {
        let Self { txn, path } = self;
        guarded(DbFile::Chain, path, || {
            txn.open_table(BLOCKS)?
                .insert(hash.as_bytes().as_slice(), codec::encode(block).as_slice())?;
            Ok(())
        })
    }

    /// Stores a header index record.
    pub fn put_header(&mut self, hash: &Hash, entry: &HeaderEntry) -> Result<()> {
        let Self { txn, path } = self;
        guarded(DbFile::Chain, path, || {
            txn.open_table(HEADERS)?
                .insert(hash.as_bytes().as_slice(), codec::encode(entry).as_slice())?;
            Ok(())
        })
    }

    /// Stores a block's undo data.
    pub fn put_undo(&mut self, hash: &Hash, undo: &BlockUndo) -> Result<()> {
        let Self { txn, path } = self;
        guarded(DbFile::Chain, path, || {
            txn.open_table(UNDO)?
                .insert(hash.as_bytes().as_slice(), codec::encode(undo).as_slice())?;
            Ok(())
        })
    }

    /// Writes state changes (`None` deletes the key).
    pub fn write_state(&mut self, changes: &BTreeMap<StateKey, Option<StateValue>>) -> Result<()> {
        let Self { txn, path } = self;
        guarded(DbFile::Chain, path, || {
            let mut table = txn.open_table(STATE)?;
            for (k, v) in changes {
                let key = codec::encode(k);
                match v {
                    Some(v) => {
                        table.insert(key.as_slice(), codec::encode(v).as_slice())?;
                    }
                    None => {
                        table.remove(key.as_slice())?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Sets the canonical block at `height`.
    pub fn set_canonical(&mut self, height: u64, hash: &Hash) -> Result<()> {
        let Self { txn, path } = self;
        guarded(DbFile::Chain, path, || {
            txn.open_table(CANONICAL)?.insert(height, hash.as_bytes().as_slice())?;
            Ok(())
        })
    }

    /// Removes the canonical entries above `height`.
    pub fn truncate_canonical(&mut self, height: u64) -> Result<()> {
        let Self { txn, path } = self;
        guarded(DbFile::Chain, path, || {
            let mut table = txn.open_table(CANONICAL)?;
            let Some(from) = height.checked_add(1) else { return Ok(()) };
            table.retain_in(from.., |_, _| false)?;
            Ok(())
        })
    }

    /// Sets the tip.
    pub fn set_tip(&mut self, hash: &Hash) -> Result<()> {
        self.put_meta(META_TIP, hash)
    }

    fn put_meta<T: BorshSerialize>(&mut self, key: &str, value: &T) -> Result<()> {
        let Self { txn, path } = self;
        guarded(DbFile::Chain, path, || {
            txn.open_table(META)?.insert(key, codec::encode(value).as_slice())?;
            Ok(())
        })
    }

    /// Commits everything written (durably, with the default [`Durability`]).
    pub fn commit(self) -> Result<()> {
        let Self { txn, path } = self;
        guarded(DbFile::Chain, &path, || {
            txn.commit()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ChainSpec {
        ChainSpec::devnet()
    }

    #[test]
    fn init_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, state) = Store::open(dir.path(), &spec(), Durability::Immediate).unwrap();
        let genesis = genesis_block(&spec()).unwrap();
        assert_eq!(store.tip().unwrap(), genesis.hash());
        assert_eq!(state.root(), genesis.header.state_root);
        assert_eq!(store.block(&genesis.hash()).unwrap().unwrap(), genesis);
        assert_eq!(store.canonical_chain().unwrap(), vec![genesis.hash()]);
        drop(store);
        let (store, state2) = Store::open(dir.path(), &spec(), Durability::Immediate).unwrap();
        assert_eq!(state2, state);
        assert_eq!(store.header_entries().unwrap().len(), 1);
    }

    #[test]
    fn a_half_built_database_from_a_crash_is_rebuilt() {
        // A crash while a fresh database was being laid out leaves only the temporary file.
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(format!("{DB_FILE}.new"));
        std::fs::write(&tmp, b"redb header cut short by SIGKILL").unwrap();
        let (store, _) = Store::open(dir.path(), &spec(), Durability::Immediate).unwrap();
        assert_eq!(store.tip().unwrap(), genesis_block(&spec()).unwrap().hash());
        assert!(!tmp.exists());
        assert!(dir.path().join(DB_FILE).exists());
    }

    #[test]
    fn other_spec_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &spec(), Durability::Immediate).unwrap());
        let mut other = spec();
        other.genesis.timestamp.0 += 1;
        let err = Store::open(dir.path(), &other, Durability::Immediate).unwrap_err();
        assert!(matches!(err.cause(), StorageError::GenesisMismatch { .. }), "{err}");
        let mut other = spec();
        other.max_future_ms += 1;
        let err = Store::open(dir.path(), &other, Durability::Immediate).unwrap_err();
        assert!(matches!(err.cause(), StorageError::SpecMismatch { .. }), "{err}");
    }

    #[test]
    fn writer_dropped_without_commit_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &spec(), Durability::Immediate).unwrap();
        let mut w = store.begin_write().unwrap();
        w.set_tip(&Hash::digest(b"x")).unwrap();
        w.truncate_canonical(0).unwrap();
        drop(w);
        assert_eq!(store.tip().unwrap(), genesis_block(&spec()).unwrap().hash());
    }

    #[test]
    fn header_entry_round_trips_work() {
        let mut e = HeaderEntry {
            header: genesis_block(&spec()).unwrap().header,
            cumulative_work: [0; 32],
            status: BlockStatus::Unvalidated,
            seen: 3,
        };
        let w = Uint256::from(123_456_789u64) << 100;
        e.set_work(w);
        assert_eq!(e.work(), w);
        let back: HeaderEntry = codec::decode(&codec::encode(&e)).unwrap();
        assert_eq!(back, e);
    }
}
