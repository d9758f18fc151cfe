//! Engines: the pixel-level background removers that the `local` provider
//! runs on blocking threads.
//!
//! Owns: pure functions from pixels to cut-outs. Must not: do I/O, touch the
//! queue, or run on the async executor.

pub mod backdrop;
