//! ImageDecoder (opset 20): encoded image bytes (u8 `[n]`) to an `[H, W,
//! C]` u8 tensor in RGB, BGR or grayscale order. Decoded here without an
//! image library: BMP (uncompressed 24- and 32-bit), binary PNM (P5, P6;
//! maxval 255), baseline TIFF (uncompressed 8-bit strips, RGB or
//! grayscale) and 8-bit non-interlaced PNG (`png.rs`). Other formats
//! (JPEG, JPEG 2000, WebP) are refused with
//! a clear error. Grayscale from colour uses the ITU-R 601 luma weights
//! with PIL's fixed-point rounding, as the ONNX reference does.

use super::PixelFormat;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernels::util::input;
use crate::tensor::Tensor;

/// A decoded image: height, width, channels (1 or 3) and row-major bytes.
struct Image {
    h: usize,
    w: usize,
    c: usize,
    px: Vec<u8>,
}

fn bad(what: &str) -> Error {
    Error::msg(format!("ImageDecoder: {what}"))
}

fn le16(b: &[u8], at: usize) -> Result<u16> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| bad("truncated header"))
}

fn le32(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad("truncated header"))
}

/// Width times height times channels, refusing absurd sizes.
fn pixels(w: usize, h: usize, c: usize) -> Result<usize> {
    w.checked_mul(h)
        .and_then(|n| n.checked_mul(c))
        .filter(|&n| n <= 1 << 28)
        .ok_or_else(|| bad("image too large"))
}

fn bmp(b: &[u8]) -> Result<Image> {
    let data = le32(b, 10)? as usize;
    let w = le32(b, 18)? as i32;
    let h = le32(b, 22)? as i32;
    let bpp = le16(b, 28)?;
    let compression = le32(b, 30)?;
    if w <= 0 || h == 0 || !(bpp == 24 || bpp == 32) || compression != 0 {
        return Err(bad(&format!(
            "BMP of {bpp} bits, compression {compression}, {w}x{h} is unsupported (uncompressed 24/32-bit only)"
        )));
    }
    let (w, bottom_up, h) = (w as usize, h > 0, h.unsigned_abs() as usize);
    let step = bpp as usize / 8;
    let stride = (w * step).div_ceil(4) * 4;
    let mut px = vec![0u8; pixels(w, h, 3)?];
    for y in 0..h {
        let row = if bottom_up { h - 1 - y } else { y };
        let src = b
            .get(data + row * stride..data + row * stride + w * step)
            .ok_or_else(|| bad("BMP pixel data is truncated"))?;
        for x in 0..w {
            let p = &src[x * step..];
            px[(y * w + x) * 3..][..3].copy_from_slice(&[p[2], p[1], p[0]]);
        }
    }
    Ok(Image { h, w, c: 3, px })
}

fn pnm(b: &[u8]) -> Result<Image> {
    let c = match &b[..2] {
        b"P5" => 1,
        b"P6" => 3,
        _ => return Err(bad("only binary PNM (P5, P6) is supported")),
    };
    // Three numbers (width, height, maxval) after the magic, with comments.
    let mut at = 2;
    let mut nums = [0usize; 3];
    for n in &mut nums {
        loop {
            match b.get(at) {
                Some(b'#') => {
                    while b.get(at).is_some_and(|&ch| ch != b'\n') {
                        at += 1;
                    }
                }
                Some(ch) if ch.is_ascii_whitespace() => at += 1,
                Some(_) => break,
                None => return Err(bad("truncated PNM header")),
            }
        }
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        *n = std::str::from_utf8(&b[start..at])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad PNM header"))?;
    }
    let [w, h, maxval] = nums;
    if maxval != 255 {
        return Err(bad(&format!(
            "PNM maxval {maxval} is unsupported (255 only)"
        )));
    }
    at += 1; // the one whitespace before the raster
    let n = pixels(w, h, c)?;
    let px = b
        .get(at..at + n)
        .ok_or_else(|| bad("PNM pixel data is truncated"))?
        .to_vec();
    Ok(Image { h, w, c, px })
}

