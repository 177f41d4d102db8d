//! The narrow number formats of ONNX: the 8-bit floats (E4M3FN, E4M3FNUZ,
//! E5M2, E5M2FNUZ and the scale format E8M0), the 4-bit float E2M1, and
//! the 4- and 2-bit integers.
//!
//! In memory every element takes one byte (a float's bit pattern, an
//! integer's value), so kernels index them like any other element type
//! and go through f64 for arithmetic ([`Element`]). The packing of the
//! sub-byte types, two or four elements to a byte with the first in the
//! low bits, exists only in ONNX TensorProtos (`onnx/tensor.rs`:
//! [`pack`], [`unpack`]).
//!
//! Conversions follow the ONNX reference (onnx 1.23 with ml_dtypes):
//! floats round to nearest, ties to even. The default (`saturate = 1`)
//! clamps out-of-range values and infinities to the largest finite value;
//! without saturation they become NaN, or infinity for E5M2. E2M1 has no
//! special values and always saturates. The FNUZ formats have no negative
//! zero. Integers truncate toward zero, and a value outside the type's
//! range becomes 0, as the reference's conversion does (QuantizeLinear
//! clamps before it converts, so it never meets that rule).
//!
//! Why not the `float8` crate: it has E4M3 and E5M2 with saturating
//! conversion only, while ONNX also needs the FNUZ variants, E8M0, E2M1
//! and the non-saturating cast. One codec parametrised by the format
//! (exponent and mantissa widths, bias, use of special patterns) covers
//! every minifloat here and is tested over all bit patterns below.

use crate::dtype::{DType, Element};
use std::cmp::Ordering;
use std::fmt;

/// How a minifloat spends its special bit patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    /// IEEE-like: exponent all ones is infinity (mantissa 0) or NaN.
    Ieee,
    /// No infinity; exponent and mantissa all ones is NaN.
    Fn,
    /// No infinity and no negative zero; its pattern is the one NaN.
    Fnuz,
    /// Every pattern is a finite number.
    Finite,
}

/// A small binary floating-point format with a sign bit.
#[derive(Clone, Copy, Debug)]
struct Minifloat {
    exp: u32,
    man: u32,
    bias: i32,
    special: Special,
}

const E4M3FN: Minifloat = Minifloat {
    exp: 4,
    man: 3,
    bias: 7,
    special: Special::Fn,
};
const E4M3FNUZ: Minifloat = Minifloat {
    exp: 4,
    man: 3,
    bias: 8,
    special: Special::Fnuz,
};
const E5M2: Minifloat = Minifloat {
    exp: 5,
    man: 2,
    bias: 15,
    special: Special::Ieee,
};
const E5M2FNUZ: Minifloat = Minifloat {
    exp: 5,
    man: 2,
    bias: 16,
    special: Special::Fnuz,
};
const E2M1: Minifloat = Minifloat {
    exp: 2,
    man: 1,
    bias: 1,
    special: Special::Finite,
};

/// The unbiased exponent of a positive finite f64 (f64 subnormals, far
/// below every format here, report the smallest).
fn exponent_of(a: f64) -> i32 {
    ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023
}

impl Minifloat {
    fn sign_bit(self) -> u32 {
        1 << (self.exp + self.man)
    }
    fn nan(self, neg: bool) -> u8 {
        let sign = if neg { self.sign_bit() } else { 0 };
        (match self.special {
            Special::Ieee | Special::Fn => sign | (self.sign_bit() - 1),
            Special::Fnuz => self.sign_bit(),
            // The reference gives negative zero for NaN.
            Special::Finite => self.sign_bit(),
        }) as u8
    }
    fn inf(self, neg: bool) -> u8 {
        let sign = if neg { self.sign_bit() } else { 0 };
        (sign | (((1 << self.exp) - 1) << self.man)) as u8
    }
    /// The pattern of the largest finite value.
    fn max_code(self) -> u32 {
        match self.special {
            Special::Ieee => (((1 << self.exp) - 2) << self.man) | ((1 << self.man) - 1),
            Special::Fn => self.sign_bit() - 2,
            Special::Fnuz | Special::Finite => self.sign_bit() - 1,
        }
    }

    fn decode(self, b: u8) -> f64 {
        let bits = b as u32 & ((self.sign_bit() << 1) - 1);
        let mag = bits & (self.sign_bit() - 1);
        let neg = bits & self.sign_bit() != 0;
        let (e, m) = (mag >> self.man, mag & ((1 << self.man) - 1));
        match self.special {
            Special::Fnuz if bits == self.sign_bit() => return f64::NAN,
            Special::Fn if mag == self.sign_bit() - 1 => return f64::NAN,
            Special::Ieee if e == (1 << self.exp) - 1 => {
                return match (m, neg) {
                    (0, false) => f64::INFINITY,
                    (0, true) => f64::NEG_INFINITY,
                    _ => f64::NAN,
                }
            }
            _ => {}
        }
        let v = if e == 0 {
            m as f64 * 2f64.powi(1 - self.bias - self.man as i32)
        } else {
            (1.0 + m as f64 / (1u32 << self.man) as f64) * 2f64.powi(e as i32 - self.bias)
        };
        if neg {
            -v
        } else {
            v
        }
    }

