//! pouw-ml: the deterministic training engine.
//!
//! Everything on the consensus path of a training iteration lives here: tensors as flat `f32`
//! buffers, kernels with a fixed arithmetic order ([`kernels`]), models built from a task's layer
//! list, datasets (IDX, CSV), and one PoUW training iteration.
//!
//! Determinism contract: every function on the consensus path gives the same bits on any x86-64
//! CPU and any thread count. See the module docs of [`kernels`] for the arithmetic rules.

pub mod kernels;

pub use kernels::Exec;
