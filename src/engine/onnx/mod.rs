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
//! Memory (IS-Net 1024², 2 threads, measured): ONNX Runtime's defaults
//! (CPU arena + memory pattern) peak at 2.2 GB RSS. The memory pattern is
//! always off here (it cost 0.8 GB for no measurable speed); the arena is
//! `memory_arena`: on (the default) 1.35 GB and ~0.4 s less CPU per picture
//! (in a batch, 1.7× the pictures per second); off 1.1–1.2 GB for one picture.

use std::fmt;
use std::path::{Path, PathBuf};

mod engine;
mod kind;
mod postprocess;
mod preprocess;
mod runtime;
mod tensor;

pub use engine::OnnxEngine;
pub use kind::{ModelKind, UnknownModelKind};

/// The command that puts a named model (and the runtime) into a folder.
const FETCH_MODEL: &str = "cutout models fetch";
/// The oldest ONNX Runtime this build accepts (`ort`'s `api-31` feature).
const MIN_RUNTIME: &str = "1.31";

/// Optional clean-up of the mask and the colours, applied by [`OnnxEngine::cut_out`].
/// The default does none of it: the alpha is the model's mask as rembg gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct PostOptions {
    /// Drop small isolated blobs of foreground (less than 0.25 % of the picture
    /// and less than 5 % of the largest blob).
    pub remove_specks: bool,
    /// Make small enclosed holes in the foreground opaque (less than 0.1 % of the
    /// picture: a mug's handle stays open).
    pub fill_holes: bool,
    /// Soften the mask's edge with a Gaussian of σ = feather_px / 2; 0 = off.
    pub feather_px: f32,
    /// Re-estimate the colour of semi-transparent edge pixels without the
    /// background that bled into them.
    pub decontaminate: bool,
}

impl Default for PostOptions {
    fn default() -> Self {
        PostOptions {
            remove_specks: false,
            fill_holes: false,
            feather_px: 0.0,
            decontaminate: false,
        }
    }
}

/// How to build an [`OnnxEngine`].
#[derive(Debug, Clone)]
pub struct OnnxOptions {
    /// The `.onnx` file.
    pub model: PathBuf,
    /// Its pre/post-processing.
    pub kind: ModelKind,
    /// `libonnxruntime.so.1.xx`; `None`: `ORT_DYLIB_PATH`, else the model's folder.
    pub runtime: Option<PathBuf>,
    /// ONNX Runtime intra-op threads; 0 lets ONNX Runtime use every core.
    pub threads: usize,
    /// ONNX Runtime's CPU memory arena: ~0.2 GB more peak memory, fewer page
    /// faults (~0.4 s less CPU per 1024² picture). Default off.
    pub memory_arena: bool,
    /// Sessions of the model, i.e. inferences that can run at once (the
    /// provider's `parallel`); each holds its own weights and buffers.
    pub sessions: usize,
    /// Clean-up applied by [`OnnxEngine::cut_out`].
    pub post: PostOptions,
}

impl OnnxOptions {
    /// Options with the defaults: runtime found from the environment, 1 thread, arena off, no clean-up.
    pub fn new(model: impl Into<PathBuf>, kind: ModelKind) -> Self {
        OnnxOptions {
            model: model.into(),
            kind,
            runtime: None,
            threads: 1,
            memory_arena: true,
            sessions: 1,
            post: PostOptions::default(),
        }
    }
}

/// Why the engine could not start or could not process a picture.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error(
        "model file {} not found: get it with `{FETCH_MODEL} {kind} --dir {}`, \
         or point `model` at an existing .onnx file",
        path.display(),
        folder_of(path).display()
    )]
    ModelMissing { path: PathBuf, kind: ModelKind },

    #[error(
        "ONNX Runtime library not found ({looked}): get it with `{FETCH_MODEL} onnxruntime --dir {}` \
         (onnxruntime {MIN_RUNTIME} or newer, from the PyPI wheel), then set `onnxruntime = \"…/libonnxruntime.so.1.xx\"` \
         in the provider's config or export ORT_DYLIB_PATH=…/libonnxruntime.so.1.xx",
        suggested_dir.display()
    )]
    RuntimeMissing {
        looked: String,
        suggested_dir: PathBuf,
    },

    #[error(
        "could not load ONNX Runtime from {}: {reason} (cutout needs onnxruntime {MIN_RUNTIME} or newer: \
         `{FETCH_MODEL} onnxruntime` fetches one)",
        path.display()
    )]
    RuntimeLoad { path: PathBuf, reason: String },

    #[error("model {} cannot be used as `{kind}`: {reason}", path.display())]
    BadModel {
        path: PathBuf,
        kind: ModelKind,
        reason: String,
    },

    #[error("inference failed: {reason}")]
    Inference { reason: String },
}

impl OnnxError {
    /// A stable kebab-case code for logs, metrics and `reason.json`.
    pub fn code(&self) -> &'static str {
        match self {
            OnnxError::ModelMissing { .. } => "model-missing",
            OnnxError::RuntimeMissing { .. } => "runtime-missing",
            OnnxError::RuntimeLoad { .. } => "runtime-load",
            OnnxError::BadModel { .. } => "bad-model",
            OnnxError::Inference { .. } => "inference",
        }
    }
}

fn inference(reason: impl fmt::Display) -> OnnxError {
    OnnxError::Inference {
        reason: reason.to_string(),
    }
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests;