    fn encode(self, x: f64, saturate: bool) -> u8 {
        let neg = x.is_sign_negative();
        let sign = if neg { self.sign_bit() } else { 0 };
        if x.is_nan() {
            return self.nan(neg);
        }
        let saturate = saturate || self.special == Special::Finite;
        let max = self.decode(self.max_code() as u8);
        let overflow = || {
            if saturate {
                (sign | self.max_code()) as u8
            } else if self.special == Special::Ieee {
                self.inf(neg)
            } else {
                self.nan(neg)
            }
        };
        let mut a = x.abs();
        if a.is_infinite() {
            return overflow();
        }
        if saturate && a > max {
            a = max;
        }
        // Round to the format's spacing at a's binade (the subnormal
        // spacing below the smallest normal exponent).
        let emin = 1 - self.bias;
        let e = if a == 0.0 {
            emin
        } else {
            exponent_of(a).max(emin)
        };
        let q = 2f64.powi(e - self.man as i32);
        let v = (a / q).round_ties_even() * q;
        if v > max {
            return overflow();
        }
        if v == 0.0 {
            return if self.special == Special::Fnuz {
                0
            } else {
                sign as u8
            };
        }
        let ev = exponent_of(v);
        let code = if ev < emin {
            (v / 2f64.powi(emin - self.man as i32)) as u32
        } else {
            (((ev + self.bias) as u32) << self.man)
                | ((v / 2f64.powi(ev - self.man as i32)) as u32 - (1 << self.man))
        };
        (sign | code) as u8
    }
}

/// How a cast to E8M0 rounds a value between two powers of two (the
/// Cast attribute `round_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RoundMode {
    /// Toward the larger power (the default).
    #[default]
    Up,
    /// Toward the smaller power.
    Down,
    /// To the nearer power, as the ONNX reference decides it.
    Nearest,
}

impl RoundMode {
    /// Parses the attribute value.
    pub fn parse(s: &str) -> Option<RoundMode> {
        Some(match s {
            "up" => RoundMode::Up,
            "down" => RoundMode::Down,
            "nearest" => RoundMode::Nearest,
            _ => return None,
        })
    }
}

/// E8M0 (a power of two `2^(b - 127)`, 0xFF = NaN) from a value narrowed
/// to f32 first, as the reference does: the f32 exponent, moved up by one
/// when `round` says so; with `saturate` the largest power does not
/// overflow into NaN.
fn e8m0_encode(x: f64, saturate: bool, round: RoundMode) -> u8 {
    let bits = (x as f32).to_bits();
    let exp = (bits >> 23) & 0xff;
    if exp == 0xff {
        return 0xff;
    }
    let up = match round {
        RoundMode::Up => bits & 0x7f_ffff != 0,
        RoundMode::Down => false,
        RoundMode::Nearest => {
            let g = bits & 0x40_0000 != 0;
            let r = bits & 0x20_0000 != 0;
            let s = bits & 0x1f_ffff != 0;
            g && (r || s || exp > 0)
        }
    };
    let up = up && !(saturate && exp == 0xfe);
    (exp + up as u32) as u8
}

fn e8m0_decode(b: u8) -> f64 {
    if b == 0xff {
        f64::NAN
    } else {
        2f64.powi(b as i32 - 127)
    }
}

