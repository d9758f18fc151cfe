//! Tests for `spec`: syntax, presets, overrides and every check error.

use super::*;

fn parse(toml_text: &str) -> Result<Vec<RawOutput>, toml::de::Error> {
    #[derive(Deserialize)]
    struct Doc {
        output: Vec<RawOutput>,
    }
    toml::from_str::<Doc>(toml_text).map(|d| d.output)
}

fn one(toml_text: &str) -> Result<OutputSpec, SpecError> {
    let raw = parse(&format!("[[output]]\n{toml_text}")).expect("valid toml");
    raw[0].check(1)
}

#[test]
fn value_syntax() {
    assert_eq!(parse_percent("85%"), Some(0.85));
    assert_eq!(parse_percent(" 12.5 % "), Some(0.125));
    assert_eq!(parse_percent("85"), None);
    assert_eq!(parse_percent("-5%"), None);
    assert_eq!(parse_size("2000x1500"), Some((2000, 1500)));
    assert_eq!(parse_size("20X30"), Some((20, 30)));
    assert_eq!(parse_size("0x30"), None);
    assert_eq!(parse_size("30000x1"), Some((30000, 1)));
    assert_eq!(parse_size("30001x1"), None);
    assert_eq!(parse_size("2000"), None);
    assert_eq!(parse_colour("#FFFFFF"), Some([255, 255, 255, 255]));
    assert_eq!(parse_colour("#0a0B0c80"), Some([10, 11, 12, 128]));
    assert_eq!(parse_colour("FFFFFF"), None);
    assert_eq!(parse_colour("#FFF"), None);
    assert_eq!(parse_colour("#GGGGGG"), None);
    assert_eq!(parse_length("40px"), Some(Length::Px(40)));
    assert_eq!(parse_length("5%"), Some(Length::Share(0.05)));
    assert_eq!(parse_length("0"), Some(Length::Px(0)));
    assert_eq!(parse_length("100%"), None);
    assert_eq!(parse_length("40"), None);
    let m = parse_margins("10px 5% 0 20px").expect("four values");
    assert_eq!(
        m,
        Margins {
            top: Length::Px(10),
            right: Length::Share(0.05),
            bottom: Length::Px(0),
            left: Length::Px(20)
        }
    );
    assert_eq!(parse_margins("7px").map(|m| m.left), Some(Length::Px(7)));
    assert_eq!(parse_margins("1px 2px"), None);
    assert_eq!(parse_margins(""), None);
}

#[test]
fn defaults_without_any_key() {
    let s = one("").expect("empty table is valid");
    assert_eq!(s.format, Format::Png);
    assert_eq!(s.quality, 90);
    assert_eq!(s.background, None);
    assert_eq!(s.crop, Crop::None);
    assert_eq!(s.alpha_threshold, 16);
    assert_eq!(s.canvas, Canvas::None);
    assert_eq!(s.fill, None);
    assert_eq!(s.margin, Margins::ZERO);
    assert_eq!(s.position, Position::Center);
    assert!(s.upscale);
    assert_eq!(s.max_size, None);
    assert_eq!(s.shadow, Shadow::None);
    assert!(!s.mask);
    assert_eq!(s.suffix, "");
    assert_eq!(s.folder, None);
    assert!(!s.to_srgb);
}

#[test]
fn presets_have_their_documented_values() {
    let a = one("preset = \"amazon\"").expect("amazon");
    assert_eq!(a.format, Format::Jpeg);
    assert_eq!(a.quality, 90);
    assert_eq!(a.background, Some([255, 255, 255, 255]));
    assert_eq!(a.crop, Crop::Subject);
    assert_eq!(
        a.canvas,
        Canvas::Fixed {
            width: 2000,
            height: 2000
        }
    );
    assert_eq!(a.fill, Some(0.85));
    assert!(a.to_srgb);
    let s = one("preset = \"shopify\"").expect("shopify");
    assert_eq!(
        s.canvas,
        Canvas::Fixed {
            width: 2048,
            height: 2048
        }
    );
    let e = one("preset = \"ebay\"").expect("ebay");
    assert_eq!(
        e.canvas,
        Canvas::Fixed {
            width: 1600,
            height: 1600
        }
    );
    let q = one("preset = \"square\"").expect("square");
    assert_eq!(
        (q.format, q.canvas, q.background),
        (Format::Png, Canvas::Square, None)
    );
    assert_eq!(q.margin.top, Length::Share(0.05));
    assert!(!q.to_srgb);
    let t = one("preset = \"thumbnail\"").expect("thumbnail");
    assert_eq!((t.format, t.quality), (Format::Webp, 80));
    assert_eq!(
        t.canvas,
        Canvas::Fixed {
            width: 400,
            height: 400
        }
    );
}

