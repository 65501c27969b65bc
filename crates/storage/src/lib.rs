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
//! node refuses to start, never runs on it. The same goes for the file itself: an empty file, a
//! directory in its place, bytes the engine rejects (or panics on: caught and turned into an
//! error), a file cut short. A failed write (full disk) is an error naming the file and the
//! cause; redb keeps the last committed transaction intact (`docs/storage-faults.md`).
//!
//! Feature `test-utils`: [`Store::put_raw`] writes raw bytes into a table (corruption tests).

mod error;
mod proofs;
mod store;

pub use error::{DbFile, StorageError, Table};
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

std::thread_local! {
    /// True while this thread runs engine calls under [`guarded`].
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Where the last panic under [`guarded`] on this thread happened.
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once) a panic hook that keeps panics under [`guarded`] quiet: they are reported
/// as errors, with their message and location. Other panics go to the hook that was there.
fn quiet_guarded_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(std::cell::Cell::get) {
                // The engine's source file from its crate directory on (`redb-x.y.z/src/...`).
                let at = info.location().map(|l| {
                    let file = l.file();
                    let short = file.find("redb-").map_or(file, |i| &file[i..]);
                    format!("{short}:{}", l.line())
                });
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f` (calls into the database engine) for the database `db` at `path`: its errors name
/// the file, and a panic of the engine (redb may panic on pages that are not what it wrote)
/// becomes a [`StorageError::Damaged`] instead of taking the node down mid-operation.
pub(crate) fn guarded<T>(
    db: DbFile,
    path: &std::path::Path,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    quiet_guarded_panics();
    let outer = GUARDED.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    match result {
        Ok(r) => r.map_err(|e| e.in_file(db, path)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let at = PANIC_AT.with(|p| p.borrow_mut().take()).unwrap_or_default();
            let error = StorageError::Damaged(format!(
                "the database engine failed on its contents ({message}{}{at})",
                if at.is_empty() { "" } else { " at " }
            ));
            Err(error.in_file(db, path))
        }
    }
}

/// Whether the database file at `path` exists (an error if that cannot be told).
pub(crate) fn file_exists(db: DbFile, path: &std::path::Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => {
            Err(StorageError::Io { path: path.display().to_string(), source }.in_file(db, path))
        }
    }
}

/// Opens the existing database file at `path`. Refuses what is not a regular, non-empty file:
/// redb would lay out a new, empty database in an empty file, and a node would silently start
/// over from genesis.
pub(crate) fn open_existing(db: DbFile, path: &std::path::Path) -> Result<redb::Database> {
    guarded(db, path, || {
        let meta = std::fs::metadata(path)
            .map_err(|source| StorageError::Io { path: path.display().to_string(), source })?;
        if meta.is_dir() {
            return Err(StorageError::NotAFile("a directory"));
        }
        if !meta.is_file() {
            return Err(StorageError::NotAFile("something other than a regular file"));
        }
        if meta.len() == 0 {
            return Err(StorageError::Damaged("the file is empty (0 bytes)".into()));
        }
        Ok(redb::Builder::new().set_cache_size(CACHE_BYTES).open(path)?)
    })
}

/// The page cache of each database file. redb's default (1 GiB) let a node's resident memory
/// grow with its chain: every page written or read stayed cached, and the proof store grows by
/// every block's proof data. A node reads its state from memory and mostly serves recent
/// blocks, so a small cache costs little.
pub(crate) const CACHE_BYTES: usize = 16 << 20;

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
