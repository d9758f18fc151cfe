//! `cutout models fetch … --fp32`: a float32 copy of a float16 ONNX graph
//! (IMG.LY's build of IS-Net), made by rewriting ONNX's protobuf wire format
//! directly: no protobuf compiler, no generated code, no new dependency.
//!
//! Owns: reading and re-writing the few ONNX messages that carry element types
//! — float16 tensors (initialisers and `Constant`/attribute tensors, raw or
//! `int32_data`) become float32 `raw_data`, `Cast(to = float16)` and
//! `dtype = float16` attributes become float32, and float16 value infos
//! (graph inputs, outputs, `value_info`) become float32. Every other field
//! is copied byte for byte, in order, so nothing the converter does not know
//! is lost.
//!
//! Must not: write files (the caller installs the result atomically and
//! checks its digest), or guess: a graph with what this cannot convert
//! safely (external data, sparse tensors, operators outside the default ONNX
//! domain, model-local functions, training info) is refused with the reason.

use thiserror::Error;

use crate::engine::onnx::f16_bits_to_f32;

/// ONNX `TensorProto.DataType` values this converter knows.
const FLOAT: u64 = 1;
const FLOAT16: u64 = 10;

/// Protobuf wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// Why a model could not be converted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("not a readable ONNX model ({0})")]
    Malformed(String),
    #[error("cannot convert this graph to float32 safely: it has {0}")]
    Unsupported(String),
    #[error("nothing to convert: the graph has no float16 tensors or types")]
    NothingToConvert,
}

/// What a conversion changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Converted {
    /// float16 tensors (initialisers, constants) now float32.
    pub tensors: usize,
    /// Their elements.
    pub values: usize,
    /// `to`/`dtype` attributes retargeted from float16 to float32.
    pub casts: usize,
    /// Value infos (inputs, outputs, intermediate types) now float32.
    pub types: usize,
}

/// The float32 copy of an ONNX model whose graph computes in float16.
pub fn to_fp32(model: &[u8]) -> Result<(Vec<u8>, Converted), ConvertError> {
    let mut stats = Converted::default();
    let mut has_graph = false;
    let out = rewrite(model, &mut stats, |f, out, stats| {
        Ok(match f.number {
            7 => {
                has_graph = true;
                put_len(out, 7, &graph(message(f)?, stats)?)
            }
            20 => return Err(unsupported("training info")),
            25 => return Err(unsupported("model-local functions")),
            _ => false,
        })
    })?;
    if !has_graph {
        return Err(malformed("no graph"));
    }
    if stats == Converted::default() {
        return Err(ConvertError::NothingToConvert);
    }
    Ok((out, stats))
}

/// One field of a message: its number, wire type, payload (for
/// length-delimited fields the bytes inside; else the value's bytes), the
/// varint value when it is one, and the whole field as written.
struct Field<'a> {
    number: u64,
    wire: u8,
    payload: &'a [u8],
    varint: u64,
    raw: &'a [u8],
}

fn malformed(what: &str) -> ConvertError {
    ConvertError::Malformed(what.to_string())
}

fn unsupported(what: &str) -> ConvertError {
    ConvertError::Unsupported(what.to_string())
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, ConvertError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or_else(|| malformed("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(malformed("varint longer than 10 bytes"))
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, len: u64) -> Result<&'a [u8], ConvertError> {
    let len = usize::try_from(len).map_err(|_| malformed("field too long"))?;
    let end = pos
        .checked_add(len)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| malformed("field runs past the end of its message"))?;
    let bytes = &buf[*pos..end];
    *pos = end;
    Ok(bytes)
}

/// The fields of one message, in order.
fn parse(buf: &[u8]) -> Result<Vec<Field<'_>>, ConvertError> {
    let mut fields = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let tag = read_varint(buf, &mut pos)?;
        let (number, wire) = (tag >> 3, (tag & 7) as u8);
        if number == 0 {
            return Err(malformed("field number 0"));
        }
        let (payload, varint) = match wire {
            VARINT => {
                let at = pos;
                let v = read_varint(buf, &mut pos)?;
                (&buf[at..pos], v)
            }
            I64 => (take(buf, &mut pos, 8)?, 0),
            LEN => {
                let len = read_varint(buf, &mut pos)?;
                (take(buf, &mut pos, len)?, 0)
            }
            I32 => (take(buf, &mut pos, 4)?, 0),
            _ => return Err(malformed("protobuf groups or an unknown wire type")),
        };
        fields.push(Field {
            number,
            wire,
            payload,
            varint,
            raw: &buf[start..pos],
        });
    }
    Ok(fields)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes a length-delimited field; returns `true` (the field was handled).
