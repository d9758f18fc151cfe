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
//! `memory_arena`: off (the default) 1.1–1.2 GB, on 1.35 GB and ~0.4 s less
//! CPU per picture.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Instant;

use image::{GrayImage, RgbaImage};
use ort::environment::Environment;
use ort::ep;
use ort::memory::Allocator;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{DynTensor, DynTensorValueType, DynValue, Tensor, TensorElementType, ValueType};

/// The command that puts a named model (and the runtime) into a folder.
const FETCH_MODEL: &str = "cutout models fetch";
/// The oldest ONNX Runtime this build accepts (`ort`'s `api-31` feature).
const MIN_RUNTIME: &str = "1.31";

/// Which pre/post-processing a model needs; the names are rembg's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// `u2net`: U²-Net, 320², ImageNet mean/std.
    U2net,
    /// `u2netp`: the small U²-Net, 320², ImageNet mean/std.
    U2netp,
    /// `u2net_human_seg`: U²-Net trained on people, 320².
    U2netHumanSeg,
    /// `silueta`: a pruned U²-Net, 320².
    Silueta,
    /// `isnet-general-use`: IS-Net, 1024², mean 0.5 / std 1.0.
    IsnetGeneralUse,
    /// `isnet-anime`: IS-Net for anime, 1024², ImageNet mean / std 1.0.
    IsnetAnime,
    /// `birefnet-general`: BiRefNet, 1024², ImageNet mean/std, sigmoid output.
    BirefnetGeneral,
    /// `birefnet-general-lite`: BiRefNet on a Swin-tiny backbone.
    BirefnetGeneralLite,
    /// `birefnet-portrait`: BiRefNet for portraits.
    BirefnetPortrait,
    /// `birefnet-dis`: BiRefNet trained on DIS5K.
    BirefnetDis,
    /// `birefnet-hrsod`: BiRefNet for high-resolution salient objects.
    BirefnetHrsod,
    /// `birefnet-cod`: BiRefNet for camouflaged objects.
    BirefnetCod,
    /// `birefnet-massive`: BiRefNet trained on the massive data set.
    BirefnetMassive,
    /// `bria-rmbg`: BRIA RMBG 2.0, 1024², ImageNet mean/std.
    BriaRmbg,
}

const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

impl ModelKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [ModelKind; 14] = [
        ModelKind::U2net,
        ModelKind::U2netp,
        ModelKind::U2netHumanSeg,
        ModelKind::Silueta,
        ModelKind::IsnetGeneralUse,
        ModelKind::IsnetAnime,
        ModelKind::BirefnetGeneral,
        ModelKind::BirefnetGeneralLite,
        ModelKind::BirefnetPortrait,
        ModelKind::BirefnetDis,
        ModelKind::BirefnetHrsod,
        ModelKind::BirefnetCod,
        ModelKind::BirefnetMassive,
        ModelKind::BriaRmbg,
    ];

    /// rembg's name for the kind (also the model's file stem in the models folder).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::U2net => "u2net",
            ModelKind::U2netp => "u2netp",
            ModelKind::U2netHumanSeg => "u2net_human_seg",
            ModelKind::Silueta => "silueta",
            ModelKind::IsnetGeneralUse => "isnet-general-use",
            ModelKind::IsnetAnime => "isnet-anime",
            ModelKind::BirefnetGeneral => "birefnet-general",
            ModelKind::BirefnetGeneralLite => "birefnet-general-lite",
            ModelKind::BirefnetPortrait => "birefnet-portrait",
            ModelKind::BirefnetDis => "birefnet-dis",
            ModelKind::BirefnetHrsod => "birefnet-hrsod",
            ModelKind::BirefnetCod => "birefnet-cod",
            ModelKind::BirefnetMassive => "birefnet-massive",
            ModelKind::BriaRmbg => "bria-rmbg",
        }
    }

    /// The side of the model's square input.
    pub fn input_size(self) -> u32 {
        match self {
            ModelKind::U2net
            | ModelKind::U2netp
            | ModelKind::U2netHumanSeg
            | ModelKind::Silueta => 320,
            _ => 1024,
        }
    }

    fn mean(self) -> [f64; 3] {
        match self {
            ModelKind::IsnetGeneralUse => [0.5; 3],
            _ => IMAGENET_MEAN,
        }
    }

    fn std(self) -> [f64; 3] {
        match self {
            ModelKind::IsnetGeneralUse | ModelKind::IsnetAnime => [1.0; 3],
            _ => IMAGENET_STD,
        }
    }

    /// BiRefNet outputs logits: rembg applies a sigmoid before min–max.
    fn sigmoid(self) -> bool {
        matches!(
            self,
            ModelKind::BirefnetGeneral
                | ModelKind::BirefnetGeneralLite
                | ModelKind::BirefnetPortrait
                | ModelKind::BirefnetDis
                | ModelKind::BirefnetHrsod
                | ModelKind::BirefnetCod
                | ModelKind::BirefnetMassive
        )
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `model_kind` that is not one of [`ModelKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model kind `{given}` (known: {})", known_kinds())]
pub struct UnknownModelKind {
    pub given: String,
}

fn known_kinds() -> String {
    ModelKind::ALL.map(ModelKind::name).join(", ")
}

impl FromStr for ModelKind {
    type Err = UnknownModelKind;

    /// Accepts rembg's names; `-` and `_` are interchangeable and case is ignored
    /// (`isnet_general_use`, `U2NET-HUMAN-SEG` and `bria-rmbg-2.0` are fine too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        let wanted = match wanted.as_str() {
            "bria-rmbg-2.0" | "bria-rmbg2" => "bria-rmbg",
            "isnet" | "isnet-general" => "isnet-general-use",
            "birefnet" => "birefnet-general",
            other => other,
        };
        ModelKind::ALL
            .into_iter()
            .find(|k| k.name().replace('_', "-") == wanted)
            .ok_or_else(|| UnknownModelKind {
                given: s.to_string(),
            })
    }
}

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
            memory_arena: false,
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

/// The process-wide ONNX Runtime: `ort` loads the library and creates its
/// environment once per process, so every engine shares this.
struct Runtime {
    env: Environment,
    path: PathBuf,
    version: String,
}

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

/// Where the runtime library should come from, in order: the configured
/// path, `ORT_DYLIB_PATH`, the model's folder.
fn resolve_runtime(opts: &OnnxOptions) -> Result<PathBuf, OnnxError> {
    let folder = folder_of(&opts.model).to_path_buf();
    let missing = |looked: String| OnnxError::RuntimeMissing {
        looked,
        suggested_dir: folder.clone(),
    };
    if let Some(path) = &opts.runtime {
        return if path.is_file() {
            Ok(path.clone())
        } else {
            Err(missing(format!(
                "configured `onnxruntime = \"{}\"` does not exist",
                path.display()
            )))
        };
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(missing(format!(
                "ORT_DYLIB_PATH={} does not exist",
                path.display()
            )))
        };
    }
    find_runtime_in(&folder).ok_or_else(|| {
        missing(format!(
            "no `onnxruntime` in the config, ORT_DYLIB_PATH unset, no libonnxruntime.so* in {}",
            folder.display()
        ))
    })
}

