//! The TPU-like device's configuration: matrix unit geometry, clock,
//! memories and links. The defaults follow the public figures of a Cloud
//! TPU v5e chip; see [`TpuConfig::v5e`] for each number and its source.

/// Geometry, clock, memories and bandwidths of the emulated device. Used
/// both by the emulator (tile sizes, capacity checks) and by the pure cost
/// model in [`super::cost`].
///
/// Serialised as JSON (the registry reads `HETFLOW_TPU_CONFIG`); missing
/// fields take the [`TpuConfig::v5e`] defaults.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpuConfig {
    /// Rows of one systolic matrix unit (MXU): the depth of the K tile that
    /// one pass reduces.
    pub mxu_rows: usize,
    /// Columns of one MXU: the width of the N tile of one pass.
    pub mxu_cols: usize,
    /// Matrix units working side by side (each owns whole N column blocks).
    pub mxu_count: usize,
    /// Core clock in Hz.
    pub clock_hz: f64,
    /// f32 element operations the vector unit completes per cycle (its
    /// sublanes times lanes).
    pub vector_lanes: usize,
    /// On-chip vector memory (VMEM) in bytes: operand blocks, weight tiles
    /// and accumulators of one GEMM must fit here.
    pub onchip_bytes: u64,
    /// Device memory (HBM) in bytes.
    pub hbm_bytes: u64,
    /// HBM bandwidth in bytes per second.
    pub hbm_bytes_per_s: f64,
    /// Host <-> device link bandwidth in bytes per second.
    pub host_bytes_per_s: f64,
    /// Fixed latency of one host <-> device transfer, in seconds.
    pub host_latency_s: f64,
    /// Host threads that emulate the device's units (0 = one per available
    /// host core).
    pub emulation_threads: usize,
    /// How many bf16 passes a matrix product takes (XLA's precision
    /// config): one by default, three or six for f32-like accuracy.
    pub matmul_precision: MatmulPrecision,
}

/// The matrix unit's precision for f32 operands, as XLA's
/// `PrecisionConfig` (`jax.default_matmul_precision`): each operand is
/// split into bf16 parts (`hi = bf16(x)`, `mid = bf16(x - hi)`, `lo =
/// bf16(x - hi - mid)`) and the product is the sum of the part products
/// that matter, each one pass of the arrays, accumulated in f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    /// One pass on bf16-rounded operands (about 3 significant digits).
    #[default]
    Default,
    /// Three passes (`bf16_3x`: hi*hi + hi*lo + lo*hi), about 5 digits.
    High,
    /// Six passes (`bf16_6x`), close to an f32 product.
    Highest,
}

impl MatmulPrecision {
    /// Passes of the arrays per product.
    pub fn passes(self) -> u64 {
        match self {
            MatmulPrecision::Default => 1,
            MatmulPrecision::High => 3,
            MatmulPrecision::Highest => 6,
        }
    }

    /// bf16 parts each operand is split into.
    pub fn parts(self) -> usize {
        match self {
            MatmulPrecision::Default => 1,
            MatmulPrecision::High => 2,
            MatmulPrecision::Highest => 3,
        }
    }
}

impl Default for TpuConfig {
    fn default() -> Self {
        TpuConfig::v5e()
    }
}

