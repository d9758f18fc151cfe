//! Engines: the pixel-level background removers that the `local` provider
//! runs on blocking threads.
//!
//! Owns: functions from pixels to cut-outs (`backdrop`: the built-in
//! segmenter; `onnx`: U²-Net/IS-Net/BiRefNet models through ONNX Runtime,
//! which loads its model file once at start) and the mask operations both
//! share (`mask`: labelling, flood fill, specks, holes, feathering,
//! decontamination). Must not: touch the drop folders, the queue, or run on
//! the async executor.

pub mod backdrop;
pub(crate) mod mask;
pub mod onnx;