fn put_len(out: &mut Vec<u8>, number: u64, bytes: &[u8]) -> bool {
    put_varint(out, (number << 3) | u64::from(LEN));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    true
}

/// Writes a varint field; returns `true` (the field was handled).
fn put_uint(out: &mut Vec<u8>, number: u64, v: u64) -> bool {
    put_varint(out, number << 3);
    put_varint(out, v);
    true
}

/// Copies `buf`'s fields, letting `each` write the ones it handles (it
/// returns `true` for those); the others are copied as they were.
fn rewrite<F>(buf: &[u8], stats: &mut Converted, mut each: F) -> Result<Vec<u8>, ConvertError>
where
    F: FnMut(&Field<'_>, &mut Vec<u8>, &mut Converted) -> Result<bool, ConvertError>,
{
    let mut out = Vec::with_capacity(buf.len() + buf.len() / 8);
    for field in parse(buf)? {
        if !each(&field, &mut out, stats)? {
            out.extend_from_slice(field.raw);
        }
    }
    Ok(out)
}

/// A length-delimited field whose payload must be a message.
fn message<'a>(f: &Field<'a>) -> Result<&'a [u8], ConvertError> {
    if f.wire == LEN {
        Ok(f.payload)
    } else {
        Err(malformed("a message field is not length-delimited"))
    }
}

/// `GraphProto`: nodes, initialisers, inputs, outputs, value infos.
fn graph(buf: &[u8], stats: &mut Converted) -> Result<Vec<u8>, ConvertError> {
    rewrite(buf, stats, |f, out, stats| {
        Ok(match f.number {
            1 => put_len(out, 1, &node(message(f)?, stats)?),
            5 => put_len(out, 5, &tensor(message(f)?, stats)?),
            11..=13 => put_len(out, f.number, &value_info(message(f)?, stats)?),
            15 => return Err(unsupported("sparse initialisers")),
            _ => false,
        })
    })
}

/// The UTF-8 text of a string field.
fn text<'a>(f: &Field<'a>) -> Result<&'a str, ConvertError> {
    std::str::from_utf8(message(f)?).map_err(|_| malformed("a name is not UTF-8"))
}

/// `NodeProto`: only operators of the default ONNX domain; their attributes.
fn node(buf: &[u8], stats: &mut Converted) -> Result<Vec<u8>, ConvertError> {
    for f in parse(buf)? {
        if f.number == 7 {
            let domain = text(&f)?;
            if !(domain.is_empty() || domain == "ai.onnx") {
                return Err(ConvertError::Unsupported(format!(
                    "an operator of the `{domain}` domain"
                )));
            }
        }
    }
    rewrite(buf, stats, |f, out, stats| {
        Ok(match f.number {
            5 => put_len(out, 5, &attribute(message(f)?, stats)?),
            _ => false,
        })
    })
}

/// `AttributeProto`: `to`/`dtype` = float16 → float32; tensors, subgraphs and
/// types inside are converted too.
fn attribute(buf: &[u8], stats: &mut Converted) -> Result<Vec<u8>, ConvertError> {
    let fields = parse(buf)?;
    let mut is_type = false;
    for f in &fields {
        if f.number == 1 {
            is_type = matches!(text(f)?, "to" | "dtype");
        }
    }
    rewrite(buf, stats, |f, out, stats| {
        Ok(match f.number {
            3 if is_type && f.wire == VARINT && f.varint == FLOAT16 => {
                stats.casts += 1;
                put_uint(out, 3, FLOAT)
            }
            5 | 10 => put_len(out, f.number, &tensor(message(f)?, stats)?),
            6 | 11 => put_len(out, f.number, &graph(message(f)?, stats)?),
            14 | 15 => put_len(out, f.number, &type_proto(message(f)?, stats)?),
            22 | 23 => return Err(unsupported("sparse tensor attributes")),
            _ => false,
        })
    })
}

