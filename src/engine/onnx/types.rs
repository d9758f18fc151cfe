//! The plain types the ONNX engine's files share: its options
//! ([`OnnxOptions`], [`PostOptions`]) and its error ([`OnnxError`]). A leaf of
//! `engine::onnx` (imports only `kind`), so the stage files import it rather
//! than `mod.rs`.
//!
//! Must not: load a runtime, run a model or touch pixels.

use std::fmt;
use std::path::{Path, PathBuf};

use super::kind::ModelKind;

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

pub(super) fn inference(reason: impl fmt::Display) -> OnnxError {
    OnnxError::Inference {
        reason: reason.to_string(),
    }
}

pub(super) fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
