//! Mask operations both engines share: on boolean masks (row-major, `w`×`h`)
//! the neighbourhood walk, flood fill, connected-component labelling, speck
//! removal and 3×3 morphology; on 8-bit masks ([`clean`]) speck removal, hole
//! filling and feathering; on colours ([`colour`]) un-mixing edge pixels from
//! the backdrop (decontamination).
//!
//! What it must not do: know which engine calls it or what a backdrop model
//! is (the engines pass plain masks, thresholds and colours), allocate
//! anything that grows with more than the picture, or panic on any mask size
//! (empty masks give empty results).

pub(crate) mod clean;
pub(crate) mod colour;

/// Calls `f` with each 4- (or `eight`: 8-) neighbour of pixel `i` inside the picture.
pub(crate) fn for_each_neighbour(
    i: usize,
    w: usize,
    h: usize,
    eight: bool,
    mut f: impl FnMut(usize),
) {
    let (x, y) = (i % w, i / w);
    let (l, r, t, b) = (x > 0, x + 1 < w, y > 0, y + 1 < h);
    if l {
        f(i - 1);
    }
    if r {
        f(i + 1);
    }
    if t {
        f(i - w);
    }
    if b {
        f(i + w);
    }
    if eight {
        if l && t {
            f(i - w - 1);
        }
        if r && t {
            f(i - w + 1);
        }
        if l && b {
            f(i + w - 1);
        }
        if r && b {
            f(i + w + 1);
        }
    }
}

/// Pixels reachable from `seeds` through `passable` pixels (seeds need not be passable).
pub(crate) fn flood(
    w: usize,
    h: usize,
    passable: &[bool],
    seeds: impl IntoIterator<Item = usize>,
    eight: bool,
) -> Vec<bool> {
    let mut seen = vec![false; w * h];
    let mut stack = Vec::new();
    for s in seeds {
        if s < seen.len() && !seen[s] {
            seen[s] = true;
            stack.push(s);
        }
    }
    while let Some(i) = stack.pop() {
        for_each_neighbour(i, w, h, eight, |j| {
            if passable[j] && !seen[j] {
                seen[j] = true;
                stack.push(j);
            }
        });
    }
    seen
}

/// One connected region found by [`label`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    /// Pixel count.
    pub size: usize,
    /// Whether a pixel of it lies on the picture's border.
    pub touches_border: bool,
    /// Bounding box, inclusive: x0, y0, x1, y1.
    pub bbox: (usize, usize, usize, usize),
}

/// Connected components of `mask` (`eight`: 8- rather than 4-connectivity):
/// one label per pixel (0 = not in the mask, n = `regions[n - 1]`) and the regions.
pub(crate) fn label(w: usize, h: usize, mask: &[bool], eight: bool) -> (Vec<u32>, Vec<Region>) {
    let mut labels = vec![0u32; w * h];
    let mut regions: Vec<Region> = Vec::new();
    let mut stack = Vec::new();
    for s in 0..(w * h).min(mask.len()) {
        if !mask[s] || labels[s] != 0 {
            continue;
        }
        let id = regions.len() as u32 + 1;
        let mut region = Region {
            size: 0,
            touches_border: false,
            bbox: (usize::MAX, usize::MAX, 0, 0),
        };
        labels[s] = id;
        stack.push(s);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            region.size += 1;
            region.touches_border |= x == 0 || y == 0 || x + 1 == w || y + 1 == h;
            let (x0, y0, x1, y1) = region.bbox;
            region.bbox = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            for_each_neighbour(i, w, h, eight, |j| {
                if mask[j] && labels[j] == 0 {
                    labels[j] = id;
                    stack.push(j);
                }
            });
        }
        regions.push(region);
    }
    (labels, regions)
}

/// [`label`] with the size of each label instead of the regions (index 0,
/// the label of pixels outside the mask, has size 0).
pub(crate) fn label_sizes(
    w: usize,
    h: usize,
    mask: &[bool],
    eight: bool,
) -> (Vec<u32>, Vec<usize>) {
    let (labels, regions) = label(w, h, mask, eight);
    let sizes = std::iter::once(0)
        .chain(regions.iter().map(|r| r.size))
        .collect();
    (labels, sizes)
}

/// The pixels of the picture's outermost rows and columns (corners twice).
pub(crate) fn border_pixels(w: usize, h: usize) -> impl Iterator<Item = usize> {
    (0..w)
        .flat_map(move |x| [x, (h - 1) * w + x])
        .chain((0..h).flat_map(move |y| [y * w, y * w + w - 1]))
}

/// Keeps the components of `mask` (8-connected) at least `min_px` large and at least
/// `rel` of the largest one; `None` when nothing is left.
pub(crate) fn keep_large_components(
    w: usize,
    h: usize,
    mask: &[bool],
    min_px: usize,
    rel: f32,
) -> Option<Vec<bool>> {
    let (labels, sizes) = label_sizes(w, h, mask, true);
    let largest = sizes.iter().copied().max().unwrap_or(0);
    if largest == 0 || largest < min_px {
        return None;
    }
    let thr = min_px.max((rel * largest as f32) as usize).max(1);
    let keep: Vec<bool> = sizes.iter().map(|&s| s >= thr).collect();
    Some(labels.iter().map(|&l| l > 0 && keep[l as usize]).collect())
}

/// Pixels of `mask` whose 8 neighbours are all in `mask` (outside the picture counts as
/// inside, so objects cut by the frame keep an interior).
pub(crate) fn erode(w: usize, h: usize, mask: &[bool]) -> Vec<bool> {
    let mut out = vec![false; w * h];
    for (i, o) in out.iter_mut().enumerate() {
        if mask[i] {
            let mut all = true;
            for_each_neighbour(i, w, h, true, |j| all &= mask[j]);
            *o = all;
        }
    }
    out
}

/// Pixels of `mask` or with an 8-neighbour in `mask`.
pub(crate) fn dilate(w: usize, h: usize, mask: &[bool]) -> Vec<bool> {
    let mut out = mask.to_vec();
    for (i, o) in out.iter_mut().enumerate() {
        if !mask[i] {
            let mut any = false;
            for_each_neighbour(i, w, h, true, |j| any |= mask[j]);
            *o = any;
        }
    }
    out
}