macro_rules! minifloat_type {
    ($(#[$doc:meta])* $t:ident, $fmt:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        #[repr(transparent)]
        pub struct $t(pub u8);

        impl Element for $t {
            const DTYPE: DType = DType::$t;
            fn to_f64(self) -> f64 {
                $fmt.decode(self.0)
            }
            fn from_f64(v: f64) -> Self {
                $t($fmt.encode(v, true))
            }
        }
    };
}

minifloat_type!(
    /// float8 E4M3FN: bias 7, no infinity, NaN 0x7F/0xFF, largest 448.
    F8E4M3FN,
    E4M3FN
);
minifloat_type!(
    /// float8 E4M3FNUZ: bias 8, NaN 0x80, no negative zero, largest 240.
    F8E4M3FNUZ,
    E4M3FNUZ
);
minifloat_type!(
    /// float8 E5M2: bias 15, IEEE infinities and NaNs, largest 57344.
    F8E5M2,
    E5M2
);
minifloat_type!(
    /// float8 E5M2FNUZ: bias 16, NaN 0x80, no negative zero, largest 57344.
    F8E5M2FNUZ,
    E5M2FNUZ
);
minifloat_type!(
    /// float4 E2M1 (one element a byte, low 4 bits): bias 1, no special
    /// values, largest 6.
    F4E2M1,
    E2M1
);

/// float8 E8M0: an unsigned power of two `2^(b - 127)`, 0xFF = NaN.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct F8E8M0(pub u8);

impl Element for F8E8M0 {
    const DTYPE: DType = DType::F8E8M0;
    fn to_f64(self) -> f64 {
        e8m0_decode(self.0)
    }
    fn from_f64(v: f64) -> Self {
        F8E8M0(e8m0_encode(v, true, RoundMode::Up))
    }
}

macro_rules! small_int_type {
    ($(#[$doc:meta])* $t:ident, $repr:ty, $lo:expr, $hi:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        #[repr(transparent)]
        pub struct $t(pub $repr);

        impl $t {
            /// The smallest value.
            pub const MIN: $repr = $lo;
            /// The largest value.
            pub const MAX: $repr = $hi;
        }

        impl Element for $t {
            const DTYPE: DType = DType::$t;
            fn to_f64(self) -> f64 {
                self.0 as f64
            }
            fn from_f64(v: f64) -> Self {
                let t = v.trunc();
                if t.is_nan() || t < $lo as f64 || t > $hi as f64 {
                    $t(0)
                } else {
                    $t(t as $repr)
                }
            }
        }
    };
}

small_int_type!(
    /// A signed 4-bit integer, -8..=7.
    I4,
    i8,
    -8,
    7
);
small_int_type!(
    /// An unsigned 4-bit integer, 0..=15.
    U4,
    u8,
    0,
    15
);
small_int_type!(
    /// A signed 2-bit integer, -2..=1.
    I2,
    i8,
    -2,
    1
);
small_int_type!(
    /// An unsigned 2-bit integer, 0..=3.
    U2,
    u8,
    0,
    3
);

macro_rules! float_traits {
    ($($t:ident),*) => {$(
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                self.to_f64().partial_cmp(&other.to_f64())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.to_f64())
            }
        }
    )*};
}
float_traits!(F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F4E2M1, F8E8M0);

/// Narrows `x` to the float format `dt` with explicit `saturate` and
/// (for E8M0) `round`, the Cast attributes; `None` when `dt` is not one
/// of the narrow float formats. The byte is the element's bit pattern.
pub fn encode_float(dt: DType, x: f64, saturate: bool, round: RoundMode) -> Option<u8> {
    Some(match dt {
        DType::F8E4M3FN => E4M3FN.encode(x, saturate),
        DType::F8E4M3FNUZ => E4M3FNUZ.encode(x, saturate),
        DType::F8E5M2 => E5M2.encode(x, saturate),
        DType::F8E5M2FNUZ => E5M2FNUZ.encode(x, saturate),
        DType::F4E2M1 => E2M1.encode(x, saturate),
        DType::F8E8M0 => e8m0_encode(x, saturate, round),
        _ => return None,
    })
}

/// Bits an element of `dt` takes in an ONNX TensorProto when it is packed
/// (4 or 2); `None` for the types stored a byte or more each.
pub fn packed_bits(dt: DType) -> Option<usize> {
    match dt {
        DType::I4 | DType::U4 | DType::F4E2M1 => Some(4),
        DType::I2 | DType::U2 => Some(2),
        _ => None,
    }
}

/// Packs one-byte elements `bits` wide (4 or 2) into bytes, the first
/// element in the low bits; the last byte is padded with zeros.
pub fn pack(bytes: &[u8], bits: usize) -> Vec<u8> {
    let per = 8 / bits;
    let mask = (1u16 << bits) - 1;
    bytes
        .chunks(per)
        .map(|c| {
            c.iter().enumerate().fold(0u8, |acc, (i, &b)| {
                acc | (((b as u16 & mask) << (i * bits)) as u8)
            })
        })
        .collect()
}