/// The values of a repeated integer field, packed or not.
fn push_ints(f: &Field<'_>, into: &mut Vec<u64>) -> Result<(), ConvertError> {
    match f.wire {
        VARINT => into.push(f.varint),
        LEN => {
            let mut pos = 0;
            while pos < f.payload.len() {
                into.push(read_varint(f.payload, &mut pos)?);
            }
        }
        _ => return Err(malformed("an integer field has the wrong wire type")),
    }
    Ok(())
}

/// `TensorProto`: a float16 tensor becomes float32 `raw_data`; any other
/// tensor is copied unchanged.
fn tensor(buf: &[u8], stats: &mut Converted) -> Result<Vec<u8>, ConvertError> {
    let fields = parse(buf)?;
    let is_f16 = fields
        .iter()
        .any(|f| f.number == 2 && f.wire == VARINT && f.varint == FLOAT16);
    if !is_f16 {
        return Ok(buf.to_vec());
    }
    let (mut dims, mut int32_data, mut raw) = (Vec::new(), Vec::new(), None);
    for f in &fields {
        match f.number {
            1 => push_ints(f, &mut dims)?,
            5 => push_ints(f, &mut int32_data)?,
            9 => raw = Some(message(f)?),
            14 if f.varint != 0 => return Err(unsupported("weights in an external file")),
            13 => return Err(unsupported("weights in an external file")),
            _ => {}
        }
    }
    let count = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    let count = count
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| malformed("tensor dimensions overflow"))?;
    let bits: Vec<u16> = match raw {
        Some(bytes) => bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect(),
        None => int32_data.iter().map(|&v| v as u16).collect(),
    };
    if bits.len() != count || raw.is_some_and(|b| b.len() != 2 * count) {
        return Err(malformed(
            "a float16 tensor's data does not match its dimensions",
        ));
    }
    let mut out = Vec::with_capacity(buf.len() + 2 * 2 * count);
    for f in &fields {
        if !matches!(f.number, 2 | 5 | 9) {
            out.extend_from_slice(f.raw);
        }
    }
    put_uint(&mut out, 2, FLOAT);
    let data: Vec<u8> = bits
        .iter()
        .flat_map(|&b| f16_bits_to_f32(b).to_le_bytes())
        .collect();
    put_len(&mut out, 9, &data);
    stats.tensors += 1;
    stats.values += count;
    Ok(out)
}

/// `ValueInfoProto`: its type.
fn value_info(buf: &[u8], stats: &mut Converted) -> Result<Vec<u8>, ConvertError> {
    rewrite(buf, stats, |f, out, stats| {
        Ok(match f.number {
            2 => put_len(out, 2, &type_proto(message(f)?, stats)?),
            _ => false,
        })
    })
}

/// `TypeProto`: tensor and sparse tensor element types; sequences, maps and
/// optionals of them.
fn type_proto(buf: &[u8], stats: &mut Converted) -> Result<Vec<u8>, ConvertError> {
    rewrite(buf, stats, |f, out, stats| {
        Ok(match f.number {
            1 | 8 => put_len(out, f.number, &tensor_type(message(f)?, stats)?),
            4 | 9 => put_len(out, f.number, &inner_type(message(f)?, 1, stats)?),
            5 => put_len(out, 5, &inner_type(message(f)?, 2, stats)?),
            _ => false,
        })
    })
}

/// A message holding a `TypeProto` at field `number` (sequence, optional, map value).
fn inner_type(buf: &[u8], number: u64, stats: &mut Converted) -> Result<Vec<u8>, ConvertError> {
    rewrite(buf, stats, |f, out, stats| {
        Ok(if f.number == number {
            put_len(out, number, &type_proto(message(f)?, stats)?)
        } else {
            false
        })
    })
}

/// `TypeProto.Tensor` / `SparseTensor`: `elem_type` float16 → float32.
fn tensor_type(buf: &[u8], stats: &mut Converted) -> Result<Vec<u8>, ConvertError> {
    rewrite(buf, stats, |f, out, stats| {
        Ok(
            if f.number == 1 && f.wire == VARINT && f.varint == FLOAT16 {
                stats.types += 1;
                put_uint(out, 1, FLOAT)
            } else {
                false
            },
        )
    })
}

#[cfg(test)]
#[path = "fp32_tests.rs"]
mod tests;