/// The newest-looking ONNX Runtime library in `dir`, if any.
fn find_runtime_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_lib = (name.starts_with("libonnxruntime.so")
                || (name.starts_with("libonnxruntime") && name.ends_with(".dylib"))
                || name == "onnxruntime.dll")
                && !name.contains("providers");
            let path = entry.path();
            (is_lib && path.is_file()).then(|| (version_in_name(&name), path))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, path)| path)
}

/// `libonnxruntime.so.1.31.1` → `[1, 31, 1]`; no version → `[]`.
fn version_in_name(name: &str) -> Vec<u32> {
    let tail = name
        .strip_prefix("libonnxruntime.so.")
        .or_else(|| {
            name.strip_prefix("libonnxruntime.")
                .and_then(|t| t.strip_suffix(".dylib"))
        })
        .unwrap_or("");
    tail.split('.')
        .map_while(|part| part.parse().ok())
        .collect()
}

/// The runtime's version, read from the library's file name (ONNX Runtime's
/// C API has it, but `ort` does not expose it under `load-dynamic`).
fn version_of(path: &Path) -> String {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    [&real, path]
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| version_in_name(&n.to_string_lossy()))
        .find(|v| !v.is_empty())
        .map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join("."))
        .unwrap_or_else(|| "(version unknown)".to_string())
}

/// Loads the library and creates the environment, or returns the ones this
/// process already has.
fn runtime(path: &Path) -> Result<(Environment, String), OnnxError> {
    let mut slot = RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(rt) = slot.as_ref() {
        if rt.path != path {
            tracing::warn!(
                loaded = %rt.path.display(),
                asked = %path.display(),
                "ONNX Runtime is loaded once per process: keeping the library loaded first"
            );
        }
        return Ok((rt.env.clone(), rt.version.clone()));
    }
    let load_err = |reason: String| OnnxError::RuntimeLoad {
        path: path.to_path_buf(),
        reason,
    };
    let env = ort::init_from(path)
        .map_err(|e| load_err(e.to_string()))?
        .with_name("cutout")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    let version = version_of(path);
    tracing::info!(path = %path.display(), %version, "loaded ONNX Runtime");
    *slot = Some(Runtime {
        env: env.clone(),
        path: path.to_path_buf(),
        version: version.clone(),
    });
    Ok((env, version))
}

/// Whether the graph wants float32 or float16 tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    F32,
    F16,
}

impl Precision {
    fn of(ty: TensorElementType) -> Option<Precision> {
        match ty {
            TensorElementType::Float32 => Some(Precision::F32),
            TensorElementType::Float16 => Some(Precision::F16),
            _ => None,
        }
    }
}

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

/// One session on the CPU: full graph optimisation (`Level3` in `ort` is
/// only the layout level: slower, and its output differs from Python
/// onnxruntime by ~2e-4), `threads` intra-op threads that sleep rather than
/// spin between operators (the cores are shared with decoding and encoding),
/// the CPU memory arena as configured and the memory pattern planner off.
///
/// Measured on IS-Net 1024², 2 threads, 4 pictures per process: the memory
/// pattern adds ~0.8 GB peak RSS for no measurable speed; the arena adds
/// ~0.2 GB and saves ~0.4 s of CPU (page faults) per picture.
fn build_session(env: &Environment, opts: &OnnxOptions) -> Result<Session, String> {
    let text = |e: ort::Error<SessionBuilder>| format!("session options: {e}");
    let cpu = ep::CPU::default()
        .with_arena_allocator(opts.memory_arena)
        .build()
        .error_on_failure();
    Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(text)?
        .with_intra_threads(opts.threads)
        .map_err(text)?
        .with_inter_threads(1)
        .map_err(text)?
        .with_intra_op_spinning(false)
        .map_err(text)?
        .with_memory_pattern(false)
        .map_err(text)?
        .with_execution_providers([cpu])
        .map_err(text)?
        .commit_from_file(&opts.model)
        .map_err(|e| e.to_string())
}

/// rembg's `normalize`: RGB (alpha dropped, not composited), Lanczos to
/// `size`² exactly as Pillow does it, divided by the resized picture's
/// maximum, `(x − mean) / std`, NCHW.
fn preprocess(rgba: &RgbaImage, kind: ModelKind, size: u32) -> Result<Vec<f32>, OnnxError> {
    let (width, height) = (rgba.width() as usize, rgba.height() as usize);
    let rgb: Vec<u8> = rgba
        .pixels()
        .flat_map(|p| [p.0[0], p.0[1], p.0[2]])
        .collect();
    let side = size as usize;
    let pixels = pil_lanczos(&rgb, width, height, 3, side, side)?;
    let max = f64::from(pixels.iter().copied().max().unwrap_or(0)).max(1e-6);
    let (mean, std) = (kind.mean(), kind.std());
    let plane = side * side;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in pixels.chunks_exact(3).enumerate() {
        for c in 0..3 {
            // Same arithmetic as numpy's float64, then one rounding to f32.
            out[c * plane + i] = ((f64::from(px[c]) / max - mean[c]) / std[c]) as f32;
        }
    }
    Ok(out)
}

