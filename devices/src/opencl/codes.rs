//! The numbers the OpenCL kernels switch on, declared once: the reduction
//! kinds of `reduce_nd` (`kernels_nn.cl`).
//!
//! A leaf of the backend (it imports nothing of it), read by the launch
//! files. The `.cl` source lists the kinds by name in the comment above
//! the kernel; the unit test below parses that list and fails when a code
//! here and the name there disagree, on any machine, with or without an
//! OpenCL device. (The element-wise kernels are separate kernels per op,
//! named in `elementwise.rs`'s table; they need no codes.)

use hetflow_ops::op::ReduceKind;

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

    /// `N Name` pairs of the kinds list in kernels_nn.cl.
    fn listed() -> BTreeMap<u32, String> {
        let src = include_str!("kernels_nn.cl");
        let marker = "Kinds (`reduce_code` in codes.rs):";
        let start = src.find(marker).expect("the kinds list") + marker.len();
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
        let src = listed();
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
}
