//! pouw-primitives: hashes, keys, amounts, blocks, transactions, tasks, the canonical codec.
