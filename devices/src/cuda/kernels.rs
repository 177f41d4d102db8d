//! The NVRTC-compiled kernels: their sources (`kernels/*.cu`, with
//! `kernels/common.cuh` prepended) and the per-device function table.
//!
//! Sources are compiled once per device at open, for that device's compute
//! capability. `scripts/nvrtc_check.py` compiles the same files with the
//! same options on a machine without a GPU, so a kernel that does not
//! compile fails CI.

use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use std::collections::HashMap;
use std::sync::Arc;

/// Prepended to every source.
pub const COMMON: &str = include_str!("kernels/common.cuh");

/// (file name, source) of every kernel file.
pub const SOURCES: &[(&str, &str)] = &[
    ("conv.cu", include_str!("kernels/conv.cu")),
    ("data.cu", include_str!("kernels/data.cu")),
    ("elementwise.cu", include_str!("kernels/elementwise.cu")),
    ("misc.cu", include_str!("kernels/misc.cu")),
    ("norm.cu", include_str!("kernels/norm.cu")),
    ("pool.cu", include_str!("kernels/pool.cu")),
    ("reduce.cu", include_str!("kernels/reduce.cu")),
];

/// Options besides the architecture; keep `OPTIONS` in
/// scripts/nvrtc_check.py the same.
pub const NVRTC_OPTIONS: &[&str] = &["--std=c++17"];

/// Float storage suffixes (math in f32).
pub const FLOAT_SUFFIXES: &[&str] = &["f32", "f16", "bf16"];
/// Element-size suffixes of the data-movement kernels.
pub const BYTE_SUFFIXES: &[&str] = &["b1", "b2", "b4", "b8"];

/// Kernel families, each instantiated as `<family>_<suffix>` for every
/// suffix of its group (by one `HF_*(SUFFIX, T)` macro per file).
pub const GROUPS: &[(&[&str], &[&str])] = &[
    (
        &[
            "unary",
            "binary",
            "bcast_copy",
            "softmax",
            "layernorm",
            "im2col",
            "depthwise",
            "bias_act",
            "pool",
            "global_pool",
            "batchnorm",
            "lrn",
            "reduce",
        ],
        FLOAT_SUFFIXES,
    ),
    (&["strided_copy", "where", "gather"], BYTE_SUFFIXES),
    (&["cast", "equal"], &["any"]),
];

/// Every kernel name of [`GROUPS`].
pub fn kernel_names() -> impl Iterator<Item = String> {
    GROUPS.iter().flat_map(|(fams, sfxs)| {
        fams.iter()
            .flat_map(move |f| sfxs.iter().map(move |s| format!("{f}_{s}")))
    })
}

/// Whether libnvrtc can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The loaded kernels of one device.
pub(crate) struct Kernels {
    funcs: HashMap<String, CudaFunction>,
}

impl Kernels {
    /// Compiles every source for `compute_<cc>` and loads it into `ctx`.
    pub fn build(ctx: &Arc<CudaContext>, cc: (i32, i32)) -> Result<Kernels, String> {
        if !nvrtc_present() {
            return Err(
                "NVRTC (libnvrtc.so) could not be loaded, so only the cuBLAS ops \
                        (MatMul, Gemm) run here; put the CUDA toolkit's or the \
                        nvidia-cuda-nvrtc wheel's lib directory on LD_LIBRARY_PATH"
                    .into(),
            );
        }
        let mut funcs = HashMap::new();
        for (name, src) in SOURCES {
            let mut options = vec![format!("--gpu-architecture=compute_{}{}", cc.0, cc.1)];
            options.extend(NVRTC_OPTIONS.iter().map(|s| s.to_string()));
            let opts = CompileOptions {
                options,
                name: Some(name.to_string()),
                ..Default::default()
            };
            let ptx = compile_ptx_with_opts(format!("{COMMON}\n{src}"), opts)
                .map_err(|e| format!("NVRTC compiling {name}: {e}"))?;
            let module = ctx
                .load_module(ptx)
                .map_err(|e| format!("loading the PTX of {name}: {e}"))?;
            for f in kernel_names() {
                if funcs.contains_key(&f) {
                    continue;
                }
                if let Ok(func) = module.load_function(&f) {
                    funcs.insert(f, func);
                }
            }
        }
        let missing: Vec<String> = kernel_names().filter(|f| !funcs.contains_key(f)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "kernels missing from the PTX: {}",
                missing.join(", ")
            ));
        }
        Ok(Kernels { funcs })
    }

    /// The function `<family>_<suffix>`.
    pub fn get(&self, family: &str, suffix: &str) -> Result<&CudaFunction, String> {
        self.funcs
            .get(&format!("{family}_{suffix}"))
            .ok_or_else(|| format!("no kernel {family}_{suffix}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family is defined by exactly one macro and every macro is
    /// instantiated for each suffix of its group, so a kernel added to a
    /// file but not to the table (or the reverse) is caught without a GPU.
    #[test]
    fn sources_define_every_kernel() {
        let all: String = SOURCES.iter().map(|(_, s)| *s).collect();
        for (fams, sfxs) in GROUPS {
            for fam in *fams {
                let typed = all.matches(&format!(" {fam}_##SUFFIX(")).count();
                let plain: usize = sfxs
                    .iter()
                    .map(|s| all.matches(&format!(" {fam}_{s}(")).count())
                    .sum();
                assert_eq!(
                    typed + plain,
                    if typed > 0 { 1 } else { sfxs.len() },
                    "{fam}"
                );
                assert!(typed + plain > 0, "{fam} is not defined");
            }
        }
        // Each typed macro (one per file) is instantiated once per suffix.
        for (_, src) in SOURCES {
            let Some(m) = src.find("#define HF_") else {
                continue;
            };
            let name: String = src[m + 8..].chars().take_while(|c| *c != '(').collect();
            for (_, sfxs) in GROUPS.iter().filter(|(_, s)| s.len() > 1) {
                let uses: usize = sfxs
                    .iter()
                    .map(|s| src.matches(&format!("\n{name}({s}, ")).count())
                    .sum();
                if uses > 0 {
                    assert_eq!(uses, sfxs.len(), "{name}");
                }
            }
        }
        assert_eq!(kernel_names().count(), 13 * 3 + 3 * 4 + 2);
    }
}
