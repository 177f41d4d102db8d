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
    ("elementwise.cu", include_str!("kernels/elementwise.cu")),
    ("norm.cu", include_str!("kernels/norm.cu")),
];

/// Options besides the architecture; keep `OPTIONS` in
/// scripts/nvrtc_check.py the same.
pub const NVRTC_OPTIONS: &[&str] = &["--std=c++17"];

/// Kernel families, each instantiated as `<family>_<f32|f16|bf16>`.
pub const FAMILIES: &[&str] = &["unary", "binary", "bcast_copy", "softmax", "layernorm"];

/// Storage suffixes.
pub const SUFFIXES: &[&str] = &["f32", "f16", "bf16"];

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
            for fam in FAMILIES {
                for sfx in SUFFIXES {
                    let f = format!("{fam}_{sfx}");
                    if let Ok(func) = module.load_function(&f) {
                        funcs.insert(f, func);
                    }
                }
            }
        }
        let missing: Vec<String> = FAMILIES
            .iter()
            .flat_map(|f| SUFFIXES.iter().map(move |s| format!("{f}_{s}")))
            .filter(|f| !funcs.contains_key(f))
            .collect();
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

    /// Every family is instantiated for every storage type in the sources,
    /// so a kernel added to one file but not to the table (or the reverse)
    /// is caught without a GPU.
    #[test]
    fn sources_define_every_kernel() {
        let all: String = SOURCES.iter().map(|(_, s)| *s).collect();
        for fam in FAMILIES {
            let macro_uses = all.matches(&format!("{fam}_##SUFFIX")).count();
            assert_eq!(macro_uses, 1, "{fam}: defined {macro_uses} times");
        }
        for sfx in SUFFIXES {
            let n = all.matches(&format!("({sfx}, ")).count();
            assert_eq!(n, 2, "{sfx} instantiated {n} times (one per macro)");
        }
    }
}
