//! Programs: the kernel source, the per-device program cache, and the
//! binary path (programs loaded with `clCreateProgramWithBinary` from a
//! directory with a `manifest.json`).
//!
//! Manifest format (`<dir>/manifest.json`):
//! ```json
//! { "programs": [
//!   { "program": "hetflow_f32",
//!     "device": "pthread-skylake-avx512-AMD EPYC 9B14",
//!     "file": "hetflow_f32-0.bin",
//!     "kernels": ["gemm_rb", "gemm_rb4", "gemm_edge", "b_add"] } ] }
//! ```
//! `device` is the `CL_DEVICE_NAME` the binary was built for (`"*"`
//! matches any device); `kernels` lists the kernels the binary provides
//! (an FPGA bitstream usually holds a few); leave it out when the binary
//! holds every kernel of the program. `file` is relative to the directory.

use opencl3::context::Context;
use opencl3::program::Program;
use opencl3::types::cl_device_id;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The OpenCL C source of every kernel.
pub const SOURCE: &str = concat!(include_str!("kernels.cl"), include_str!("kernels_nn.cl"));

/// The name of the one program the backend builds from [`SOURCE`].
pub const PROGRAM: &str = "hetflow_f32";

/// Every kernel of [`SOURCE`].
pub const KERNELS: &[&str] = &[
    "u_relu",
    "u_neg",
    "u_abs",
    "u_exp",
    "u_log",
    "u_sqrt",
    "u_sigmoid",
    "u_tanh",
    "u_erf",
    "u_reciprocal",
    "u_floor",
    "u_ceil",
    "u_sin",
    "u_cos",
    "u_tan",
    "u_asin",
    "u_acos",
    "u_atan",
    "u_sinh",
    "u_cosh",
    "u_asinh",
    "u_acosh",
    "u_atanh",
    "u_round",
    "u_sign",
    "u_softsign",
    "u_gelu_erf",
    "u_gelu_tanh",
    "b_add",
    "b_sub",
    "b_mul",
    "b_div",
    "b_pow",
    "c_eq",
    "c_lt",
    "c_gt",
    "c_le",
    "c_ge",
    "copy_nd_1",
    "copy_nd_2",
    "copy_nd_4",
    "copy_nd_8",
    "gather_1",
    "gather_2",
    "gather_4",
    "gather_8",
    "where_1",
    "where_4",
    "where_8",
    "cast_f32_i64",
    "cast_f32_i32",
    "cast_f32_bool",
    "cast_i64_f32",
    "cast_i32_f32",
    "cast_u8_f32",
    "gemm_rb",
    "gemm_rb4",
    "gemm_edge",
    "im2col",
    "softmax_axis",
    "layernorm_rows",
    "u_leaky_relu",
    "u_clip",
    "reduce_nd",
    "conv_direct",
    "pool_nd",
    "batchnorm",
    "lrn",
    "logsoftmax_axis",
];

/// One manifest entry.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BinaryEntry {
    /// Program name ([`PROGRAM`]).
    pub program: String,
    /// `CL_DEVICE_NAME` it was built for, or `*`.
    pub device: String,
    /// File name, relative to the manifest's directory.
    pub file: String,
    /// Kernels it provides; `None` = all of the program's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Vec<String>>,
}

/// A binaries directory's `manifest.json`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The binaries.
    pub programs: Vec<BinaryEntry>,
}

impl Manifest {
    /// Reads `<dir>/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, String> {
        let p = dir.join("manifest.json");
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Writes `<dir>/manifest.json`.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let p = dir.join("manifest.json");
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// The entry for `program` on `device`, if any (exact device name
    /// first, then `*`).
    pub fn find(&self, program: &str, device: &str) -> Option<&BinaryEntry> {
        let of = |d: &str| {
            self.programs
                .iter()
                .find(|e| e.program == program && e.device == d)
        };
        of(device).or_else(|| of("*"))
    }
}

