//! The numbers the CUDA kernels switch on, declared once: element-wise
//! function codes (`hf_unary`, `hf_binary` in `kernels/elementwise.cu`),
//! reduction kinds (`reduce.cu`), run-time element types (`misc.cu`) and
//! Conv's fused activation (`hf_act` in `kernels/common.cuh`).
//!
//! ## Why a leaf, and why a test
//! Every launch file (`ops.rs`, `nn.rs`, `conv.rs`, `data.rs`) reads these
//! codes, and the op table in `dispatch.rs` asks them whether a kernel
//! exists, so they live below all of them and import nothing of the
//! backend. The `.cu` sources keep plain integer `case` labels (NVRTC and
//! `scripts/nvrtc_check.py` compile them as they are); each label carries
//! the name of what it computes, and the unit test below parses the
//! sources and checks that every code declared here lands on the case of
//! that name, and that no case is left without a declaration. Changing a
//! number on one side only fails the test, on any machine, GPU or not.

use hetflow_ops::op::{Activation, BinaryOp, ReduceKind, UnaryOp};
use hetflow_ops::{DType, Op};

/// `hf_unary` code and parameter of an element-wise op (`None`: no kernel).
pub(crate) fn unary_code(op: &Op) -> Option<(i32, f32)> {
    Some(match op {
        Op::Unary(u) => (
            match u {
                UnaryOp::Neg => 0,
                UnaryOp::Abs => 1,
                UnaryOp::Sqrt => 2,
                UnaryOp::Exp => 3,
                UnaryOp::Log => 4,
                UnaryOp::Relu => 5,
                UnaryOp::Sigmoid => 6,
                UnaryOp::Tanh => 7,
                UnaryOp::Erf => 8,
                UnaryOp::Reciprocal => 9,
                UnaryOp::Floor => 10,
                UnaryOp::Ceil => 11,
                UnaryOp::HardSwish => 16,
                // Added to the op set after these kernels; the host has them.
                _ => return None,
            },
            0.0,
        ),
        Op::LeakyRelu { alpha } => (12, *alpha),
        Op::Gelu { tanh: false } => (13, 0.0),
        Op::Gelu { tanh: true } => (14, 0.0),
        _ => return None,
    })
}

/// `hf_unary` code of Clip, whose bounds travel as its two parameters.
pub(crate) const CLIP_CODE: i32 = 15;

/// `hf_binary` code of a broadcasting binary op.
pub(crate) fn binary_code(b: BinaryOp) -> Option<i32> {
    Some(match b {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Pow => 4,
        BinaryOp::Max => 5,
        BinaryOp::Min => 6,
        _ => return None,
    })
}

/// `reduce.cu` kind code of the reductions the GPU runs.
pub(crate) fn reduce_code(kind: ReduceKind) -> Option<i32> {
    Some(match kind {
        ReduceKind::Sum => 0,
        ReduceKind::Mean => 1,
        ReduceKind::Max => 2,
        ReduceKind::Min => 3,
        ReduceKind::SumSquare => 4,
        ReduceKind::L1 => 5,
        ReduceKind::L2 => 6,
        _ => return None,
    })
}

/// Type code of the run-time typed kernels (`misc.cu`: Cast, Equal).
pub(crate) fn type_code(dt: DType) -> Option<i32> {
    Some(match dt {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
        DType::I64 => 3,
        DType::I32 => 4,
        DType::U8 => 5,
        DType::Bool => 6,
        _ => return None,
    })
}