impl TpuConfig {
    /// Figures close to one Cloud TPU v5e chip (one TensorCore).
    ///
    /// * 4 MXUs of 128 x 128 per TensorCore, one TensorCore per chip; 197
    ///   TFLOP/s bf16 peak; 16 GB HBM2 at 819 GB/s — Google Cloud, "TPU
    ///   v5e" system architecture page (cloud.google.com/tpu/docs/v5e).
    /// * Clock: not in that table; derived from it as 197e12 flop/s /
    ///   (4 MXUs x 128 x 128 MACs x 2 flop) = 1.503 GHz.
    /// * Vector unit: 8 sublanes x 128 lanes of 32-bit values per cycle
    ///   (the (8, 128) vreg layout in the JAX Pallas TPU documentation).
    /// * VMEM: 16 MiB, the on-chip memory a Pallas/XLA kernel may use by
    ///   default; an assumption, not a published v5e figure.
    /// * Host link: PCIe Gen4 x16, 32 GB/s raw, taken as 25 GB/s effective
    ///   with 10 us per transfer; an assumption (the host interface is not
    ///   in Google's table).
    pub fn v5e() -> TpuConfig {
        TpuConfig {
            mxu_rows: 128,
            mxu_cols: 128,
            mxu_count: 4,
            clock_hz: 197e12 / (4.0 * 128.0 * 128.0 * 2.0),
            vector_lanes: 8 * 128,
            onchip_bytes: 16 << 20,
            hbm_bytes: 16_000_000_000,
            hbm_bytes_per_s: 819e9,
            host_bytes_per_s: 25e9,
            host_latency_s: 10e-6,
            emulation_threads: 0,
            matmul_precision: MatmulPrecision::Default,
        }
    }

    /// Parses a JSON configuration (missing fields default to v5e) and
    /// checks it.
    pub fn from_json(text: &str) -> Result<TpuConfig, String> {
        let c: TpuConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    /// Checks the configuration is usable (positive sizes and rates).
    pub fn validate(&self) -> Result<(), String> {
        let sizes = [
            ("mxu_rows", self.mxu_rows),
            ("mxu_cols", self.mxu_cols),
            ("mxu_count", self.mxu_count),
            ("vector_lanes", self.vector_lanes),
        ];
        for (name, v) in sizes {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        let rates = [
            ("clock_hz", self.clock_hz),
            ("hbm_bytes_per_s", self.hbm_bytes_per_s),
            ("host_bytes_per_s", self.host_bytes_per_s),
        ];
        for (name, v) in rates {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be a positive number, got {v}"));
            }
        }
        if !(self.host_latency_s.is_finite() && self.host_latency_s >= 0.0) {
            return Err("host_latency_s must be >= 0".into());
        }
        // One weight tile double-buffered plus one row of operands and
        // accumulators per unit must fit on chip.
        let min = (2 * self.mxu_rows * self.mxu_cols * 2
            + 2 * self.mxu_rows * 2
            + self.mxu_cols * 4) as u64
            * self.mxu_count as u64;
        if self.onchip_bytes < min {
            return Err(format!(
                "onchip_bytes {} is below the {min} bytes one pass of every unit needs",
                self.onchip_bytes
            ));
        }
        Ok(())
    }

    /// Peak matrix-unit rate in flop/s (2 flops per MAC).
    pub fn peak_flops(&self) -> f64 {
        2.0 * (self.mxu_rows * self.mxu_cols * self.mxu_count) as f64 * self.clock_hz
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_overrides_defaults() {
        let c =
            TpuConfig::from_json(r#"{"mxu_rows": 64, "mxu_cols": 32, "mxu_count": 1}"#).unwrap();
        assert_eq!((c.mxu_rows, c.mxu_cols, c.mxu_count), (64, 32, 1));
        assert_eq!(c.hbm_bytes, TpuConfig::v5e().hbm_bytes);
        let e = TpuConfig::from_json(r#"{"mxu_rows": 0}"#).unwrap_err();
        assert!(e.contains("mxu_rows"), "{e}");
        let e = TpuConfig::from_json(r#"{"mxu_size": 3}"#).unwrap_err();
        assert!(e.contains("mxu_size"), "{e}");
        let e = TpuConfig::from_json(r#"{"clock_hz": -1}"#).unwrap_err();
        assert!(e.contains("clock_hz"), "{e}");
        // The v5e peak: 197 TFLOP/s.
        assert!((TpuConfig::v5e().peak_flops() - 197e12).abs() < 1e9);
    }
}
