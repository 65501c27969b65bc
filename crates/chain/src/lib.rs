//! pouw-chain: block tree, fork choice, import pipeline, reorgs and the mempool.