#[test]
fn keys_beside_a_preset_override_it() {
    let s = one("preset = \"amazon\"\nfill = \"70%\"\nformat = \"png\"\nbackground = \"#000000\"")
        .expect("valid");
    assert_eq!(s.fill, Some(0.7));
    assert_eq!(s.format, Format::Png);
    assert_eq!(s.background, Some([0, 0, 0, 255]));
    assert_eq!(s.crop, Crop::Subject, "not overridden: from the preset");
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let err = parse("[[output]]\nfil = \"85%\"").expect_err("unknown key");
    assert!(err.to_string().contains("fil"), "{err}");
}

#[test]
fn check_errors_name_the_key() {
    let cases: [(&str, &str, &str); 14] = [
        ("format = \"jpeg\"", "background", "output-jpeg-transparent"),
        (
            "format = \"jpeg\"\nbackground = \"#FFFFFF80\"",
            "background",
            "output-jpeg-transparent",
        ),
        ("preset = \"etsy\"", "preset", "output-unknown-preset"),
        ("fill = \"101%\"", "fill", "output-fill-over-100"),
        ("fill = \"85\"", "fill", "output-bad-value"),
        ("margin = \"50% 0 50% 0\"", "margin", "output-no-room"),
        (
            "canvas = \"100x100\"\nmargin = \"50px\"",
            "margin",
            "output-no-room",
        ),
        (
            "canvas = \"100x100\"\nmargin = \"0 45px 0 60%\"",
            "margin",
            "output-no-room",
        ),
        ("margin = \"1px 2px\"", "margin", "output-bad-value"),
        ("background = \"white\"", "background", "output-bad-value"),
        ("canvas = \"2000\"", "canvas", "output-bad-value"),
        ("max_size = \"1000 x\"", "max_size", "output-bad-value"),
        ("quality = 0", "quality", "output-bad-value"),
        ("folder = \"../x\"", "folder", "output-bad-value"),
    ];
    for (text, key, code) in cases {
        let err = one(text).expect_err(text);
        assert_eq!((err.key(), err.code()), (key, code), "{text}: {err}");
        assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
    }
}

#[test]
fn jpeg_mask_needs_no_background() {
    let s = one("format = \"jpeg\"\nmask = true").expect("a grey mask has no alpha");
    assert!(s.mask);
}

#[test]
fn margins_that_leave_room_pass() {
    one("canvas = \"100x100\"\nmargin = \"49px\"").expect("2 px left");
    one("margin = \"49%\"").expect("2 % left");
    one("margin = 12").expect("integer pixels");
}

#[test]
fn later_outputs_get_a_default_suffix() {
    let raw =
        parse("[[output]]\npreset = \"amazon\"\n[[output]]\n[[output]]\npreset = \"thumbnail\"")
            .expect("toml");
    let specs = check_outputs(&raw).expect("no collision");
    let names: Vec<String> = specs.iter().map(OutputSpec::name_pattern).collect();
    assert_eq!(
        names,
        ["<stem>.jpg", "<stem>-output2.png", "<stem>-thumbnail.webp"]
    );
}

#[test]
fn colliding_outputs_are_refused() {
    let raw = parse("[[output]]\n[[output]]\nsuffix = \"\"").expect("toml");
    let err = check_outputs(&raw).expect_err("same name");
    assert_eq!(err.index, 2);
    assert_eq!(err.error.code(), "output-name-collision");
    assert!(err.to_string().contains("<stem>.png"), "{err}");
    // Same suffix, another folder or another format: fine.
    let raw = parse(
        "[[output]]\n[[output]]\nsuffix = \"\"\nfolder = \"big\"\n[[output]]\nsuffix = \"\"\nformat = \"webp\"",
    )
    .expect("toml");
    check_outputs(&raw).expect("distinct names");
}

#[test]
fn display_fills_in_preset_values_and_round_trips() {
    let s = one("preset = \"thumbnail\"\nsuffix = \"-t\"").expect("valid");
    let line = s.to_string();
    assert!(line.contains("canvas = \"400x400\""), "{line}");
    assert!(line.contains("margin = \"5% 5% 5% 5%\""), "{line}");
    let back: RawOutput = toml::from_str(&toml::to_string(&s.to_raw()).expect("ser")).expect("de");
    assert_eq!(back.check(1).expect("valid"), s);
}