/// `hf_act` code and bounds of a fused activation.
pub(crate) fn act_code(a: Activation) -> (i32, f32, f32) {
    match a {
        Activation::None => (0, 0.0, 0.0),
        Activation::Relu => (1, 0.0, 0.0),
        Activation::Clip { lo, hi } => (2, lo, hi),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const ELEMENTWISE: &str = include_str!("kernels/elementwise.cu");
    const REDUCE: &str = include_str!("kernels/reduce.cu");
    const MISC: &str = include_str!("kernels/misc.cu");
    const COMMON: &str = include_str!("kernels/common.cuh");

    /// `case N: ... // Label` lines of the switch in `func`, up to its
    /// `default:`.
    fn cases(src: &str, func: &str) -> BTreeMap<i32, String> {
        let start = src
            .find(&format!("{func}("))
            .unwrap_or_else(|| panic!("{func} not found"));
        let body = &src[start..];
        let body = &body[..body.find("default:").expect("a default case")];
        let mut out = BTreeMap::new();
        for line in body.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("case ") else {
                continue;
            };
            let code: i32 = rest.split(':').next().unwrap().trim().parse().unwrap();
            let label = line
                .split("//")
                .nth(1)
                .unwrap_or_else(|| panic!("{func}: case {code} has no `// Name` label"))
                .trim()
                .to_string();
            out.insert(code, label);
        }
        assert!(!out.is_empty(), "{func}: no cases");
        out
    }

    /// `N Name` pairs of a comment line that starts with `marker`.
    fn listed(src: &str, marker: &str, until: char) -> BTreeMap<i32, String> {
        let start = src
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} not found"));
        let text = &src[start + marker.len()..];
        let text = &text[..text.find(until).unwrap()];
        let text = text.replace("//", " ").replace(',', " ");
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut out = BTreeMap::new();
        for w in words.windows(2) {
            if let Ok(code) = w[0].parse::<i32>() {
                out.insert(code, w[1].to_string());
            }
        }
        out
    }

    /// Every declared code lands on a case whose label starts with the
    /// op's name, and every case is declared.
    fn agree(what: &str, src: &BTreeMap<i32, String>, declared: &[(i32, String)]) {
        for (code, name) in declared {
            let label = src
                .get(code)
                .unwrap_or_else(|| panic!("{what}: {name} has code {code}, no such case"));
            assert!(
                label.starts_with(name.as_str()),
                "{what}: code {code} is {name} here but `{label}` in the kernel source"
            );
        }
        for (code, label) in src {
            assert!(
                declared.iter().any(|(c, _)| c == code),
                "{what}: case {code} (`{label}`) is declared nowhere in codes.rs"
            );
        }
    }

    #[test]
    fn unary_codes_match_elementwise_cu() {
        use UnaryOp::*;
        let unary = [
            Neg, Abs, Sqrt, Exp, Log, Relu, Sigmoid, Tanh, Erf, Reciprocal, Floor, Ceil, Not, Sin,
            Cos, Tan, Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh, Atanh, Sign, Round, Softplus,
            Softsign, Mish, HardSwish, BitwiseNot,
        ];
        let mut ops: Vec<Op> = unary.into_iter().map(Op::Unary).collect();
        ops.push(Op::LeakyRelu { alpha: 0.1 });
        ops.push(Op::Gelu { tanh: false });
        ops.push(Op::Gelu { tanh: true });
        let mut declared: Vec<(i32, String)> = ops
            .iter()
            .filter_map(|op| unary_code(op).map(|(c, _)| (c, op.name().to_string())))
            .collect();
        declared.push((CLIP_CODE, "Clip".into()));
        let src = cases(ELEMENTWISE, "hf_unary");
        agree("hf_unary", &src, &declared);
        // The two Gelu forms are told apart by their labels.
        assert!(src[&unary_code(&Op::Gelu { tanh: true }).unwrap().0].contains("tanh"));
        assert!(src[&unary_code(&Op::Gelu { tanh: false }).unwrap().0].contains("erf"));
    }

    #[test]
    fn binary_codes_match_elementwise_cu() {
        use BinaryOp::*;
        let all = [
            Add,
            Sub,
            Mul,
            Div,
            Pow,
            Equal,
            Less,
            Greater,
            LessOrEqual,
            GreaterOrEqual,
            And,
            Or,
            Xor,
            Max,
            Min,
            Mod,
            FMod,
            ShiftLeft,
            ShiftRight,
            BitwiseAnd,
            BitwiseOr,
            BitwiseXor,
        ];
        let declared: Vec<(i32, String)> = all
            .into_iter()
            .filter_map(|b| binary_code(b).map(|c| (c, Op::Binary(b).name().to_string())))
            .collect();
        agree("hf_binary", &cases(ELEMENTWISE, "hf_binary"), &declared);
    }

    #[test]
    fn reduce_kinds_match_reduce_cu() {
        use ReduceKind::*;
        let all = [
            Sum, Mean, Max, Min, Prod, L1, L2, LogSum, LogSumExp, SumSquare,
        ];
        let declared: Vec<(i32, String)> = all
            .into_iter()
            .filter_map(|k| reduce_code(k).map(|c| (c, format!("{k:?}"))))
            .collect();
        let src = listed(REDUCE, "Kinds (`hf_reduce_kind`):", '.');
        agree("reduce kinds", &src, &declared);
    }

    #[test]
    fn type_codes_match_misc_cu() {
        use DType::*;
        let all = [
            F32, F16, BF16, I64, I32, U8, Bool, F64, I8, I16, U16, U32, U64,
        ];
        let declared: Vec<(i32, String)> = all
            .into_iter()
            .filter_map(|d| type_code(d).map(|c| (c, d.name().to_string())))
            .collect();
        agree(
            "type codes",
            &listed(MISC, "(type codes of", ')'),
            &declared,
        );
    }

    #[test]
    fn activation_codes_match_common_cuh() {
        let declared: Vec<(i32, String)> = [
            (Activation::None, "none"),
            (Activation::Relu, "Relu"),
            (Activation::Clip { lo: 0.0, hi: 6.0 }, "Clip"),
        ]
        .into_iter()
        .map(|(a, n)| (act_code(a).0, n.to_string()))
        .collect();
        let src = listed(
            COMMON,
            "Fused activation of Conv (`Activation` in hetflow_ops):",
            '.',
        );
        agree("hf_act", &src, &declared);
    }
}
