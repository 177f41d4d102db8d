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
use std::sync::{Arc, Mutex, OnceLock};

/// The OpenCL C source of every kernel.
pub const SOURCE: &str = concat!(include_str!("kernels.cl"), include_str!("kernels_nn.cl"));

/// The name of the one program the backend builds from [`SOURCE`].
pub const PROGRAM: &str = "hetflow_f32";

/// Every kernel of [`SOURCE`], read from the source itself: each
/// `__kernel void name(` and the first argument of each invocation of a
/// kernel-defining macro at the start of a line (`UNARY(u_relu, ...)`,
/// `COPY_ND(copy_nd_4, ...)`). Derived rather than listed, so a kernel
/// added to the `.cl` source needs no second line anywhere; the op
/// table's test checks that every kernel an op declares is here, and a
/// device test creates each of them from the built program.
pub fn kernels() -> &'static [&'static str] {
    static LIST: OnceLock<Vec<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| kernels_of(SOURCE))
}

fn kernels_of(src: &'static str) -> Vec<&'static str> {
    let is_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let mut out: Vec<&'static str> = Vec::new();
    for line in src.lines() {
        let macro_arg = line
            .split_once('(')
            .filter(|(m, _)| !m.is_empty() && m.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .and_then(|(_, rest)| rest.split_once(','))
            .map(|(name, _)| name.trim())
            .filter(|n| is_name(n));
        out.extend(macro_arg);
        for part in line.split("__kernel void ").skip(1) {
            let n = part.split('(').next().unwrap_or("").trim();
            // `name` is a macro's parameter, not a kernel.
            if n != "name" && is_name(n) {
                out.push(n);
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|n| seen.insert(*n));
    out
}

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
