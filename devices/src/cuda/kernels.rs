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

/// Every kernel name of [`SOURCES`], read from the sources themselves, so
/// a kernel added to a `.cu` file needs no second line anywhere: each
/// `name_##SUFFIX(` of an `HF_*(SUFFIX, T)` macro, once for every suffix
/// the macro is instantiated with (`HF_NORM(f16, hf_f16)` at the start of
/// a line), and each plain `__global__ void name(` outside a macro.
pub fn kernel_names() -> Vec<String> {
    let mut out = Vec::new();
    for (_, src) in SOURCES {
        out.extend(names_in(src));
    }
    out
}

/// The kernel names one source defines (see [`kernel_names`]).
fn names_in(src: &str) -> Vec<String> {
    const KERNEL: &str = "__global__ void ";
    let mut out = Vec::new();
    // Macro name -> kernel families it defines.
    let mut macros: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_macro: Option<usize> = None;
    for line in src.lines() {
        if let Some(rest) = line.strip_prefix("#define ") {
            let name: String = rest.chars().take_while(|c| *c != '(').collect();
            if name.starts_with("HF_") && rest[name.len()..].starts_with("(SUFFIX") {
                macros.push((name, Vec::new()));
                in_macro = Some(macros.len() - 1);
            }
        }
        for part in line.split(KERNEL).skip(1) {
            let n: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '#')
                .collect();
            match (n.strip_suffix("_##SUFFIX"), in_macro) {
                (Some(family), Some(m)) => macros[m].1.push(family.to_string()),
                (None, None) if !n.contains('#') && !n.is_empty() => out.push(n),
                _ => {}
            }
        }
        if !line.trim_end().ends_with('\\') {
            in_macro = None;
        }
        // An instantiation: `HF_X(sfx, T)` at the start of a line.
        for (name, families) in &macros {
            let Some(args) = line
                .strip_prefix(name.as_str())
                .and_then(|r| r.strip_prefix('('))
            else {
                continue;
            };
            let sfx = args.split(',').next().unwrap_or("").trim();
            for f in families {
                out.push(format!("{f}_{sfx}"));
            }
        }
    }
    out
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
            for f in names_in(src) {
                if funcs.contains_key(&f) {
                    continue;
                }
                if let Ok(func) = module.load_function(&f) {
                    funcs.insert(f, func);
                }
            }
        }
        let missing: Vec<String> = kernel_names()
            .into_iter()
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

    /// The names read from the sources: every family of every macro, once
    /// per suffix it is instantiated with, and the plain kernels.
    #[test]
    fn kernel_names_are_read_from_the_sources() {
        let names = kernel_names();
        let has = |n: &str| names.iter().any(|k| k == n);
        for fam in [
            "unary", "binary", "softmax", "im2col", "pool", "reduce", "lrn",
        ] {
            for sfx in FLOAT_SUFFIXES {
                assert!(has(&format!("{fam}_{sfx}")), "{fam}_{sfx}");
            }
        }
        for fam in ["strided_copy", "where", "gather"] {
            for sfx in BYTE_SUFFIXES {
                assert!(has(&format!("{fam}_{sfx}")), "{fam}_{sfx}");
            }
        }
        assert!(has("cast_any") && has("equal_any"));
        assert!(!names.iter().any(|n| n.contains('#')), "{names:?}");
        let unique: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "a kernel defined twice");
        // Each `__global__` definition gives one name, or one per suffix
        // inside a macro: at least as many names as definitions.
        let all: String = SOURCES.iter().map(|(_, s)| *s).collect();
        assert!(names.len() >= all.matches("__global__ void ").count());
        assert!(names.len() >= 13 * 3 + 3 * 4 + 2, "{names:?}");
    }
}
