//! [`OnnxEngine`]: one loaded model, its checked input and output, and the
//! path of one picture: preprocess → infer → mask → optional clean-up → RGBA.
//!
//! Must not: decode or encode pictures, or hold more than one picture's buffers.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
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

/// How long one picture's steps took in [`OnnxEngine::mask_timed`].
struct Steps {
    /// RGB, resize to the model's square, normalise.
    resize: std::time::Duration,
    /// Input tensor, the run (including waiting for the session), output copy.
    infer: std::time::Duration,
    /// Output to 8-bit, resize back to the picture's size.
    resize_back: std::time::Duration,
}

/// The session and its run options (first output only), used by one call at a time.
struct Runner {
    session: Session,
    run_options: RunOptions<HasSelectedOutputs>,
}

/// `sessions` sessions of the same model; a call takes an idle one (waiting
/// when all are busy) and gives it back, so up to `sessions` inferences run
/// at once. A session is not shared: `ort` runs need exclusive access.
struct Pool {
    idle: Mutex<Vec<Runner>>,
    returned: Condvar,
}

impl Pool {
    fn take(&self) -> Runner {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            if let Some(runner) = idle.pop() {
                return runner;
            }
            idle = self
                .returned
                .wait(idle)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn give_back(&self, runner: Runner) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(runner);
        self.returned.notify_one();
    }
}

/// One loaded model: create once with [`OnnxEngine::load`], share (`Arc`)
/// between blocking threads. Up to `sessions` calls infer at once, each
/// on its own session; ONNX Runtime itself uses `threads` cores for each.
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
    sessions: usize,
    pool: Pool,
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
        let sessions = opts.sessions.max(1);
        let mut runners = Vec::with_capacity(sessions);
        let (mut size, mut input, mut output) = (0, Precision::F32, String::new());
        for _ in 0..sessions {
            let session = build_session(&env, opts).map_err(bad)?;
            (size, input) = check_input(&session, kind).map_err(bad)?;
            output = check_output(&session).map_err(bad)?;
            let run_options = RunOptions::new()
                .map_err(|e| bad(e.to_string()))?
                .with_outputs(OutputSelector::no_default().with(output.clone()));
            runners.push(Runner {
                session,
                run_options,
            });
        }

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
            sessions,
            pool: Pool {
                idle: Mutex::new(runners),
                returned: Condvar::new(),
            },
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
        self.mask_timed(rgba).map(|(mask, _)| mask)
    }

    /// [`OnnxEngine::mask`] and how long its steps took.
    fn mask_timed(&self, rgba: &RgbaImage) -> Result<(GrayImage, Steps), OnnxError> {
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
        let steps = Steps {
            resize: t1 - t0,
            infer: t2 - t1,
            resize_back: t2.elapsed(),
        };
        Ok((mask, steps))
    }

    /// The cut-out: the picture's own colours, alpha = mask (after the
    /// configured clean-up) × the picture's alpha, optionally with edge colours
    /// decontaminated. Logs the time of each step at debug level
    /// (`onnx steps`, the per-picture breakdown scripts/bench-onnx.sh reports).
    pub fn cut_out(&self, rgba: &RgbaImage) -> Result<RgbaImage, OnnxError> {
        let (mut mask, steps) = self.mask_timed(rgba)?;
        let started = Instant::now();
        refine_mask(&mut mask, &self.post);
        let mut out = apply_alpha(rgba, &mask);
        if self.post.decontaminate {
            decontaminate(&mut out);
        }
        tracing::debug!(
            model = %self.kind,
            width = rgba.width(),
            height = rgba.height(),
            resize_us = steps.resize.as_micros() as u64,
            infer_us = steps.infer.as_micros() as u64,
            resize_back_us = steps.resize_back.as_micros() as u64,
            compose_us = started.elapsed().as_micros() as u64,
            "onnx steps"
        );
        Ok(out)
    }

    /// Sessions not running an inference now (all of them between calls).
    #[cfg(test)]
    pub(super) fn idle_sessions(&self) -> usize {
        self.pool
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
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
        let sessions = format!(", {} sessions", self.sessions);
        if self.sessions > 1 {
            extras.push(&sessions);
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
        let mut runner = self.pool.take();
        let first = run_first(&mut runner, value, &self.output);
        self.pool.give_back(runner);
        read_mask_output(first?)
    }
}

/// One run on `runner`'s session; the output named `output`, owned.
fn run_first(runner: &mut Runner, value: DynValue, output: &str) -> Result<DynValue, OnnxError> {
    let Runner {
        session,
        run_options,
    } = runner;
    let mut outputs = session
        .run_with_options(ort::inputs![value], &*run_options)
        .map_err(inference)?;
    outputs
        .remove(output)
        .ok_or_else(|| inference("the model returned no output"))
}
