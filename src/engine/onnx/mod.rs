//! The local AI engine: rembg's segmentation models (U²-Net, IS-Net, BiRefNet,
//! …) run on the CPU through ONNX Runtime.
//!
//! What this module owns:
//! - loading the ONNX Runtime shared library once per process (`ort`'s
//!   `load-dynamic`: from the configured path, else `ORT_DYLIB_PATH`, else the
//!   model's folder) and one [`ort::session::Session`] per model, created once
//!   in [`OnnxEngine::load`];
//! - the pre-processing rembg does for each model kind (RGB, Lanczos to the
//!   model's square input, divide by the picture's own maximum, `(x − mean) /
//!   std`, NCHW, float32 or float16 as the graph asks) and its post-processing
//!   (first output, sigmoid for BiRefNet, min–max normalised, Lanczos back to
//!   the picture's size). Both resizes are Pillow's, bit for bit, so masks
//!   equal rembg's (measured: identical on the sample photos);
//! - the optional mask clean-up ([`PostOptions`]: specks, holes, feathering)
//!   and turning mask + picture into RGBA with the picture's own colours and
//!   the mask as alpha (never blended toward black), with optional colour
//!   decontamination of edge pixels.
//!
//! What it must not do: move or write files, touch the async executor (every
//! call here blocks for seconds: run it on a blocking pool), download
//! anything, or decode/encode pictures (EXIF orientation and ICC profiles are
//! the caller's: pass the already-oriented pixels in).
//!
//! Memory (IS-Net 1024², 2 threads, `cutout process`, measured): ONNX
//! Runtime's defaults (CPU arena + memory pattern) peak at 2.2 GB RSS. The
//! memory pattern is always off here (it cost 0.8 GB for no measurable
//! speed); the arena is `memory_arena`, on by default (~0.5 s less CPU per
//! picture). With it: 1.36 GB for IMG.LY's float16 IS-Net, 1.02 GB for its
//! float32 copy (`cutout models fetch isnet-general-use --fp32`).

mod engine;
mod kind;
mod postprocess;
mod preprocess;
mod runtime;
mod tensor;
mod types;

pub use engine::OnnxEngine;
pub use kind::{ModelKind, UnknownModelKind};
pub use tensor::f16_bits_to_f32;
pub use types::{OnnxError, OnnxOptions, PostOptions};

#[cfg(test)]
mod tests;
