//! PNG decoding for ImageDecoder: zlib inflate (RFC 1950/1951: stored,
//! fixed and dynamic Huffman blocks) and the PNG scanline filters, for
//! non-interlaced 8-bit grayscale, grayscale+alpha, RGB, RGBA and palette
//! images. Alpha is dropped (RGB output), as the ONNX reference's
//! `np.array(img)` of an RGB image gives.

use crate::error::{Error, Result};

fn bad(what: &str) -> Error {
    Error::msg(format!("ImageDecoder: PNG: {what}"))
}

/// An LSB-first bit reader over the deflate stream.
struct Bits<'a> {
    b: &'a [u8],
    pos: usize,
    bit: u32,
}

impl Bits<'_> {
    fn get(&mut self, n: u32) -> Result<u32> {
        let mut v = 0;
        for i in 0..n {
            let byte = *self
                .b
                .get(self.pos)
                .ok_or_else(|| bad("truncated deflate stream"))?;
            v |= u32::from((byte >> self.bit) & 1) << i;
            self.bit += 1;
            if self.bit == 8 {
                self.bit = 0;
                self.pos += 1;
            }
        }
        Ok(v)
    }
}

/// A canonical Huffman code: symbols by code length, counts per length.
struct Huffman {
    counts: [u16; 16],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Huffman> {
        let mut counts = [0u16; 16];
        for &l in lengths {
            counts[l as usize] += 1;
        }
        counts[0] = 0;
        let mut offs = [0u16; 16];
        for i in 1..16 {
            offs[i] = offs[i - 1] + counts[i - 1];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (s, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbols[offs[l as usize] as usize] = s as u16;
                offs[l as usize] += 1;
            }
        }
        Ok(Huffman { counts, symbols })
    }

    fn decode(&self, r: &mut Bits) -> Result<u16> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= r.get(1)? as i32;
            let count = i32::from(self.counts[len]);
            if code - count < first {
                return self
                    .symbols
                    .get((index + (code - first)) as usize)
                    .copied()
                    .ok_or_else(|| bad("bad Huffman code"));
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        Err(bad("bad Huffman code"))
    }
}

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Inflates a zlib stream, refusing output beyond `limit` bytes.
fn inflate(z: &[u8], limit: usize) -> Result<Vec<u8>> {
    if z.len() < 2 || z[0] & 0x0f != 8 || (u16::from(z[0]) << 8 | u16::from(z[1])) % 31 != 0 {
        return Err(bad("not a zlib stream"));
    }
    let mut r = Bits {
        b: &z[2..],
        pos: 0,
        bit: 0,
    };
    let mut out: Vec<u8> = Vec::new();
    loop {
        let last = r.get(1)?;
        match r.get(2)? {
            0 => {
                if r.bit != 0 {
                    r.bit = 0;
                    r.pos += 1;
                }
                let hdr =
                    r.b.get(r.pos..r.pos + 4)
                        .ok_or_else(|| bad("truncated stored block"))?;
                let n = usize::from(u16::from_le_bytes([hdr[0], hdr[1]]));
                let data =
                    r.b.get(r.pos + 4..r.pos + 4 + n)
                        .ok_or_else(|| bad("truncated stored block"))?;
                out.extend_from_slice(data);
                r.pos += 4 + n;
            }
            t @ (1 | 2) => {
                let (lit, dist) = if t == 1 {
                    let mut l = [8u8; 288];
                    l[144..256].fill(9);
                    l[256..280].fill(7);
                    (Huffman::new(&l)?, Huffman::new(&[5u8; 30])?)
                } else {
                    let hlit = r.get(5)? as usize + 257;
                    let hdist = r.get(5)? as usize + 1;
                    let hclen = r.get(4)? as usize + 4;
                    const ORDER: [usize; 19] = [
                        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
                    ];
                    let mut cl = [0u8; 19];
                    for &o in &ORDER[..hclen] {
                        cl[o] = r.get(3)? as u8;
                    }
                    let clh = Huffman::new(&cl)?;
                    let mut lens = Vec::with_capacity(hlit + hdist);
                    while lens.len() < hlit + hdist {
                        let sym = clh.decode(&mut r)?;
                        let (v, n) = match sym {
                            0..=15 => (sym as u8, 1),
                            16 => (
                                *lens.last().ok_or_else(|| bad("repeat with no length"))?,
                                3 + r.get(2)?,
                            ),
                            17 => (0, 3 + r.get(3)?),
                            _ => (0, 11 + r.get(7)?),
                        };
                        lens.extend(std::iter::repeat_n(v, n as usize));
                    }
                    if lens.len() != hlit + hdist {
                        return Err(bad("code lengths overrun"));
                    }
                    (Huffman::new(&lens[..hlit])?, Huffman::new(&lens[hlit..])?)
                };
                loop {
                    let sym = lit.decode(&mut r)? as usize;
                    if sym < 256 {
                        out.push(sym as u8);
                    } else if sym == 256 {
                        break;
                    } else {
                        let i = sym - 257;
                        if i >= 29 {
                            return Err(bad("bad length code"));
                        }
                        let len = LEN_BASE[i] as usize + r.get(u32::from(LEN_EXTRA[i]))? as usize;
                        let d = dist.decode(&mut r)? as usize;
                        if d >= 30 {
                            return Err(bad("bad distance code"));
                        }
                        let back =
                            DIST_BASE[d] as usize + r.get(u32::from(DIST_EXTRA[d]))? as usize;
                        if back > out.len() {
                            return Err(bad("distance before the start"));
                        }
                        let start = out.len() - back;
                        for k in 0..len {
                            out.push(out[start + k]);
                        }
                    }
                    if out.len() > limit {
                        return Err(bad("more data than the image holds"));
                    }
                }
            }
            _ => return Err(bad("bad block type")),
        }
        if last == 1 {
            return Ok(out);
        }
    }
}