/// Pillow's `Image.resize(size, Image.LANCZOS)` on 8-bit pixels with
/// `channels` interleaved bands, bit for bit (libImaging/Resample.c: the
/// same coefficients, 22-bit fixed point, horizontal pass then vertical,
/// clipped to 0..=255 after each). fast_image_resize's Lanczos3 differs from
/// it by up to 22 levels when upscaling, which IS-Net turns into mask
/// differences of 7/255 against rembg; this keeps them within 2/255.
fn pil_lanczos(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
) -> Result<Vec<u8>, OnnxError> {
    if width == 0
        || height == 0
        || out_w == 0
        || out_h == 0
        || src.len() != width * height * channels
    {
        return Err(inference(format!(
            "cannot resize {width}×{height} (×{channels}) to {out_w}×{out_h}"
        )));
    }
    if (width, height) == (out_w, out_h) {
        return Ok(src.to_vec());
    }
    let mut vert = Coefficients::new(height, out_h);
    let (mut data, mut data_w) = (std::borrow::Cow::Borrowed(src), width);
    if out_w != width {
        let first = vert.bounds[0].0;
        let last = vert.bounds[out_h - 1].0 + vert.bounds[out_h - 1].1;
        for b in &mut vert.bounds {
            b.0 -= first;
        }
        let horiz = Coefficients::new(width, out_w);
        let rows = last - first;
        let mut tmp = vec![0u8; out_w * rows * channels];
        for (y, row) in tmp.chunks_exact_mut(out_w * channels).enumerate() {
            let line = &src[(y + first) * width * channels..(y + first + 1) * width * channels];
            for (x, px) in row.chunks_exact_mut(channels).enumerate() {
                let (start, len, k) = horiz.at(x);
                for (c, out) in px.iter_mut().enumerate() {
                    let mut acc = ROUNDING;
                    for (i, &w) in k[..len].iter().enumerate() {
                        acc += i64::from(line[(start + i) * channels + c]) * w;
                    }
                    *out = clip8(acc);
                }
            }
        }
        data = std::borrow::Cow::Owned(tmp);
        data_w = out_w;
    }
    if out_h == height && out_w != width {
        return Ok(data.into_owned());
    }
    let stride = data_w * channels;
    let mut out = vec![0u8; stride * out_h];
    for (y, row) in out.chunks_exact_mut(stride).enumerate() {
        let (start, len, k) = vert.at(y);
        for (i, value) in row.iter_mut().enumerate() {
            let mut acc = ROUNDING;
            for (j, &w) in k[..len].iter().enumerate() {
                acc += i64::from(data[(start + j) * stride + i]) * w;
            }
            *value = clip8(acc);
        }
    }
    Ok(out)
}

/// Pillow's `PRECISION_BITS`: coefficients are fixed point with 22 fraction bits.
const PRECISION_BITS: u32 = 22;
const ROUNDING: i64 = 1 << (PRECISION_BITS - 1);

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the Lanczos filter.
struct Coefficients {
    ksize: usize,
    /// (first input index, count) for each output index.
    bounds: Vec<(usize, usize)>,
    weights: Vec<i64>,
}

impl Coefficients {
    fn new(in_size: usize, out_size: usize) -> Self {
        const SUPPORT: f64 = 3.0;
        let scale = in_size as f32 as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i64; out_size * ksize];
        let mut k = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) cast truncates toward zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = (((center + support + 0.5) as i64).min(in_size as i64) as usize)
                .saturating_sub(xmin);
            let xmax = xmax.min(ksize);
            let mut ww = 0.0;
            for (x, slot) in k.iter_mut().enumerate().take(xmax) {
                let w = lanczos_filter(((x + xmin) as f64 - center + 0.5) * ss);
                *slot = w;
                ww += w;
            }
            for (x, &w) in k.iter().enumerate().take(xmax) {
                let w = if ww != 0.0 { w / ww } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                weights[xx * ksize + x] = if w < 0.0 {
                    (fixed - 0.5) as i64
                } else {
                    (fixed + 0.5) as i64
                };
            }
            bounds.push((xmin, xmax));
        }
        Coefficients {
            ksize,
            bounds,
            weights,
        }
    }

    fn at(&self, i: usize) -> (usize, usize, &[i64]) {
        let (start, len) = self.bounds[i];
        (
            start,
            len,
            &self.weights[i * self.ksize..(i + 1) * self.ksize],
        )
    }
}

fn lanczos_filter(x: f64) -> f64 {
    fn sinc(x: f64) -> f64 {
        if x == 0.0 {
            1.0
        } else {
            let x = x * std::f64::consts::PI;
            x.sin() / x
        }
    }
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// rembg's output step: optional sigmoid, min–max to 0..1, × 255 truncated
/// to u8 (numpy's `astype("uint8")`). A constant output gives an all-zero
/// mask, as in rembg; NaN becomes 0.
fn to_mask_u8(raw: &[f32], sigmoid: bool) -> Vec<u8> {
    let values: Vec<f32> = if sigmoid {
        raw.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect()
    } else {
        raw.to_vec()
    };
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    if !(range > 0.0 && range.is_finite()) {
        tracing::warn!("the model's output is constant: the mask is empty");
        return vec![0; values.len()];
    }
    values
        .iter()
        .map(|&v| (((v - lo) / range) * 255.0) as u8)
        .collect()
}

fn resize_gray(
    small: &[u8],
    w: u32,
    h: u32,
    width: u32,
    height: u32,
) -> Result<GrayImage, OnnxError> {
    let (w, h, width_us, height_us) = (w as usize, h as usize, width as usize, height as usize);
    let pixels = pil_lanczos(small, w, h, 1, width_us, height_us)?;
    GrayImage::from_raw(width, height, pixels)
        .ok_or_else(|| inference("mask buffer has the wrong size"))
}

/// The model's single image input: `[1, 3, S, S]` (any dimension may be
/// dynamic), float32 or float16; S must be the kind's size when fixed.
fn check_input(session: &Session, kind: ModelKind) -> Result<(u32, Precision), String> {
    let inputs = session.inputs();
    let [input] = inputs else {
        return Err(format!("expected 1 input, the model has {}", inputs.len()));
    };
    let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
        return Err(format!("input `{}` is not a tensor", input.name()));
    };
    let precision = Precision::of(*ty).ok_or_else(|| {
        format!(
            "input `{}` is {ty}, expected float32 or float16",
            input.name()
        )
    })?;
    let dims: &[i64] = shape;
    let size = i64::from(kind.input_size());
    let fits = |dim: i64, want: i64| dim < 0 || dim == want;
    if dims.len() != 4
        || !fits(dims[0], 1)
        || !fits(dims[1], 3)
        || !fits(dims[2], size)
        || !fits(dims[3], size)
    {
        return Err(format!(
            "input `{}` has shape {dims:?}, `{kind}` needs [1, 3, {size}, {size}] (is `model_kind` right?)",
            input.name()
        ));
    }
    Ok((kind.input_size(), precision))
}

/// The first output must be a float tensor; returns its name.
fn check_output(session: &Session) -> Result<String, String> {
    let output = session.outputs().first().ok_or("the model has no output")?;
    match output.dtype() {
        ValueType::Tensor { ty, .. } if Precision::of(*ty).is_some() => {
            Ok(output.name().to_string())
        }
        other => Err(format!(
            "first output `{}` is {other}, expected a float tensor",
            output.name()
        )),
    }
}

