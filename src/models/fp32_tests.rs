//! Unit tests of the float16 → float32 rewrite on hand-built protobuf bytes
//! and the tiny float16 fixture model.

use super::*;

/// A message of the given fields (already encoded).
fn msg(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn len(number: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_len(&mut out, number, bytes);
    out
}

fn uint(number: u64, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_uint(&mut out, number, v);
    out
}

fn f16_tensor_raw(name: &str, values: &[u16]) -> Vec<u8> {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    msg(&[
        uint(1, values.len() as u64),
        uint(2, FLOAT16),
        len(8, name.as_bytes()),
        len(9, &raw),
    ])
}

/// The f32 values and data type of a converted tensor.
fn read_tensor(buf: &[u8]) -> (u64, Vec<f32>) {
    let fields = parse(buf).unwrap();
    let ty = fields.iter().find(|f| f.number == 2).unwrap().varint;
    let raw = fields.iter().find(|f| f.number == 9).map(|f| f.payload);
    let values = raw
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (ty, values)
}

/// A model whose graph holds `graph_fields`, plus an unknown model field (99).
fn model(graph_fields: &[Vec<u8>]) -> Vec<u8> {
    msg(&[uint(1, 8), len(7, &msg(graph_fields)), len(99, b"kept")])
}

fn graph_of(model: &[u8]) -> Vec<Field<'_>> {
    let fields = parse(model).unwrap();
    let g = fields.into_iter().find(|f| f.number == 7).unwrap();
    parse(g.payload).unwrap()
}

#[test]
fn float16_initialisers_become_float32_raw_data() {
    // 1.0, -2.0, 0.5, 65504 (largest half), a subnormal (2^-24).
    let bits = [0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001];
    let m = model(&[len(5, &f16_tensor_raw("w", &bits))]);
    let (out, stats) = to_fp32(&m).unwrap();
    assert_eq!(stats.tensors, 1);
    assert_eq!(stats.values, 5);
    let g = graph_of(&out);
    let (ty, values) = read_tensor(g[0].payload);
    assert_eq!(ty, FLOAT);
    assert_eq!(values, vec![1.0, -2.0, 0.5, 65504.0, 2f32.powi(-24)]);
    let name = parse(g[0].payload).unwrap();
    assert!(name.iter().any(|f| f.number == 8 && f.payload == b"w"));
    assert!(out.ends_with(&len(99, b"kept")), "unknown fields are kept");
}

#[test]
fn int32_data_and_packed_dims_are_read() {
    let mut packed = Vec::new();
    put_varint(&mut packed, 2);
    put_varint(&mut packed, 1);
    let mut ints = Vec::new();
    put_varint(&mut ints, 0x3c00);
    put_varint(&mut ints, 0xbc00);
    let t = msg(&[len(1, &packed), uint(2, FLOAT16), len(5, &ints)]);
    let (out, _) = to_fp32(&model(&[len(5, &t)])).unwrap();
    let (ty, values) = read_tensor(graph_of(&out)[0].payload);
    assert_eq!((ty, values), (FLOAT, vec![1.0, -1.0]));
}

#[test]
fn casts_constants_and_types_are_retargeted() {
    let cast = msg(&[
        len(1, b"x"),
        len(4, b"Cast"),
        len(5, &msg(&[len(1, b"to"), uint(3, FLOAT16), uint(20, 2)])),
    ]);
    let int_cast = msg(&[
        len(4, b"Cast"),
        len(5, &msg(&[len(1, b"to"), uint(3, 7), uint(20, 2)])),
    ]);
    let constant = msg(&[
        len(4, b"Constant"),
        len(
            5,
            &msg(&[len(1, b"value"), len(5, &f16_tensor_raw("c", &[0x3c00]))]),
        ),
    ]);
    let typed = |elem: u64| msg(&[len(1, b"v"), len(2, &len(1, &uint(1, elem)))]);
    let m = model(&[
        len(1, &cast),
        len(1, &int_cast),
        len(1, &constant),
        len(11, &typed(FLOAT16)),
        len(13, &typed(7)),
    ]);
    let (out, stats) = to_fp32(&m).unwrap();
    assert_eq!((stats.casts, stats.tensors, stats.types), (1, 1, 1));
    let expected = model(&[
        len(
            1,
            &msg(&[
                len(1, b"x"),
                len(4, b"Cast"),
                len(5, &msg(&[len(1, b"to"), uint(3, FLOAT), uint(20, 2)])),
            ]),
        ),
        len(1, &int_cast),
        len(
            1,
            &msg(&[
                len(4, b"Constant"),
                len(
                    5,
                    &msg(&[
                        len(1, b"value"),
                        len(
                            5,
                            &msg(&[
                                uint(1, 1),
                                len(8, b"c"),
                                uint(2, FLOAT),
                                len(9, &1f32.to_le_bytes()),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
        len(11, &typed(FLOAT)),
        len(13, &typed(7)),
    ]);
    assert_eq!(out, expected);
}

#[test]
fn what_cannot_be_converted_safely_is_refused() {
    let external = msg(&[uint(1, 1), uint(2, FLOAT16), uint(14, 1)]);
    assert!(matches!(
        to_fp32(&model(&[len(5, &external)])),
        Err(ConvertError::Unsupported(m)) if m.contains("external")
    ));
    let custom = msg(&[len(4, b"FusedConv"), len(7, b"com.microsoft")]);
    assert!(matches!(
        to_fp32(&model(&[len(1, &custom)])),
        Err(ConvertError::Unsupported(m)) if m.contains("com.microsoft")
    ));
    let functions = msg(&[len(7, &len(5, &f16_tensor_raw("w", &[0]))), len(25, b"")]);
    assert!(matches!(
        to_fp32(&functions),
        Err(ConvertError::Unsupported(_))
    ));
    let short = msg(&[uint(1, 3), uint(2, FLOAT16), len(9, &[0, 0])]);
    assert!(matches!(
        to_fp32(&model(&[len(5, &short)])),
        Err(ConvertError::Malformed(_))
    ));
}

#[test]
fn garbage_and_float32_models_are_told_apart() {
    assert!(matches!(
        to_fp32(b"\x3a\xff\x01"),
        Err(ConvertError::Malformed(_))
    ));
    assert!(matches!(
        to_fp32(b"hello world"),
        Err(ConvertError::Malformed(_))
    ));
    assert_eq!(
        to_fp32(b""),
        Err(ConvertError::Malformed("no graph".into()))
    );
    let fp32 = include_bytes!("../../tests/fixtures/onnx/tiny.onnx");
    assert_eq!(to_fp32(fp32), Err(ConvertError::NothingToConvert));
}

#[test]
fn the_tiny_float16_model_becomes_the_float32_one() {
    let f16 = include_bytes!("../../tests/fixtures/onnx/tiny-f16.onnx");
    let (out, stats) = to_fp32(f16).unwrap();
    assert!(stats.types >= 3, "input and both outputs: {stats:?}");
    assert_eq!(to_fp32(&out), Err(ConvertError::NothingToConvert));
}