/// Where a device's programs come from.
#[derive(Clone, Debug)]
pub enum ProgramSource {
    /// Built from [`SOURCE`] with the OpenCL compiler.
    Source,
    /// Loaded from binaries listed in the manifest of `dir`.
    Binaries {
        /// The directory.
        dir: PathBuf,
        /// Its manifest.
        manifest: Manifest,
    },
}

/// Programs built for one device, keyed by a hash of (device name, program
/// source or binary file, build options). Building takes a lock, so a
/// program is built once however many threads ask.
pub struct ProgramCache {
    device_name: String,
    map: Mutex<HashMap<u64, Arc<Program>>>,
}

fn key(parts: &[&[u8]]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

impl ProgramCache {
    /// An empty cache for the device named `device_name`.
    pub fn new(device_name: &str) -> ProgramCache {
        ProgramCache {
            device_name: device_name.into(),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Number of programs built so far.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when nothing has been built.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The program built from `src` with `options`, building it on first use.
    pub fn from_source(
        &self,
        ctx: &Context,
        src: &str,
        options: &str,
    ) -> Result<Arc<Program>, String> {
        let k = key(&[
            self.device_name.as_bytes(),
            src.as_bytes(),
            options.as_bytes(),
        ]);
        let mut map = self.map.lock().map_err(|_| "program cache poisoned")?;
        if let Some(p) = map.get(&k) {
            return Ok(p.clone());
        }
        let _g = super::discovery::cl_lock();
        let mut prog = Program::create_from_source(ctx, src)
            .map_err(|e| format!("clCreateProgramWithSource: {e}"))?;
        if let Err(e) = prog.build(ctx.devices(), options) {
            let log = ctx
                .devices()
                .first()
                .and_then(|&d| prog.get_build_log(d).ok())
                .unwrap_or_default();
            return Err(format!("building OpenCL program: {e}\n{log}"));
        }
        let prog = Arc::new(prog);
        map.insert(k, prog.clone());
        Ok(prog)
    }

    /// The program loaded from the binary `bytes` (read from `file`).
    pub fn from_binary(
        &self,
        ctx: &Context,
        device: cl_device_id,
        file: &Path,
        options: &str,
    ) -> Result<Arc<Program>, String> {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let k = key(&[self.device_name.as_bytes(), &bytes, options.as_bytes()]);
        let mut map = self.map.lock().map_err(|_| "program cache poisoned")?;
        if let Some(p) = map.get(&k) {
            return Ok(p.clone());
        }
        let _g = super::discovery::cl_lock();
        // SAFETY: `device` belongs to `ctx` (the device's own context).
        let mut prog = unsafe { Program::create_from_binary(ctx, &[device], &[&bytes]) }
            .map_err(|e| format!("clCreateProgramWithBinary({}): {e}", file.display()))?;
        prog.build(&[device], options)
            .map_err(|e| format!("building binary program {}: {e}", file.display()))?;
        let prog = Arc::new(prog);
        map.insert(k, prog.clone());
        Ok(prog)
    }
}

/// Writes the binary of a built program to `dir` as `file` and records it
/// in `dir`'s manifest (created or updated) for `device_name`, providing
/// `kernels` (`None` = all).
pub fn save_binary(
    prog: &Program,
    dir: &Path,
    device_name: &str,
    file: &str,
    kernels: Option<Vec<String>>,
) -> Result<PathBuf, String> {
    let bins = prog
        .get_binaries()
        .map_err(|e| format!("CL_PROGRAM_BINARIES: {e}"))?;
    let bin = bins
        .into_iter()
        .find(|b| !b.is_empty())
        .ok_or("the OpenCL driver returned no program binary")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(file);
    std::fs::write(&path, &bin).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut m = if dir.join("manifest.json").exists() {
        Manifest::load(dir)?
    } else {
        Manifest::default()
    };
    m.programs
        .retain(|e| !(e.program == PROGRAM && e.device == device_name));
    m.programs.push(BinaryEntry {
        program: PROGRAM.into(),
        device: device_name.into(),
        file: file.into(),
        kernels,
    });
    m.save(dir)?;
    Ok(path)
}