/// The first channel of the first output, `[.., H, W]`, as f32.
fn read_mask_output(value: DynValue) -> Result<(u32, u32, Vec<f32>), OnnxError> {
    let tensor: DynTensor = value.downcast::<DynTensorValueType>().map_err(inference)?;
    let dims: Vec<i64> = tensor.shape().iter().copied().collect();
    let (h, w) = match dims.as_slice() {
        [.., h, w] if *h > 0 && *w > 0 => (*h, *w),
        _ => {
            return Err(inference(format!(
                "the first output has shape {dims:?}, expected [1, 1, H, W]"
            )))
        }
    };
    let (w, h) = (
        u32::try_from(w).map_err(inference)?,
        u32::try_from(h).map_err(inference)?,
    );
    let plane = (w as usize) * (h as usize);
    match Precision::of(*tensor.data_type()) {
        Some(Precision::F32) => {
            let (_, data) = tensor.try_extract_tensor::<f32>().map_err(inference)?;
            Ok((
                w,
                h,
                data.get(..plane)
                    .ok_or_else(|| inference("short output"))?
                    .to_vec(),
            ))
        }
        Some(Precision::F16) => {
            if !tensor.memory_info().is_cpu_accessible() {
                return Err(inference("the float16 output is not in CPU memory"));
            }
            let total = tensor.shape().num_elements();
            let ptr = tensor.data_ptr().cast::<u16>();
            if ptr.is_null() || total < plane {
                return Err(inference("short output"));
            }
            // SAFETY: a CPU-accessible float16 tensor of `total` elements: ONNX
            // Runtime owns `total` contiguous 2-byte values at `ptr`, alive
            // while `tensor` is.
            let bits = unsafe { std::slice::from_raw_parts(ptr, total) };
            Ok((
                w,
                h,
                bits[..plane].iter().map(|&b| f16_bits_to_f32(b)).collect(),
            ))
        }
        None => Err(inference(format!(
            "the first output is {}, expected float",
            tensor.data_type()
        ))),
    }
}

/// A float16 tensor made from f32 values (`ort` is built without `half`).
fn f16_tensor(shape: &[usize; 4], values: &[f32]) -> Result<DynTensor, OnnxError> {
    let mut tensor = DynTensor::new(&Allocator::default(), TensorElementType::Float16, *shape)
        .map_err(inference)?;
    let count = tensor.shape().num_elements();
    let ptr = tensor.data_ptr_mut().cast::<u16>();
    if ptr.is_null() || count != values.len() {
        return Err(inference("could not allocate the float16 input"));
    }
    // SAFETY: the default allocator is CPU memory; ONNX Runtime allocated
    // `count` 2-byte elements at `ptr` for this tensor, which we own mutably.
    let bits = unsafe { std::slice::from_raw_parts_mut(ptr, count) };
    for (b, &v) in bits.iter_mut().zip(values) {
        *b = f32_to_f16_bits(v);
    }
    Ok(tensor)
}

/// IEEE 754 binary32 → binary16 bits, round to nearest even.
fn f32_to_f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let rounded = if rem > halfway || (rem == halfway && half & 1 == 1) {
            half + 1
        } else {
            half
        };
        return sign | rounded as u16;
    }
    let h = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let rounded = if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) {
        h + 1
    } else {
        h
    };
    sign | rounded as u16
}

/// IEEE 754 binary16 bits → f32 (exact).
fn f16_bits_to_f32(h: u16) -> f32 {
    let negative = h & 0x8000 != 0;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let magnitude = match exp {
        0 => man as f32 * f32::from_bits(0x3380_0000), // man × 2⁻²⁴
        0x1f => f32::from_bits(0x7f80_0000 | (man << 13)),
        _ => f32::from_bits(((exp + 112) << 23) | (man << 13)),
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// RGBA with the picture's own colours; alpha = mask × the picture's alpha.
fn apply_alpha(rgba: &RgbaImage, mask: &GrayImage) -> RgbaImage {
    let mut out = rgba.clone();
    for (px, m) in out.pixels_mut().zip(mask.pixels()) {
        px.0[3] = ((u16::from(px.0[3]) * u16::from(m.0[0]) + 127) / 255) as u8;
    }
    out
}

/// Mask values at or above this count as foreground for specks and holes.
const SOLID: u8 = 128;

fn refine_mask(mask: &mut GrayImage, post: &PostOptions) {
    if post.remove_specks {
        remove_specks(mask);
    }
    if post.fill_holes {
        fill_holes(mask);
    }
    if post.feather_px > 0.0 && post.feather_px.is_finite() {
        feather(mask, post.feather_px);
    }
}

/// One connected region found by [`label_regions`].
#[derive(Debug, Clone, Copy)]
struct Region {
    size: usize,
    touches_border: bool,
    /// Bounding box, inclusive: x0, y0, x1, y1.
    bbox: (usize, usize, usize, usize),
}

/// Labels the connected regions of pixels for which `inside` holds (`eight`:
/// 8- rather than 4-connectivity). Returns one label per pixel (0 = outside,
/// n = `regions[n - 1]`) and the regions.
fn label_regions(
    mask: &GrayImage,
    inside: impl Fn(u8) -> bool,
    eight: bool,
) -> (Vec<u32>, Vec<Region>) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let data = mask.as_raw();
    let mut labels = vec![0u32; data.len()];
    let mut regions: Vec<Region> = Vec::new();
    let mut stack = Vec::new();
    for start in 0..data.len() {
        if labels[start] != 0 || !inside(data[start]) {
            continue;
        }
        let label = regions.len() as u32 + 1;
        let mut region = Region {
            size: 0,
            touches_border: false,
            bbox: (usize::MAX, usize::MAX, 0, 0),
        };
        labels[start] = label;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            region.size += 1;
            region.touches_border |= x == 0 || y == 0 || x + 1 == w || y + 1 == h;
            let (x0, y0, x1, y1) = region.bbox;
            region.bbox = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            for (dx, dy) in [
                (-1, -1),
                (0, -1),
                (1, -1),
                (-1, 0),
                (1, 0),
                (-1, 1),
                (0, 1),
                (1, 1),
            ] {
                if !eight && dx != 0 && dy != 0 {
                    continue;
                }
                let (nx, ny) = (x as isize + dx, y as isize + dy);
                if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                    continue;
                }
                let n = ny as usize * w + nx as usize;
                if labels[n] == 0 && inside(data[n]) {
                    labels[n] = label;
                    stack.push(n);
                }
            }
        }
        regions.push(region);
    }
    (labels, regions)
}

