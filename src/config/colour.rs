//! The colour rule the provider options share: `#RGB`, `#RGBA`,
//! `#RRGGBB`, `#RRGGBBAA`, `transparent`, or a CSS colour name.
//!
//! Must not: import anything else from `config` (a leaf, so `options` and
//! `peer_options` can both use it without a cycle).

/// Whether `c` is a colour the hosted APIs' colour options accept.
pub(super) fn is_color(c: &str) -> bool {
    if let Some(hex) = c.strip_prefix('#') {
        return matches!(hex.len(), 3 | 4 | 6 | 8) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    let lower = c.to_ascii_lowercase();
    lower == "transparent" || CSS_COLOR_NAMES.split_whitespace().any(|n| n == lower)
}

/// The CSS named colours (the names rembg.com's "colour name" accepts, as
/// far as its docs say).
const CSS_COLOR_NAMES: &str = "aliceblue antiquewhite aqua aquamarine azure beige bisque black \
blanchedalmond blue blueviolet brown burlywood cadetblue chartreuse chocolate coral \
cornflowerblue cornsilk crimson cyan darkblue darkcyan darkgoldenrod darkgray darkgreen \
darkgrey darkkhaki darkmagenta darkolivegreen darkorange darkorchid darkred darksalmon \
darkseagreen darkslateblue darkslategray darkslategrey darkturquoise darkviolet deeppink \
deepskyblue dimgray dimgrey dodgerblue firebrick floralwhite forestgreen fuchsia gainsboro \
ghostwhite gold goldenrod gray green greenyellow grey honeydew hotpink indianred indigo ivory \
khaki lavender lavenderblush lawngreen lemonchiffon lightblue lightcoral lightcyan \
lightgoldenrodyellow lightgray lightgreen lightgrey lightpink lightsalmon lightseagreen \
lightskyblue lightslategray lightslategrey lightsteelblue lightyellow lime limegreen linen \
magenta maroon mediumaquamarine mediumblue mediumorchid mediumpurple mediumseagreen \
mediumslateblue mediumspringgreen mediumturquoise mediumvioletred midnightblue mintcream \
mistyrose moccasin navajowhite navy oldlace olive olivedrab orange orangered orchid \
palegoldenrod palegreen paleturquoise palevioletred papayawhip peachpuff peru pink plum \
powderblue purple rebeccapurple red rosybrown royalblue saddlebrown salmon sandybrown seagreen \
seashell sienna silver skyblue slateblue slategray slategrey snow springgreen steelblue tan \
teal thistle tomato turquoise violet wheat white whitesmoke yellow yellowgreen";