fn be32(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad("truncated chunk"))
}

/// Decodes a PNG: height, width, channels (1 or 3) and the pixels.
pub(super) fn decode(b: &[u8]) -> Result<(usize, usize, usize, Vec<u8>)> {
    let (mut at, mut idat, mut hdr, mut palette) = (8usize, Vec::new(), None, Vec::new());
    while at + 8 <= b.len() {
        let n = be32(b, at)? as usize;
        let kind = &b[at + 4..at + 8];
        let body = b
            .get(at + 8..at + 8 + n)
            .ok_or_else(|| bad("truncated chunk"))?;
        match kind {
            b"IHDR" if n >= 13 => {
                hdr = Some((
                    be32(body, 0)? as usize,
                    be32(body, 4)? as usize,
                    body[8],
                    body[9],
                    body[12],
                ))
            }
            b"PLTE" => palette = body.to_vec(),
            b"IDAT" => idat.extend_from_slice(body),
            b"IEND" => break,
            _ => {}
        }
        at += 12 + n;
    }
    let (w, h, depth, color, interlace) = hdr.ok_or_else(|| bad("no IHDR"))?;
    let spp = match color {
        0 => 1,
        2 => 3,
        3 => 1,
        4 => 2,
        6 => 4,
        _ => return Err(bad("bad colour type")),
    };
    if depth != 8 || interlace != 0 {
        return Err(bad("only non-interlaced 8-bit images are supported"));
    }
    let stride = w
        .checked_mul(spp)
        .filter(|&s| s > 0 && s <= 1 << 26)
        .ok_or_else(|| bad("bad width"))?;
    let size = (stride + 1)
        .checked_mul(h)
        .filter(|&s| s <= 1 << 28)
        .ok_or_else(|| bad("image too large"))?;
    let raw = inflate(&idat, size)?;
    if raw.len() < size {
        return Err(bad("too little image data"));
    }
    let mut px = vec![0u8; stride * h];
    for y in 0..h {
        let (filter, line) = (
            raw[y * (stride + 1)],
            &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)],
        );
        for x in 0..stride {
            let a = if x >= spp {
                px[y * stride + x - spp]
            } else {
                0
            };
            let up = if y > 0 { px[(y - 1) * stride + x] } else { 0 };
            let c = if x >= spp && y > 0 {
                px[(y - 1) * stride + x - spp]
            } else {
                0
            };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => up,
                3 => ((u16::from(a) + u16::from(up)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(up) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(up)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        up
                    } else {
                        c
                    }
                }
                _ => return Err(bad("bad filter type")),
            };
            px[y * stride + x] = line[x].wrapping_add(pred);
        }
    }
    Ok(match color {
        0 => (h, w, 1, px),
        4 => (h, w, 1, px.chunks(2).map(|p| p[0]).collect()),
        2 => (h, w, 3, px),
        6 => (
            h,
            w,
            3,
            px.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        ),
        _ => {
            let mut rgb = Vec::with_capacity(w * h * 3);
            for &i in &px {
                let e = palette
                    .get(3 * i as usize..3 * i as usize + 3)
                    .ok_or_else(|| bad("palette index out of range"))?;
                rgb.extend_from_slice(e);
            }
            (h, w, 3, rgb)
        }
    })
}