/// Unpacks `n` elements `bits` wide from `packed`, one byte each; signed
/// types are sign-extended. `None` when `packed` is too short.
pub fn unpack(packed: &[u8], n: usize, bits: usize, signed: bool) -> Option<Vec<u8>> {
    let per = 8 / bits;
    if packed.len() < n.div_ceil(per) {
        return None;
    }
    let mask = (1u8 << bits) - 1;
    Some(
        (0..n)
            .map(|i| {
                let v = (packed[i / per] >> ((i % per) * bits)) & mask;
                if signed && v & (1 << (bits - 1)) != 0 {
                    v | !mask
                } else {
                    v
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: [(Minifloat, f64); 5] = [
        (E4M3FN, 448.0),
        (E4M3FNUZ, 240.0),
        (E5M2, 57344.0),
        (E5M2FNUZ, 57344.0),
        (E2M1, 6.0),
    ];

    #[test]
    fn largest_values() {
        for (f, max) in FORMATS {
            assert_eq!(f.decode(f.max_code() as u8), max, "{f:?}");
        }
    }

    /// Every pattern that is a number decodes and encodes back to itself
    /// (both zeros of the formats that have them), with and without
    /// saturation.
    #[test]
    fn every_pattern_round_trips() {
        for (f, _) in FORMATS {
            let n = 1u32 << (f.exp + f.man + 1);
            for b in 0..n {
                let v = f.decode(b as u8);
                if v.is_nan() {
                    assert!(f.decode(f.encode(v, true)).is_nan());
                    continue;
                }
                if v.is_infinite() {
                    continue;
                }
                assert_eq!(f.encode(v, true) as u32, b, "{f:?} {b:#x} = {v}");
                assert_eq!(f.encode(v, false) as u32, b, "{f:?} {b:#x} = {v}");
            }
        }
    }

    /// Worked values: ties to even, saturation and overflow.
    #[test]
    fn rounding_and_overflow() {
        let e = |f: Minifloat, x: f64, s: bool| f.decode(f.encode(x, s));
        // 464 is halfway between 448 (mantissa 110) and 480: even wins.
        assert_eq!(e(E4M3FN, 464.0, false), 448.0);
        assert!(e(E4M3FN, 470.0, false).is_nan());
        assert_eq!(e(E4M3FN, 470.0, true), 448.0);
        assert_eq!(e(E4M3FN, f64::NEG_INFINITY, true), -448.0);
        assert!(e(E4M3FN, f64::INFINITY, false).is_nan());
        assert_eq!(e(E5M2, 1e6, false), f64::INFINITY);
        assert_eq!(e(E5M2, 1e6, true), 57344.0);
        assert_eq!(E4M3FNUZ.encode(-0.0, true), 0);
        assert_eq!(E4M3FN.encode(-0.0, true), 0x80);
        // Smallest subnormal of E4M3FN is 2^-9; half of it ties to 0.
        assert_eq!(e(E4M3FN, 2f64.powi(-9), true), 2f64.powi(-9));
        assert_eq!(e(E4M3FN, 2f64.powi(-10), true), 0.0);
        assert_eq!(e(E4M3FN, 1.5 * 2f64.powi(-10), true), 2f64.powi(-9));
        // E2M1: 0.25 ties to 0, 2.5 to 2, 5 to 4, beyond 6 saturates.
        assert_eq!(e(E2M1, 0.25, false), 0.0);
        assert_eq!(e(E2M1, 2.5, false), 2.0);
        assert_eq!(e(E2M1, 5.0, false), 4.0);
        assert_eq!(e(E2M1, 1e6, false), 6.0);
        assert_eq!(e(E2M1, -8.0, false), -6.0);
    }

    #[test]
    fn e8m0() {
        assert_eq!(e8m0_decode(e8m0_encode(1.1, true, RoundMode::Up)), 2.0);
        assert_eq!(e8m0_decode(e8m0_encode(1.1, true, RoundMode::Down)), 1.0);
        assert_eq!(e8m0_decode(e8m0_encode(0.25, true, RoundMode::Up)), 0.25);
        assert_eq!(
            e8m0_decode(e8m0_encode(1.75, true, RoundMode::Nearest)),
            2.0
        );
        assert_eq!(e8m0_encode(f64::NAN, true, RoundMode::Up), 0xff);
        assert_eq!(e8m0_encode(f32::MAX as f64, true, RoundMode::Up), 0xfe);
        assert_eq!(e8m0_encode(f32::MAX as f64, false, RoundMode::Up), 0xff);
    }

    #[test]
    fn small_ints() {
        assert_eq!(I4::from_f64(-8.9), I4(-8));
        assert_eq!(I4::from_f64(7.5), I4(7));
        assert_eq!(I4::from_f64(8.0), I4(0));
        assert_eq!(U4::from_f64(-1.0), U4(0));
        assert_eq!(U2::from_f64(3.0), U2(3));
        assert_eq!(I2::from_f64(f64::NAN), I2(0));
    }

    #[test]
    fn packing() {
        let v = [1u8, 0xf, 2, 0xe, 7];
        let p = pack(&v, 4);
        assert_eq!(p, vec![0xf1, 0xe2, 0x07]);
        assert_eq!(unpack(&p, 5, 4, false).unwrap(), v);
        assert_eq!(unpack(&p, 5, 4, true).unwrap(), vec![1, 0xff, 2, 0xfe, 7]);
        let p = pack(&[1, 2, 3, 0, 1], 2);
        assert_eq!(p, vec![0b0011_1001, 0b01]);
        assert_eq!(unpack(&p, 5, 2, false).unwrap(), vec![1, 2, 3, 0, 1]);
        assert!(unpack(&p, 9, 2, false).is_none());
    }
}
