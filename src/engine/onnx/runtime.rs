//! Loading ONNX Runtime: finding the shared library (configured path,
//! `ORT_DYLIB_PATH`, the model's folder), loading it once per process, and
//! building a CPU session with cutout's settings.
//!
//! Must not: run inference or touch pixels.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::ep;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use super::types::{folder_of, OnnxError, OnnxOptions};

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
pub(super) fn resolve_runtime(opts: &OnnxOptions) -> Result<PathBuf, OnnxError> {
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
pub(super) fn find_runtime_in(dir: &Path) -> Option<PathBuf> {
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
pub(super) fn version_in_name(name: &str) -> Vec<u32> {
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
pub(super) fn version_of(path: &Path) -> String {
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
pub(super) fn runtime(path: &Path) -> Result<(Environment, String), OnnxError> {
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

/// One session on the CPU: full graph optimisation (`Level3` in `ort` is
/// only the layout level: slower, and its output differs from Python
/// onnxruntime by ~2e-4), `threads` intra-op threads that sleep rather than
/// spin between operators (the cores are shared with decoding and encoding),
/// the CPU memory arena as configured and the memory pattern planner off.
///
/// Measured on IS-Net 1024², 2 threads, 4 pictures per process: the memory
/// pattern adds ~0.8 GB peak RSS for no measurable speed; the arena adds
/// ~0.2 GB and saves ~0.4 s of CPU (page faults) per picture.
pub(super) fn build_session(env: &Environment, opts: &OnnxOptions) -> Result<Session, String> {
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
