//! [`OnnxEngine`]: one loaded model, its checked input and output, and the
//! path of one picture: preprocess → infer → mask → optional clean-up → RGBA.
//!
//! Must not: decode or encode pictures, or hold more than one picture's buffers.

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use image::{GrayImage, RgbaImage};
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{DynValue, Tensor};

use super::kind::ModelKind;
use super::postprocess::{apply_alpha, refine_mask, resize_gray, to_mask_u8};
use super::preprocess::preprocess;
use super::runtime::{build_session, resolve_runtime, runtime};
use super::tensor::{check_input, check_output, f16_tensor, read_mask_output, Precision};
use super::types::{inference, OnnxError, OnnxOptions, PostOptions};
use crate::engine::mask::colour::decontaminate;

/// The session and its run options (first output only), used by one call at a time.
struct Runner {
    session: Session,
    run_options: RunOptions<HasSelectedOutputs>,
}

/// One loaded model: create once with [`OnnxEngine::load`], share (`Arc`)
/// between blocking threads. Calls are serialised on the session; ONNX Runtime
/// itself uses `threads` cores for each.
pub struct OnnxEngine {
    kind: ModelKind,
    model: PathBuf,
    size: u32,
    input: Precision,
    output: String,
    threads: usize,
    memory_arena: bool,
    runtime_version: String,
    post: PostOptions,
    runner: Mutex<Runner>,
}

impl fmt::Debug for OnnxEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxEngine")
            .field("describe", &self.describe())
            .finish()
    }
}

impl OnnxEngine {
    /// Checks the model file, loads ONNX Runtime (once per process) and creates
    /// the model's session. Slow (a second or so for a 1024² model): call at start-up.
    pub fn load(opts: &OnnxOptions) -> Result<Self, OnnxError> {
        let kind = opts.kind;
        let bad = |reason: String| OnnxError::BadModel {
            path: opts.model.clone(),
            kind,
            reason,
        };
        if !opts.model.exists() {
            return Err(OnnxError::ModelMissing {
                path: opts.model.clone(),
                kind,
            });
        }
        if !opts.model.is_file() {
            return Err(bad("not a file".to_string()));
        }
        // Absolute, so that `ort` does not look for a relative path beside the executable first.
        let runtime_path = resolve_runtime(opts)?;
        let runtime_path = std::path::absolute(&runtime_path).unwrap_or(runtime_path);
        let (env, runtime_version) = runtime(&runtime_path)?;

        let started = Instant::now();
        let session = build_session(&env, opts).map_err(bad)?;
        let (size, input) = check_input(&session, kind).map_err(bad)?;
        let output = check_output(&session).map_err(bad)?;
        let run_options = RunOptions::new()
            .map_err(|e| bad(e.to_string()))?
            .with_outputs(OutputSelector::no_default().with(output.clone()));

        let engine = OnnxEngine {
            kind,
            model: opts.model.clone(),
            size,
            input,
            output,
            threads: opts.threads,
            memory_arena: opts.memory_arena,
            runtime_version,
            post: opts.post.clone(),
            runner: Mutex::new(Runner {
                session,
                run_options,
            }),
        };
        tracing::info!(
            engine = %engine.describe(),
            load_ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        Ok(engine)
    }

    /// The model kind this engine was loaded with.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// The foreground mask at the picture's size (255 = subject), as rembg
    /// computes it. The picture's own alpha is ignored here.
    pub fn mask(&self, rgba: &RgbaImage) -> Result<GrayImage, OnnxError> {
        let (width, height) = rgba.dimensions();
        if width == 0 || height == 0 {
            return Err(inference(format!(
                "the picture is empty ({width}×{height})"
            )));
        }
        let t0 = Instant::now();
        let input = preprocess(rgba, self.kind, self.size)?;
        let t1 = Instant::now();
        let (out_w, out_h, raw) = self.infer(input)?;
        let t2 = Instant::now();
        let small = to_mask_u8(&raw, self.kind.sigmoid());
        let mask = resize_gray(&small, out_w, out_h, width, height)?;
        tracing::debug!(
            model = %self.kind,
            width,
            height,
            pre_ms = (t1 - t0).as_millis() as u64,
            infer_ms = (t2 - t1).as_millis() as u64,
            post_ms = t2.elapsed().as_millis() as u64,
            "mask"
        );
        Ok(mask)
    }

    /// The cut-out: the picture's own colours, alpha = mask (after the
    /// configured clean-up) × the picture's alpha, optionally with edge colours
    /// decontaminated.
    pub fn cut_out(&self, rgba: &RgbaImage) -> Result<RgbaImage, OnnxError> {
        let mut mask = self.mask(rgba)?;
        let started = Instant::now();
        refine_mask(&mut mask, &self.post);
        let mut out = apply_alpha(rgba, &mask);
        if self.post.decontaminate {
            decontaminate(&mut out);
        }
        tracing::debug!(
            clean_up_ms = started.elapsed().as_millis() as u64,
            "cut-out"
        );
        Ok(out)
    }

    /// One line for logs and `cutout check`, e.g.
    /// `isnet-general-use (isnet-general-use.onnx, 1024², onnxruntime 1.31.1, 2 threads)`.
    pub fn describe(&self) -> String {
        let file = self
            .model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.model.display().to_string());
        let threads = match self.threads {
            0 => "all cores".to_string(),
            1 => "1 thread".to_string(),
            n => format!("{n} threads"),
        };
        let mut extras = Vec::new();
        if self.input == Precision::F16 {
            extras.push(", float16 input");
        }
        if self.memory_arena {
            extras.push(", memory arena on");
        }
        format!(
            "{} ({file}, {}², onnxruntime {}, {threads}{})",
            self.kind,
            self.size,
            self.runtime_version,
            extras.concat()
        )
    }

    /// Runs the model on a preprocessed NCHW tensor; returns the first
    /// channel of the first output as (width, height, values).
    fn infer(&self, input: Vec<f32>) -> Result<(u32, u32, Vec<f32>), OnnxError> {
        let side = self.size as usize;
        let shape = [1_usize, 3, side, side];
        let value: DynValue = match self.input {
            Precision::F32 => Tensor::from_array((shape, input.into_boxed_slice()))
                .map_err(inference)?
                .into_dyn(),
            Precision::F16 => f16_tensor(&shape, &input)?.into_dyn(),
        };
        let mut guard = self
            .runner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Runner {
            session,
            run_options,
        } = &mut *guard;
        let mut outputs = session
            .run_with_options(ort::inputs![value], &*run_options)
            .map_err(inference)?;
        let first = outputs
            .remove(&self.output)
            .ok_or_else(|| inference("the model returned no output"))?;
        drop(outputs);
        drop(guard);
        read_mask_output(first)
    }
}
