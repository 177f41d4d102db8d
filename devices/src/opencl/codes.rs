//! The numbers the OpenCL kernels switch on, declared once: the reduction
//! kinds of `reduce_nd` (`kernels_nn.cl`) and the fused activations of
//! the GEMM kernels (`kernels.cl`) and `conv_direct` (`kernels_nn.cl`).
//!
//! A leaf of the backend (it imports nothing of it), read by the launch
//! files. The `.cl` sources list the codes by name in the comment above
//! each kernel; the unit tests below parse those lists and fail when a
//! code here and the name there disagree, on any machine, with or without an
//! OpenCL device. (The element-wise kernels are separate kernels per op,
//! named in `elementwise.rs`'s table; they need no codes.)

use hetflow_ops::op::{Activation, ReduceKind};

/// `act`, `lo`, `hi` arguments of the GEMM kernels and `conv_direct`: a
/// Conv's fused activation.
pub(super) fn act_code(a: Activation) -> (u32, f32, f32) {
    match a {
        Activation::None => (0, 0.0, 0.0),
        Activation::Relu => (1, 0.0, 0.0),
        Activation::Clip { lo, hi } => (2, lo, hi),
    }
}

/// `kind` argument of `reduce_nd`.
pub(super) fn reduce_code(kind: ReduceKind) -> u32 {
    match kind {
        ReduceKind::Sum => 0,
        ReduceKind::Mean => 1,
        ReduceKind::Max => 2,
        ReduceKind::Min => 3,
        ReduceKind::Prod => 4,
        ReduceKind::L1 => 5,
        ReduceKind::L2 => 6,
        ReduceKind::LogSum => 7,
        ReduceKind::LogSumExp => 8,
        ReduceKind::SumSquare => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// `N Name` pairs of the list after `marker` in `src`, up to a full stop.
    fn listed_in(src: &str, marker: &str) -> BTreeMap<u32, String> {
        let start = src.find(marker).expect("the list") + marker.len();
        let text = &src[start..];
        let text = text[..text.find('.').unwrap()]
            .replace("//", " ")
            .replace(',', " ");
        let words: Vec<&str> = text.split_whitespace().collect();
        words
            .windows(2)
            .filter_map(|w| Some((w[0].parse().ok()?, w[1].to_string())))
            .collect()
    }

    #[test]
    fn reduce_kinds_match_kernels_nn_cl() {
        use ReduceKind::*;
        let all = [
            Sum, Mean, Max, Min, Prod, L1, L2, LogSum, LogSumExp, SumSquare,
        ];
        let src = listed_in(
            include_str!("kernels_nn.cl"),
            "Kinds (`reduce_code` in codes.rs):",
        );
        for k in all {
            let code = reduce_code(k);
            assert_eq!(
                src.get(&code).map(String::as_str),
                Some(format!("{k:?}").as_str()),
                "kind {code}"
            );
        }
        assert_eq!(src.len(), all.len(), "kinds in the .cl without a code");
    }

    #[test]
    fn activation_codes_match_both_cl_sources() {
        let all = [
            (Activation::None, "None"),
            (Activation::Relu, "Relu"),
            (Activation::Clip { lo: 0.0, hi: 6.0 }, "Clip"),
        ];
        let marker = "Activations (`act_code` in codes.rs):";
        for src in [include_str!("kernels.cl"), include_str!("kernels_nn.cl")] {
            let listed = listed_in(src, marker);
            for (a, name) in all {
                let code = act_code(a).0;
                assert_eq!(
                    listed.get(&code).map(String::as_str),
                    Some(name),
                    "act {code}"
                );
            }
            assert_eq!(listed.len(), all.len(), "activations without a code");
        }
    }
}
