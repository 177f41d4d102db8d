//! What the two Winograd F(4x4, 3x3) paths share (`winograd.rs`, four
//! passes over the whole map; `winofused.rs`, one row of tiles at a
//! time): the tile sizes, the plan of one conv, the epilogue's operands
//! and the input and output transforms on 16-lane vectors.

use super::geom::Geom;
use crate::op::Activation;

/// Lanes: channels (or filters) per vector.
pub(super) const L: usize = 16;

/// Outputs per tile side.
pub(super) const TO: usize = 4;

/// Input values per tile side.
pub(super) const TI: usize = 6;

/// Positions of the 6x6 transform.
pub(super) const XI: usize = TI * TI;

pub(super) type Lanes = [f32; L];

/// Sizes of one Winograd conv.
pub(super) struct Plan {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) m: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) pt: usize,
    pub(super) pl: usize,
    pub(super) th: usize,
    pub(super) tw: usize,
    pub(super) hp: usize,
    pub(super) wp: usize,
    pub(super) cb: usize,
    pub(super) mb: usize,
    pub(super) tiles: usize,
}

impl Plan {
    pub(super) fn new(g: &Geom) -> Plan {
        let (oh, ow) = (g.win.output[0], g.win.output[1]);
        let (th, tw) = (oh.div_ceil(TO), ow.div_ceil(TO));
        Plan {
            n: g.n,
            c: g.c,
            m: g.m,
            h: g.spatial[0],
            w: g.spatial[1],
            oh,
            ow,
            pt: g.win.pads_begin[0],
            pl: g.win.pads_begin[1],
            th,
            tw,
            // Every tile's 6x6 window lies inside; the input (placed at
            // (pt, pl)) fits since oh = h + pads - 2 <= hp - 2.
            hp: TO * th + 2,
            wp: TO * tw + 2,
            cb: g.c.div_ceil(L),
            mb: g.m.div_ceil(L),
            tiles: g.n * th * tw,
        }
    }
    pub(super) fn cp(&self) -> usize {
        self.cb * L
    }
    pub(super) fn mp(&self) -> usize {
        self.mb * L
    }
}

/// Bias, fused residual and activation of the output pass.
pub(super) struct Epi<'a> {
    pub(super) b: Option<&'a [f32]>,
    pub(super) res: Option<&'a [f32]>,
    pub(super) act: Activation,
}

/// `Bᵀ d` on six lane vectors (one column or row of a 6x6 block).
#[inline(always)]
pub(super) fn bt6(d: [&Lanes; 6]) -> [Lanes; 6] {
    let mut o = [[0.0; L]; 6];
    for l in 0..L {
        let (d0, d1, d2, d3, d4, d5) = (d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]);
        o[0][l] = 4.0 * d0 - 5.0 * d2 + d4;
        o[1][l] = -4.0 * (d1 + d2) + d3 + d4;
        o[2][l] = 4.0 * (d1 - d2) - d3 + d4;
        o[3][l] = 2.0 * (d3 - d1) - d2 + d4;
        o[4][l] = 2.0 * (d1 - d3) - d2 + d4;
        o[5][l] = 4.0 * d1 - 5.0 * d3 + d5;
    }
    o
}

/// `Aᵀ m` on six lane vectors: four outputs.
#[inline(always)]
pub(super) fn at6(m: [&Lanes; 6]) -> [Lanes; 4] {
    let mut o = [[0.0; L]; 4];
    for l in 0..L {
        let (m0, m1, m2, m3, m4, m5) = (m[0][l], m[1][l], m[2][l], m[3][l], m[4][l], m[5][l]);
        let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        o[0][l] = m0 + s12 + s34;
        o[1][l] = d12 + 2.0 * d34;
        o[2][l] = s12 + 4.0 * s34;
        o[3][l] = d12 + 8.0 * d34 + m5;
    }
    o
}

pub(super) fn lanes(s: &[f32]) -> &Lanes {
    s[..L].try_into().expect("16 lanes")
}

/// `Bᵀ d B` of one tile: `at(r, c)` is the 16 lanes of row `r`, column
/// `c` of its 6x6 input block; `put(ξ, v)` takes position ξ = 6r + c.
/// Columns first (Bᵀ d), then rows ((Bᵀ d) B).
#[inline(always)]
pub(super) fn input_tile<'a>(
    at: impl Fn(usize, usize) -> &'a Lanes,
    mut put: impl FnMut(usize, &Lanes),
) {
    let mut t = [[0.0; L]; XI];
    for c in 0..TI {
        let o = bt6([at(0, c), at(1, c), at(2, c), at(3, c), at(4, c), at(5, c)]);
        for r in 0..TI {
            t[r * TI + c] = o[r];
        }
    }
    for r in 0..TI {
        let q = &t[r * TI..(r + 1) * TI];
        for (c, v) in bt6([&q[0], &q[1], &q[2], &q[3], &q[4], &q[5]])
            .iter()
            .enumerate()
        {
            put(r * TI + c, v);
        }
    }
}

/// `Aᵀ Y A` of one tile: `at(ξ)` is the 16 lanes of Y at position ξ;
/// `put(i, j, v)` takes output row `i`, column `j` of the 4x4. Rows of
/// the 6x6 first (Aᵀ Y: 4x6), then columns (4x4).
#[inline(always)]
pub(super) fn output_tile<'a>(
    at: impl Fn(usize) -> &'a Lanes,
    mut put: impl FnMut(usize, usize, Lanes),
) {
    let mut q = [[0.0; L]; TO * TI];
    for c in 0..TI {
        let s = at6([
            at(c),
            at(TI + c),
            at(2 * TI + c),
            at(3 * TI + c),
            at(4 * TI + c),
            at(5 * TI + c),
        ]);
        for i in 0..TO {
            q[i * TI + c] = s[i];
        }
    }
    for i in 0..TO {
        let r = &q[i * TI..(i + 1) * TI];
        for (j, v) in at6([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]])
            .into_iter()
            .enumerate()
        {
            put(i, j, v);
        }
    }
}
