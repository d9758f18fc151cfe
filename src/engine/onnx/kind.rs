//! The model kinds cutout knows (rembg's names) and what each needs: input
//! size, normalisation and whether its output is a logit.
//!
//! Must not: load or inspect model files.

use std::fmt;
use std::str::FromStr;

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

pub(super) const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub(super) const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

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

    pub(super) fn mean(self) -> [f64; 3] {
        match self {
            ModelKind::IsnetGeneralUse => [0.5; 3],
            _ => IMAGENET_MEAN,
        }
    }

    pub(super) fn std(self) -> [f64; 3] {
        match self {
            ModelKind::IsnetGeneralUse | ModelKind::IsnetAnime => [1.0; 3],
            _ => IMAGENET_STD,
        }
    }

    /// BiRefNet outputs logits: rembg applies a sigmoid before min–max.
    pub(super) fn sigmoid(self) -> bool {
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
