//! The `local` provider: an engine on this machine — the built-in backdrop
//! segmenter, or an ONNX model (U²-Net, IS-Net, BiRefNet…) through ONNX
//! Runtime. No network, no API key, no per-picture cost.
//!
//! Owns: choosing the engine at start (`engine = "builtin" | "onnx" |
//! "auto"`), loading the ONNX session once per process, and running
//! inference on at most `parallel` blocking threads with the decoded,
//! EXIF-oriented pixels.
//!
//! Must not: run pixel work on the async executor or touch files.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::{BuildError, Cutout, Health, Provider, ProviderError, Request, Response};
use crate::config::{LocalConfig, LocalEngine};
use crate::engine::backdrop::{self, BackdropOptions, SegmentError};
use crate::engine::onnx::{ModelKind, OnnxEngine, OnnxError, OnnxOptions, PostOptions};
use crate::job::Code;

enum Engine {
    Builtin(BackdropOptions),
    Onnx(Arc<OnnxEngine>),
}

pub struct LocalProvider {
    name: String,
    engine: Arc<Engine>,
    /// Bounds concurrent inferences (each holds one blocking thread).
    slots: Arc<Semaphore>,
    description: String,
}

fn onnx_options(cfg: &LocalConfig) -> Option<OnnxOptions> {
    let (model, kind) = match &cfg.model {
        Some(model) => {
            let kind = match &cfg.model_kind {
                Some(k) => k.parse().ok()?,
                None => guess_kind(model),
            };
            (model.clone(), kind)
        }
        // engine = "auto" without `model`: the best one `cutout models fetch` installed.
        None => crate::models::best_installed(&cfg.models_dir)?,
    };
    let mut o = OnnxOptions::new(model, kind);
    o.runtime = cfg.onnxruntime.clone();
    o.threads = cfg.threads;
    o.memory_arena = cfg.memory_arena;
    o.sessions = cfg.parallel.max(1);
    o.post = PostOptions {
        remove_specks: cfg.remove_specks,
        fill_holes: cfg.fill_holes,
        feather_px: cfg.feather,
        decontaminate: cfg.decontaminate,
    };
    Some(o)
}

/// `model_kind` defaults to what the file name says (rembg's names).
fn guess_kind(model: &std::path::Path) -> ModelKind {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    stem.parse().unwrap_or(ModelKind::IsnetGeneralUse)
}

impl LocalProvider {
    pub fn new(name: &str, cfg: &LocalConfig) -> Result<Self, BuildError> {
        let err = |message: String| BuildError {
            provider: name.to_string(),
            message,
        };
        let (engine, description, parallel) = match cfg.engine {
            LocalEngine::Builtin => (
                Engine::Builtin(BackdropOptions::default()),
                format!(
                    "built-in backdrop segmenter (no network, no key; for photos other than packshots: `{}`, then engine = \"auto\")",
                    crate::models::FETCH_HINT
                ),
                usize::MAX,
            ),
            LocalEngine::Onnx | LocalEngine::Auto => {
                let loaded = match onnx_options(cfg) {
                    Some(o) => OnnxEngine::load(&o).map_err(|e| e.to_string()),
                    None => Err(format!(
                        "no model installed in {}",
                        cfg.models_dir.display()
                    )),
                };
                match (loaded, cfg.engine) {
                    (Ok(e), _) => {
                        let d = format!("ONNX model {}", e.describe());
                        (Engine::Onnx(Arc::new(e)), d, cfg.parallel)
                    }
                    (Err(m), LocalEngine::Onnx) => return Err(err(m)),
                    (Err(m), _) => {
                        if cfg.model.is_some() || crate::models::best_installed(&cfg.models_dir).is_some() {
                            tracing::warn!(provider = name, "engine = \"auto\": the model cannot be used ({m}); using the built-in segmenter");
                        }
                        (
                            Engine::Builtin(BackdropOptions::default()),
                            format!(
                                "built-in backdrop segmenter (engine = \"auto\": {m}; `{}` gets a model for photos other than packshots)",
                                crate::models::FETCH_HINT
                            ),
                            usize::MAX,
                        )
                    }
                }
            }
        };
        tracing::info!(provider = name, "local engine: {description}");
        Ok(LocalProvider {
            name: name.to_string(),
            engine: Arc::new(engine),
            slots: Arc::new(Semaphore::new(parallel.min(Semaphore::MAX_PERMITS))),
            description,
        })
    }
}

fn onnx_error(e: OnnxError) -> ProviderError {
    match e {
        OnnxError::Inference { .. } => ProviderError::Transient {
            code: Code::EngineInferenceFailed,
            message: e.to_string(),
            retry_after: None,
        },
        other => ProviderError::Permanent {
            code: Code::EngineFailed,
            message: other.to_string(),
        },
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    fn wants_pixels(&self) -> bool {
        true
    }

    async fn remove_background(&self, req: Request<'_>) -> Result<Response, ProviderError> {
        let decoded = req.input.decoded.clone().ok_or(ProviderError::Permanent {
            code: Code::InternalNoPixels,
            message: "the local engine was given no decoded pixels".into(),
        })?;
        let _slot =
            self.slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ProviderError::Transient {
                    code: Code::EngineStopped,
                    message: "the local engine is shutting down".into(),
                    retry_after: None,
                })?;
        let engine = self.engine.clone();
        let span = tracing::debug_span!("local-engine", file = req.file_name);
        let result = crate::blocking::run("local engine", move || {
            let _g = span.enter();
            let image = match &*engine {
                Engine::Builtin(o) => backdrop::cut_out(&decoded.rgba, o).map_err(|e| match e {
                    SegmentError::TooSmall { .. } => ProviderError::Permanent {
                        code: Code::ImageTooSmall,
                        message: e.to_string(),
                    },
                    SegmentError::NoObject => ProviderError::Permanent {
                        code: Code::NoObjectFound,
                        message: e.to_string(),
                    },
                })?,
                Engine::Onnx(m) => m.cut_out(&decoded.rgba).map_err(onnx_error)?,
            };
            Ok::<_, ProviderError>((image, decoded.icc.clone()))
        })
        .await
        .map_err(|e| ProviderError::Transient {
            code: Code::EngineCrashed,
            message: format!("the local engine stopped unexpectedly: {}", e.detail),
            retry_after: None,
        })?;
        let (image, icc) = result?;
        Ok(Response {
            cutout: Cutout::Pixels { image, icc },
            remote_job: None,
            credits_used: None,
        })
    }

    async fn health(&self) -> Health {
        Health {
            lines: vec![self.description.clone()],
            ok: true,
        }
    }
}