fn tiff(b: &[u8]) -> Result<Image> {
    let big = match &b[..4] {
        b"II*\0" => false,
        b"MM\0*" => true,
        _ => return Err(bad("not a TIFF")),
    };
    let u16_at = |at: usize| -> Result<u32> {
        let s = b.get(at..at + 2).ok_or_else(|| bad("truncated TIFF"))?;
        Ok(u32::from(if big {
            u16::from_be_bytes([s[0], s[1]])
        } else {
            u16::from_le_bytes([s[0], s[1]])
        }))
    };
    let u32_at = |at: usize| -> Result<u32> {
        let s = b.get(at..at + 4).ok_or_else(|| bad("truncated TIFF"))?;
        let a = [s[0], s[1], s[2], s[3]];
        Ok(if big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = u16_at(ifd)? as usize;
    // Each tag's values (SHORT or LONG), read inline or from the offset.
    let mut tags: Vec<(u32, Vec<u32>)> = Vec::with_capacity(count);
    for i in 0..count {
        let e = ifd + 2 + 12 * i;
        let (tag, typ, n) = (u16_at(e)?, u16_at(e + 2)?, u32_at(e + 4)? as usize);
        let size = match typ {
            3 => 2,
            4 => 4,
            _ => continue,
        };
        if n > 1 << 20 {
            return Err(bad("TIFF tag too long"));
        }
        let base = if size * n <= 4 {
            e + 8
        } else {
            u32_at(e + 8)? as usize
        };
        let vals = (0..n)
            .map(|k| {
                if size == 2 {
                    u16_at(base + 2 * k)
                } else {
                    u32_at(base + 4 * k)
                }
            })
            .collect::<Result<Vec<u32>>>()?;
        tags.push((tag, vals));
    }
    let get = |t: u32| tags.iter().find(|(k, _)| *k == t).map(|(_, v)| v.clone());
    let one = |t: u32, d: u32| get(t).and_then(|v| v.first().copied()).unwrap_or(d);
    let (w, h) = (one(256, 0) as usize, one(257, 0) as usize);
    let spp = one(277, 1) as usize;
    let bits = get(258).unwrap_or(vec![1]);
    if one(259, 1) != 1
        || one(284, 1) != 1
        || bits.iter().any(|&b| b != 8)
        || !(spp == 1 || spp == 3)
    {
        return Err(bad(
            "only uncompressed 8-bit chunky TIFF (grayscale or RGB) is supported",
        ));
    }
    let offsets = get(273).ok_or_else(|| bad("TIFF without strips"))?;
    let counts = get(279).ok_or_else(|| bad("TIFF without strip sizes"))?;
    let mut px = Vec::with_capacity(pixels(w, h, spp)?);
    for (&o, &n) in offsets.iter().zip(&counts) {
        let s = b
            .get(o as usize..o as usize + n as usize)
            .ok_or_else(|| bad("TIFF strip is truncated"))?;
        px.extend_from_slice(s);
    }
    px.truncate(w * h * spp);
    if px.len() != w * h * spp {
        return Err(bad("TIFF strips hold too few pixels"));
    }
    Ok(Image { h, w, c: spp, px })
}

/// ImageDecoder: input 0 the encoded bytes; output `[H, W, 3]` (RGB,
/// BGR) or `[H, W, 1]` (grayscale) u8.
pub(crate) fn image_decoder(format: PixelFormat, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let t = input(inputs, 0, "encoded_stream")?;
    if t.dtype() != DType::U8 || t.rank() != 1 {
        crate::bail!(
            "ImageDecoder: encoded_stream must be 1-D u8, got {} {:?}",
            t.dtype(),
            t.shape()
        );
    }
    let b = t.as_slice::<u8>()?;
    if b.len() < 8 {
        return Err(bad("the stream is too short for an image"));
    }
    let img = if b.starts_with(b"BM") {
        bmp(b)?
    } else if b[0] == b'P' && matches!(b[1], b'5' | b'6') {
        pnm(b)?
    } else if b.starts_with(b"II*\0") || b.starts_with(b"MM\0*") {
        tiff(b)?
    } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        let (h, w, c, px) = super::png::decode(b)?;
        Image { h, w, c, px }
    } else {
        return Err(bad("unsupported image format (BMP, binary PNM, uncompressed TIFF and 8-bit PNG are decoded)"));
    };
    let Image { h, w, c, px } = img;
    let (out_c, out): (usize, Vec<u8>) = match (format, c) {
        (PixelFormat::Rgb, 3) => (3, px),
        (PixelFormat::Bgr, 3) => (3, px.chunks(3).flat_map(|p| [p[2], p[1], p[0]]).collect()),
        (PixelFormat::Grayscale, 3) => (
            1,
            px.chunks(3)
                .map(|p| {
                    let l =
                        u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471;
                    ((l + 0x8000) >> 16) as u8
                })
                .collect(),
        ),
        (PixelFormat::Grayscale, _) => (1, px),
        (_, _) => (3, px.iter().flat_map(|&v| [v, v, v]).collect()),
    };
    Tensor::from_vec(vec![h, w, out_c], out)
}
