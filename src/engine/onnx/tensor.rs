//! The model's tensors: checking its input (`[1, 3, S, S]`, float32 or float16)
//! and output, building the input value and reading the first output channel,
//! with the float16 conversions `ort` lacks without `half`.
//!
//! Must not: normalise or resize pixels.

use ort::memory::Allocator;
use ort::session::Session;
use ort::value::{DynTensor, DynTensorValueType, DynValue, TensorElementType, ValueType};

use super::kind::ModelKind;
use super::types::{inference, OnnxError};

/// Whether the graph wants float32 or float16 tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Precision {
    F32,
    F16,
}

impl Precision {
    pub(super) fn of(ty: TensorElementType) -> Option<Precision> {
        match ty {
            TensorElementType::Float32 => Some(Precision::F32),
            TensorElementType::Float16 => Some(Precision::F16),
            _ => None,
        }
    }
}

/// The model's single image input: `[1, 3, S, S]` (any dimension may be
/// dynamic), float32 or float16; S must be the kind's size when fixed.
pub(super) fn check_input(session: &Session, kind: ModelKind) -> Result<(u32, Precision), String> {
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
pub(super) fn check_output(session: &Session) -> Result<String, String> {
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
pub(super) fn read_mask_output(value: DynValue) -> Result<(u32, u32, Vec<f32>), OnnxError> {
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
pub(super) fn f16_tensor(shape: &[usize; 4], values: &[f32]) -> Result<DynTensor, OnnxError> {
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
pub(super) fn f32_to_f16_bits(x: f32) -> u16 {
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
pub fn f16_bits_to_f32(h: u16) -> f32 {
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