/// Zeroes foreground blobs under 0.25 % of the picture and under 5 % of the
/// largest blob, with the faint fringe around them.
fn remove_specks(mask: &mut GrayImage) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let (labels, blobs) = label_regions(mask, |v| v >= SOLID, true);
    let largest = blobs.iter().map(|b| b.size).max().unwrap_or(0);
    let limit = ((w * h) as f64 * 0.0025).min(largest as f64 * 0.05);
    let data: &mut [u8] = mask;
    for (index, blob) in blobs.iter().enumerate() {
        if blob.size as f64 >= limit {
            continue;
        }
        let label = index as u32 + 1;
        // The blob and the soft fringe close around it.
        let (x0, y0, x1, y1) = blob.bbox;
        for y in y0.saturating_sub(2)..=(y1 + 2).min(h - 1) {
            for x in x0.saturating_sub(2)..=(x1 + 2).min(w - 1) {
                let i = y * w + x;
                if labels[i] == label || data[i] < SOLID {
                    data[i] = 0;
                }
            }
        }
    }
}

/// Makes enclosed background regions under 0.1 % of the picture opaque.
fn fill_holes(mask: &mut GrayImage) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let limit = (w * h) as f64 * 0.001;
    let (labels, holes) = label_regions(mask, |v| v < SOLID, false);
    let fill: Vec<bool> = holes
        .iter()
        .map(|r| !r.touches_border && (r.size as f64) < limit)
        .collect();
    for (value, &label) in mask.iter_mut().zip(&labels) {
        if label != 0 && fill[label as usize - 1] {
            *value = 255;
        }
    }
}

/// Softens the mask: three box blurs in each direction, which approximate
/// a Gaussian of σ = feather_px / 2 at a cost independent of the radius.
fn feather(mask: &mut GrayImage, feather_px: f32) {
    let sigma = f64::from(feather_px) / 2.0;
    // Three boxes of width 2r + 1 have variance 3((2r + 1)² − 1) / 12 = σ².
    let radius = (((4.0 * sigma * sigma + 1.0).sqrt() - 1.0) / 2.0)
        .round()
        .max(1.0) as usize;
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let mut values: Vec<f32> = mask.as_raw().iter().map(|&v| f32::from(v)).collect();
    let mut line = Vec::new();
    for row in values.chunks_exact_mut(w) {
        for _ in 0..3 {
            box_blur_line(row, radius, &mut line);
        }
    }
    let mut column = vec![0f32; h];
    for x in 0..w {
        for (y, v) in column.iter_mut().enumerate() {
            *v = values[y * w + x];
        }
        for _ in 0..3 {
            box_blur_line(&mut column, radius, &mut line);
        }
        for (y, v) in column.iter().enumerate() {
            values[y * w + x] = *v;
        }
    }
    for (dst, v) in mask.iter_mut().zip(values) {
        *dst = v.round().clamp(0.0, 255.0) as u8;
    }
}

/// In-place box blur of width 2·radius + 1, edges repeated.
fn box_blur_line(values: &mut [f32], radius: usize, scratch: &mut Vec<f32>) {
    let n = values.len();
    if n == 0 {
        return;
    }
    scratch.clear();
    scratch.extend_from_slice(values);
    let at = |i: isize| scratch[i.clamp(0, n as isize - 1) as usize];
    let r = radius as isize;
    let mut sum: f64 = (-r..=r).map(|i| f64::from(at(i))).sum();
    let width = (2 * radius + 1) as f64;
    for (i, v) in values.iter_mut().enumerate() {
        let i = i as isize;
        *v = (sum / width) as f32;
        sum += f64::from(at(i + r + 1)) - f64::from(at(i - r));
    }
}

