//! A full disk in the middle of block imports. The file size limit (`RLIMIT_FSIZE`) of this
//! test process is lowered to the chain database's current size, with `SIGXFSZ` ignored, so
//! the first write past it fails with `EFBIG`: what a full disk does (`ENOSPC` takes the same
//! path). The failed import must name the file and the cause, and leave both the disk and the
//! chain's memory on the last stored block; with the limit lifted, the reopened chain is that
//! chain and the refused block imports.
//!
//! This file holds a single test: the limit applies to the whole process.

use pouw_chain::{test_utils::ChainHarness, ImportOutcome};
use pouw_storage::DB_FILE;

/// Sets the soft file size limit of this process (the hard limit stays, so it can be raised).
fn limit_file_size(bytes: Option<u64>) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        lim.rlim_cur = bytes.map_or(lim.rlim_max, |b| b.min(lim.rlim_max));
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

#[test]
fn a_failed_commit_changes_neither_the_disk_nor_the_chain_in_memory() {
    // SAFETY: ignoring a signal; writes past the limit then fail with EFBIG.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let mut h = ChainHarness::new();
    let file = h.datadir().join(DB_FILE);
    let mut refused = None;
    for i in 0..200u64 {
        if i == 2 {
            limit_file_size(Some(std::fs::metadata(&file).unwrap().len()));
        }
        let tip = h.chain.tip();
        // Big blocks (300 transfers), so that the file has to grow after a few of them.
        let block = h.factory.build_with_transfers(&tip, 300, i);
        match h.import(block.clone()) {
            Ok(outcome) => assert_eq!(outcome, ImportOutcome::Extended),
            Err(e) => {
                let e = e.into_storage_error().expect("only the database can fail here");
                assert!(e.is_out_of_space(), "{e}");
                let text = e.to_string();
                let expected = format!(
                    "chain database {} could not be written: File too large",
                    file.display()
                );
                assert!(text.starts_with(&expected), "{text}");
                assert!(text.contains("free space and restart"), "{text}");
                // Nothing of the refused block in memory: the tip and state are the stored ones.
                assert_eq!(h.chain.tip(), tip);
                assert!(h.chain.header_entry(&block.hash()).is_none());
                assert_eq!(h.chain.state(), h.factory.state(&tip));
                eprintln!("the write failed at block {}", i + 1);
                refused = Some((tip, block));
                break;
            }
        }
    }
    let (tip, block) = refused.expect("the file size limit was never reached");

    // Space freed: the reopened chain is the one stored before the failure, and goes on.
    limit_file_size(None);
    let mut h = h.reopen().unwrap();
    assert_eq!(h.chain.tip(), tip);
    assert_eq!(h.chain.state(), h.factory.state(&tip));
    assert_eq!(h.import(block).unwrap(), ImportOutcome::Extended);
    let h = h.reopen().unwrap();
    assert_eq!(h.chain.height(), h.factory.header(&h.chain.tip()).height);
}
