//! The `local` provider: the built-in engine, no network, no API key, no
//! per-picture cost.
//!
//! Owns: running the engine on the blocking pool with the decoded,
//! EXIF-oriented pixels, and mapping engine errors to provider errors.
//!
//! Must not: run pixel work on the async executor or touch files.

use async_trait::async_trait;

use super::{BuildError, Cutout, Health, Outcome, Provider, ProviderError, Request};
use crate::config::LocalConfig;
use crate::engine::backdrop::{self, BackdropOptions, SegmentError};

pub struct LocalProvider {
    name: String,
    options: BackdropOptions,
}

impl LocalProvider {
    pub fn new(name: &str, _cfg: &LocalConfig) -> Result<Self, BuildError> {
        Ok(LocalProvider {
            name: name.to_string(),
            options: BackdropOptions::default(),
        })
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

    async fn remove_background(&self, req: Request<'_>) -> Result<Outcome, ProviderError> {
        let decoded = req.input.decoded.clone().ok_or(ProviderError::Permanent {
            code: "internal-no-pixels",
            message: "the local engine was given no decoded pixels".into(),
        })?;
        let options = self.options.clone();
        let span = tracing::debug_span!("local-engine", file = req.file_name);
        let result = tokio::task::spawn_blocking(move || {
            let _g = span.enter();
            backdrop::cut_out(&decoded.rgba, &options).map(|img| (img, decoded.icc.clone()))
        })
        .await
        .map_err(|e| ProviderError::Transient {
            code: "engine-crashed",
            message: format!("the built-in engine stopped unexpectedly: {e}"),
            retry_after: None,
        })?;
        match result {
            Ok((image, icc)) => Ok(Outcome {
                cutout: Cutout::Pixels { image, icc },
                remote_job: None,
                credits_used: None,
            }),
            Err(e @ SegmentError::TooSmall { .. }) => Err(ProviderError::Permanent {
                code: "image-too-small",
                message: e.to_string(),
            }),
            Err(e @ SegmentError::NoObject) => Err(ProviderError::Permanent {
                code: "no-object-found",
                message: e.to_string(),
            }),
        }
    }

    async fn health(&self) -> Health {
        Health {
            lines: vec!["built-in backdrop segmenter (no network, no key)".into()],
            ok: true,
        }
    }
}
