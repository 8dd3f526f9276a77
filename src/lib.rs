//! pema: learns the writing style of a workspace and rewrites text in that style, with PEMA
//! (Plug-in External Memory Adaptation) over a quantised llama.cpp model.
//!
//! See ARCHITECTURE.md for the map of the crate.

pub mod adapter;
pub mod bench;
pub mod decode;
pub mod eval;
pub mod memory;
pub mod model;
