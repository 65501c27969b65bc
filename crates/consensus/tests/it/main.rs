//! Integration tests of pouw-consensus: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![allow(missing_debug_implementations, clippy::disallowed_methods)]

mod claims;
mod common;
mod header;
mod lifecycle;
mod props;
mod rewards;
mod rules;
