//! pema: learns the writing style of a workspace and rewrites text in that style, with PEMA
//! (Plug-in External Memory Adaptation) over a quantised llama.cpp model.
//!
//! See ARCHITECTURE.md for the map of the crate.

#![warn(missing_docs)]

pub mod adapter;
pub mod bench;
pub mod daemon;
pub mod decode;
pub mod dirs;
pub mod eval;
pub mod fidelity;
mod fsutil;
pub mod logspace;
pub mod memory;
pub mod model;
pub mod schedule;
pub mod server;
pub mod workspace;

/// The error of work stopped by its cancel flag, so that callers can tell it from a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Cancelled(pub &'static str);

/// Whether `e` is (or wraps) a [`Cancelled`].
pub fn is_cancelled(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Cancelled>().is_some()
}