/// For semi-transparent edge pixels, removes the background colour that
/// bled in: with F̄ and B̄ the mean colours of nearby opaque and transparent
/// pixels, solves C = αF + (1 − α)B̄ for F and leans on F̄ where α is small.
fn decontaminate(img: &mut RgbaImage) {
    let (w, h) = (img.width() as isize, img.height() as isize);
    let radius = (w.max(h) / 256).max(4);
    let step = (radius / 4).max(1);
    let src = img.clone();
    let data = src.as_raw();
    let at = |x: isize, y: isize| &data[((y * w + x) * 4) as usize..((y * w + x) * 4 + 4) as usize];
    for y in 0..h {
        for x in 0..w {
            let px = at(x, y);
            let alpha = px[3];
            if alpha <= 12 || alpha >= 243 {
                continue;
            }
            let (mut fg, mut fg_n, mut bg, mut bg_n) = ([0f64; 3], 0f64, [0f64; 3], 0f64);
            let mut sy = (y - radius).max(0);
            while sy <= (y + radius).min(h - 1) {
                let mut sx = (x - radius).max(0);
                while sx <= (x + radius).min(w - 1) {
                    let s = at(sx, sy);
                    if s[3] >= 243 {
                        (0..3).for_each(|c| fg[c] += f64::from(s[c]));
                        fg_n += 1.0;
                    } else if s[3] <= 12 {
                        (0..3).for_each(|c| bg[c] += f64::from(s[c]));
                        bg_n += 1.0;
                    }
                    sx += step;
                }
                sy += step;
            }
            let a = f64::from(alpha) / 255.0;
            let out = img.get_pixel_mut(x as u32, y as u32);
            for c in 0..3 {
                let observed = f64::from(px[c]);
                let solved = if bg_n > 0.0 {
                    ((observed - (1.0 - a) * bg[c] / bg_n) / a).clamp(0.0, 255.0)
                } else {
                    observed
                };
                let colour = if fg_n > 0.0 {
                    a * solved + (1.0 - a) * fg[c] / fg_n
                } else {
                    solved
                };
                out.0[c] = colour.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Pure-Rust tests run everywhere; the ones marked "runtime" load the real
    //! ONNX Runtime from ORT_DYLIB_PATH with the few-KB models in
    //! tests/fixtures/onnx/ (see its README), and say why when they skip.
    //! The real-model test runs when CUTOUT_TEST_MODEL points to IS-Net.

    use super::*;
    use image::{Luma, Rgba};
    use std::sync::Arc;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/onnx")
            .join(name)
    }

    /// The runtime library for the tests, or `None` (printed) when this
    /// machine has none; with CI or CUTOUT_REQUIRE_ORT set, a missing one fails.
    fn test_runtime() -> Option<PathBuf> {
        match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
            Some(p) => Some(PathBuf::from(p)),
            None if std::env::var_os("CI").is_some()
                || std::env::var_os("CUTOUT_REQUIRE_ORT").is_some() =>
            {
                panic!("ORT_DYLIB_PATH is unset: run `cutout models fetch onnxruntime --dir models` and export ORT_DYLIB_PATH=models/libonnxruntime.so.1.31.1")
            }
            None => {
                eprintln!("skipped: ORT_DYLIB_PATH is unset (`cutout models fetch onnxruntime` gets the library)");
                None
            }
        }
    }

    fn tiny_engine(file: &str, post: PostOptions) -> Option<OnnxEngine> {
        let runtime = test_runtime()?;
        let opts = OnnxOptions {
            runtime: Some(runtime),
            post,
            ..OnnxOptions::new(fixture(file), ModelKind::U2netp)
        };
        Some(OnnxEngine::load(&opts).expect("the tiny model loads"))
    }

    /// A red square (x in 60..140, y in 40..110) on blue, 200×150.
    fn red_on_blue() -> RgbaImage {
        RgbaImage::from_fn(200, 150, |x, y| {
            if (60..140).contains(&x) && (40..110).contains(&y) {
                Rgba([255, 0, 0, 255])
            } else {
                Rgba([0, 0, 255, 255])
            }
        })
    }

    #[test]
    fn model_kinds_parse_rembg_names() {
        for kind in ModelKind::ALL {
            assert_eq!(kind.name().parse::<ModelKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.name());
        }
        assert_eq!("isnet_general_use".parse(), Ok(ModelKind::IsnetGeneralUse));
        assert_eq!("U2NET-HUMAN-SEG".parse(), Ok(ModelKind::U2netHumanSeg));
        assert_eq!("bria-rmbg-2.0".parse(), Ok(ModelKind::BriaRmbg));
        let err = "u3net".parse::<ModelKind>().unwrap_err().to_string();
        assert!(
            err.contains("u3net") && err.contains("isnet-general-use"),
            "{err}"
        );
        assert_eq!(ModelKind::U2net.input_size(), 320);
        assert_eq!(ModelKind::IsnetGeneralUse.input_size(), 1024);
        assert_eq!(ModelKind::BirefnetGeneral.input_size(), 1024);
        assert!(ModelKind::BirefnetPortrait.sigmoid() && !ModelKind::IsnetGeneralUse.sigmoid());
    }

    #[test]
    fn preprocess_normalises_like_rembg() {
        // A uniform picture stays uniform through Lanczos: x / max = 1 for every channel's max.
        let img = RgbaImage::from_pixel(7, 5, Rgba([100, 150, 200, 0]));
        let t = preprocess(&img, ModelKind::U2net, 4).unwrap();
        assert_eq!(t.len(), 3 * 16);
        let expect = |c: usize| {
            ((f64::from([100u8, 150, 200][c]) / 200.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]) as f32
        };
        for c in 0..3 {
            assert!(
                t[c * 16..(c + 1) * 16].iter().all(|&v| v == expect(c)),
                "channel {c}: {:?}",
                &t[c * 16..]
            );
        }
        // IS-Net: mean 0.5, std 1.
        let t = preprocess(&img, ModelKind::IsnetGeneralUse, 2).unwrap();
        assert_eq!(t[0], (0.5f64 - 0.5) as f32);
        assert_eq!(t[8], (1.0f64 - 0.5) as f32);
        // Black: no division by zero.
        let black = RgbaImage::from_pixel(3, 3, Rgba([0, 0, 0, 255]));
        let t = preprocess(&black, ModelKind::IsnetAnime, 2).unwrap();
        assert!(t.iter().all(|v| v.is_finite()));
        assert_eq!(t[0], -0.485f32);
    }

    #[test]
    fn preprocess_is_nchw_and_ignores_alpha() {
        // Left half red, right half green, at the model's own size: no resampling mix at the centre.
        let img = RgbaImage::from_fn(8, 8, |x, _| {
            if x < 4 {
                Rgba([255, 0, 0, 0])
            } else {
                Rgba([0, 255, 0, 7])
            }
        });
        let t = preprocess(&img, ModelKind::IsnetGeneralUse, 8).unwrap();
        let (r, g) = (&t[0..64], &t[64..128]);
        assert_eq!(r[0], 0.5); // row 0, x 0: red
        assert_eq!(g[0], -0.5);
        assert_eq!(r[7], -0.5); // row 0, x 7: green
        assert_eq!(g[7], 0.5);
        assert!(t[128..].iter().all(|&b| b == -0.5)); // blue plane
    }

    /// Expected bytes from Pillow 12.3 `Image.resize(…, Image.LANCZOS)`.
    #[test]
    fn lanczos_matches_pillow_bit_for_bit() {
        let rgb: Vec<u8> = (0..5u32)
            .flat_map(|y| {
                (0..7u32).flat_map(move |x| {
                    (0..3u32).map(move |c| ((x * 53 + y * 29 + c * 80 + x * y * 17) % 256) as u8)
                })
            })
            .collect();
        let up = [
            0, 73, 143, 14, 96, 213, 55, 134, 227, 91, 150, 60, 108, 227, 0, 143, 255, 56, 235,
            113, 83, 186, 2, 119, 14, 57, 181, 2, 134, 229, 53, 169, 244, 5, 83, 164, 25, 99, 174,
            68, 149, 145, 99, 201, 49, 148, 227, 20, 194, 187, 77, 197, 84, 141, 121, 60, 150, 33,
            126, 124, 65, 121, 151, 119, 93, 184, 20, 101, 203, 48, 119, 118, 99, 181, 19, 131,
            255, 39, 206, 201, 85, 242, 78, 127, 130, 70, 213, 45, 157, 177, 90, 208, 46, 161, 100,
            56, 197, 3, 112, 38, 111, 224, 64, 170, 107, 136, 235, 0, 214, 201, 45, 229, 106, 161,
            166, 60, 211, 68, 156, 194, 88, 219, 105, 201, 153, 41, 183, 91, 100, 129, 71, 167, 52,
            124, 237, 81, 190, 144, 160, 218, 41, 240, 94, 89, 176, 53, 197, 63, 143, 223, 89, 233,
            110, 197, 192, 46, 245, 68, 126, 142, 96, 205, 49, 162, 234, 61, 155, 255, 114, 141,
            180, 172, 96, 73, 149, 46, 169, 81, 120, 204, 75, 226, 120, 192, 180, 58, 241, 123,
            116, 161, 130, 231, 135, 97, 206, 145, 71, 142, 76, 191, 230, 152, 96, 166, 191, 2,
            102, 67, 79, 173, 45, 192, 138, 159, 208, 44, 241, 105, 100, 200, 86, 215, 100, 169,
            246, 142, 95, 166, 210, 10, 91, 94, 210, 73, 174, 113, 109, 222, 33, 130, 98, 137, 83,
            102, 165, 49, 209, 99, 92, 171, 117, 196, 135, 121, 226, 166, 83, 162, 142, 92, 167,
            113, 112, 193, 103, 214, 0, 181, 135, 71, 239, 77, 141, 137, 175, 16, 153, 132, 0, 230,
            23, 143, 109, 140, 255, 94, 156, 213, 225, 16, 95, 142, 90, 172, 33, 195, 255,
        ];
        assert_eq!(pil_lanczos(&rgb, 7, 5, 3, 11, 9).unwrap(), up);
        let down = [
            77, 150, 125, 159, 157, 106, 115, 109, 142, 139, 124, 120, 152, 131, 130, 158, 110, 176,
        ];
        assert_eq!(pil_lanczos(&rgb, 7, 5, 3, 3, 2).unwrap(), down);
        let gray: Vec<u8> = (0..5u32)
            .flat_map(|y| (0..7u32).map(move |x| ((x * 37 + y * 91) % 256) as u8))
            .collect();
        let gray_up = [
            5, 55, 132, 239, 17, 84, 150, 198, 37, 132, 180, 130, 79, 175, 199, 56, 145, 164, 168,
            27, 201, 101, 97, 66, 203, 45, 60, 136, 142, 31, 89, 205, 58, 62, 147, 238, 29, 117,
            158, 202, 64, 166, 118, 123, 111, 198, 74, 54, 139, 218, 48, 11,
        ];
        assert_eq!(pil_lanczos(&gray, 7, 5, 1, 4, 13).unwrap(), gray_up);
        assert_eq!(pil_lanczos(&gray, 7, 5, 1, 7, 5).unwrap(), gray);
        assert!(pil_lanczos(&gray, 7, 5, 1, 0, 5).is_err());
    }

    #[test]
    fn mask_output_is_min_max_scaled_and_truncated() {
        assert_eq!(
            to_mask_u8(&[-2.0, 0.0, 2.0, 1.99], false),
            vec![0, 127, 255, 254]
        );
        // Sigmoid first (BiRefNet): monotone, so min–max still spans 0..255.
        let m = to_mask_u8(&[-4.0, 0.0, 4.0], true);
        assert_eq!((m[0], m[1], m[2]), (0, 127, 255));
        assert_eq!(to_mask_u8(&[3.0, 3.0], false), vec![0, 0]);
        assert_eq!(to_mask_u8(&[f32::NAN, 0.0, 1.0], false), vec![0, 0, 255]);
    }

    #[test]
    fn f16_conversions_round_trip() {
        assert_eq!(f32_to_f16_bits(1.0), 0x3c00);
        assert_eq!(f32_to_f16_bits(-2.0), 0xc000);
        assert_eq!(f32_to_f16_bits(0.5), 0x3800);
        assert_eq!(f32_to_f16_bits(65504.0), 0x7bff);
        assert_eq!(f32_to_f16_bits(65520.0), 0x7c00);
        assert_eq!(f32_to_f16_bits(1e-8), 0);
        assert_eq!(f32_to_f16_bits(6e-8), 1);
        assert_eq!(f32_to_f16_bits(1.0 + 1.0 / 2048.0), 0x3c00); // tie → even
        assert_eq!(f32_to_f16_bits(1.0 + 3.0 / 2048.0), 0x3c02);
        for bits in 0..=u16::MAX {
            let f = f16_bits_to_f32(bits);
            if !f.is_nan() {
                assert_eq!(f32_to_f16_bits(f), bits, "{bits:#06x} → {f}");
            }
        }
    }

    #[test]
    fn alpha_keeps_original_colours() {
        let img = RgbaImage::from_fn(3, 1, |x, _| {
            Rgba([10 * x as u8 + 1, 20, 30, [255, 255, 128][x as usize]])
        });
        let mask = GrayImage::from_vec(3, 1, vec![0, 200, 255]).unwrap();
        let out = apply_alpha(&img, &mask);
        assert_eq!(out.get_pixel(0, 0).0, [1, 20, 30, 0]);
        assert_eq!(out.get_pixel(1, 0).0, [11, 20, 30, 200]);
        assert_eq!(out.get_pixel(2, 0).0, [21, 20, 30, 128]);
    }

    #[test]
    fn specks_go_and_holes_fill() {
        let mut mask = GrayImage::from_fn(100, 100, |x, y| {
            let subject = (20..80).contains(&x) && (20..80).contains(&y);
            let hole = (45..48).contains(&x) && (45..48).contains(&y);
            let speck = (3..5).contains(&x) && (3..5).contains(&y);
            Luma([if (subject && !hole) || speck { 255 } else { 0 }])
        });
        mask.put_pixel(2, 3, Luma([60])); // the speck's fringe
        refine_mask(
            &mut mask,
            &PostOptions {
                remove_specks: true,
                fill_holes: true,
                ..PostOptions::default()
            },
        );
        assert_eq!(mask.get_pixel(3, 3).0[0], 0);
        assert_eq!(mask.get_pixel(2, 3).0[0], 0);
        assert_eq!(mask.get_pixel(47, 47).0[0], 255);
        assert_eq!(mask.get_pixel(30, 30).0[0], 255);
        assert_eq!(mask.get_pixel(90, 90).0[0], 0);
    }

    #[test]
    fn feather_softens_only_the_edge() {
        let mut mask = GrayImage::from_fn(40, 40, |x, _| Luma([if x < 20 { 255 } else { 0 }]));
        feather(&mut mask, 4.0);
        assert_eq!(mask.get_pixel(5, 5).0[0], 255);
        assert_eq!(mask.get_pixel(35, 5).0[0], 0);
        let edge = mask.get_pixel(20, 5).0[0];
        assert!(edge > 40 && edge < 215, "{edge}");
    }

    #[test]
    fn decontamination_removes_background_bleed() {
        // Red subject, blue background, a column of half-transparent purple at the edge.
        let mut img = RgbaImage::from_fn(20, 10, |x, _| match x {
            0..=9 => Rgba([255, 0, 0, 255]),
            10 => Rgba([128, 0, 127, 128]),
            _ => Rgba([0, 0, 255, 0]),
        });
        decontaminate(&mut img);
        let edge = img.get_pixel(10, 5).0;
        assert!(edge[0] > 240 && edge[2] < 15, "{edge:?}");
        assert_eq!(edge[3], 128);
        assert_eq!(img.get_pixel(3, 3).0, [255, 0, 0, 255]);
    }

    #[test]
    fn missing_model_says_how_to_get_it() {
        let opts = OnnxOptions::new(
            "/nonexistent/models/isnet-general-use.onnx",
            ModelKind::IsnetGeneralUse,
        );
        let err = OnnxEngine::load(&opts).unwrap_err();
        assert_eq!(err.code(), "model-missing");
        let text = err.to_string();
        assert!(
            text.contains("cutout models fetch isnet-general-use --dir /nonexistent/models"),
            "{text}"
        );
    }

    #[test]
    fn missing_runtime_says_how_to_get_it() {
        let opts = OnnxOptions {
            runtime: Some(PathBuf::from("/nonexistent/libonnxruntime.so.1.31.1")),
            ..OnnxOptions::new(fixture("tiny.onnx"), ModelKind::U2netp)
        };
        let err = OnnxEngine::load(&opts).unwrap_err();
        assert_eq!(err.code(), "runtime-missing");
        let text = err.to_string();
        assert!(text.contains("cutout models fetch onnxruntime"), "{text}");
        assert!(
            text.contains("ORT_DYLIB_PATH") && text.contains("onnxruntime = "),
            "{text}"
        );
    }

    #[test]
    fn runtime_is_found_in_the_model_folder() {
        let dir = std::env::temp_dir().join(format!("cutout-onnx-find-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "libonnxruntime.so.1.30.0",
            "libonnxruntime.so.1.31.1",
            "libonnxruntime_providers_shared.so",
        ] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        assert_eq!(
            find_runtime_in(&dir),
            Some(dir.join("libonnxruntime.so.1.31.1"))
        );
        assert_eq!(version_of(&dir.join("libonnxruntime.so.1.31.1")), "1.31.1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn engine_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<OnnxEngine>();
    }

    /// runtime: load, output shape, the mask follows the tiny model's R − B.
    #[test]
    fn tiny_model_masks_the_red_square() {
        let Some(engine) = tiny_engine("tiny.onnx", PostOptions::default()) else {
            return;
        };
        let d = engine.describe();
        assert!(
            d.starts_with("u2netp (tiny.onnx, 320², onnxruntime ") && d.ends_with(", 1 thread)"),
            "{d}"
        );
        let img = red_on_blue();
        let mask = engine.mask(&img).unwrap();
        assert_eq!(mask.dimensions(), (200, 150));
        assert!(mask.get_pixel(100, 75).0[0] >= 250);
        assert!(mask.get_pixel(62, 42).0[0] >= 200);
        assert!(mask.get_pixel(10, 10).0[0] <= 5);
        assert!(mask.get_pixel(190, 140).0[0] <= 5);
    }

    /// runtime: alpha is written, colours are the picture's own.
    #[test]
    fn tiny_model_cut_out_keeps_colours() {
        let Some(engine) = tiny_engine("tiny.onnx", PostOptions::default()) else {
            return;
        };
        let img = red_on_blue();
        let out = engine.cut_out(&img).unwrap();
        assert_eq!(out.dimensions(), img.dimensions());
        for (o, i) in out.pixels().zip(img.pixels()) {
            assert_eq!(
                o.0[..3],
                i.0[..3],
                "colours must not be blended toward black"
            );
        }
        assert!(out.get_pixel(100, 75).0[3] >= 250);
        assert!(out.get_pixel(5, 5).0[3] <= 5);
    }

    /// runtime: a float16 graph (input and output) gives the same mask.
    #[test]
    fn tiny_float16_model_matches_float32() {
        let Some(f32_engine) = tiny_engine("tiny.onnx", PostOptions::default()) else {
            return;
        };
        let Some(f16_engine) = tiny_engine("tiny-f16.onnx", PostOptions::default()) else {
            return;
        };
        assert!(f16_engine.describe().contains("float16 input"));
        let img = red_on_blue();
        let (a, b) = (
            f32_engine.mask(&img).unwrap(),
            f16_engine.mask(&img).unwrap(),
        );
        let worst = a
            .pixels()
            .zip(b.pixels())
            .map(|(p, q)| p.0[0].abs_diff(q.0[0]))
            .max()
            .unwrap();
        assert!(worst <= 2, "float16 mask differs by {worst}");
    }

    /// runtime: a model whose input does not fit the kind is refused with a hint.
    #[test]
    fn wrong_model_kind_is_a_clear_error() {
        let Some(runtime) = test_runtime() else {
            return;
        };
        let opts = OnnxOptions {
            runtime: Some(runtime),
            ..OnnxOptions::new(fixture("tiny.onnx"), ModelKind::IsnetGeneralUse)
        };
        let err = OnnxEngine::load(&opts).unwrap_err();
        assert_eq!(err.code(), "bad-model");
        assert!(err.to_string().contains("is `model_kind` right?"), "{err}");
    }

    /// runtime: several blocking threads share one engine.
    #[test]
    fn engine_serves_several_threads() {
        let Some(engine) = tiny_engine("tiny.onnx", PostOptions::default()) else {
            return;
        };
        let engine = Arc::new(engine);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let engine = Arc::clone(&engine);
                std::thread::spawn(move || {
                    engine
                        .mask(&red_on_blue())
                        .map(|m| m.get_pixel(100, 75).0[0])
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap().unwrap() >= 250);
        }
    }

    /// real model: CUTOUT_TEST_MODEL=…/isnet-general-use.onnx separates the cat from the background.
    #[test]
    fn real_model_separates_the_cat() {
        let Some(model) = std::env::var_os("CUTOUT_TEST_MODEL").filter(|p| !p.is_empty()) else {
            eprintln!("skipped: CUTOUT_TEST_MODEL is unset (`cutout models fetch isnet-general-use` gets the model)");
            return;
        };
        let kind = std::env::var("CUTOUT_TEST_MODEL_KIND")
            .ok()
            .map(|k| k.parse().unwrap())
            .unwrap_or(ModelKind::IsnetGeneralUse);
        let opts = OnnxOptions {
            threads: 2,
            ..OnnxOptions::new(model, kind)
        };
        let engine = OnnxEngine::load(&opts).unwrap();
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples/chelsea.png");
        let img = image::open(&sample).unwrap().to_rgba8();
        let out = engine.cut_out(&img).unwrap();
        let (w, h) = out.dimensions();
        let alpha = |x: u32, y: u32| out.get_pixel(x, y).0[3];
        // The cat's head and chest fill the middle; the background is the corners.
        assert!(
            alpha(w / 2, h / 2) >= 200,
            "centre alpha {}",
            alpha(w / 2, h / 2)
        );
        for (x, y) in [(5, 5), (w - 6, 5)] {
            assert!(alpha(x, y) <= 30, "corner ({x},{y}) alpha {}", alpha(x, y));
        }
        let opaque = out.pixels().filter(|p| p.0[3] >= 128).count() as f64 / f64::from(w * h);
        assert!(
            (0.15..0.85).contains(&opaque),
            "subject covers {opaque:.2} of the picture"
        );
        if let Some(dir) = std::env::var_os("CUTOUT_TEST_OUT") {
            out.save(Path::new(&dir).join("chelsea-cutout.png"))
                .unwrap();
        }
    }
}
