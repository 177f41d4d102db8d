//! CUDA discovery: is a driver here, and which GPUs does it offer?
//!
//! Nothing here panics when CUDA is absent. cudarc's dynamically loaded
//! bindings panic on the first call into a library that is missing (or a
//! driver too old to have a symbol), so [`probe`] first asks
//! `is_culib_present()` and then runs the driver calls inside
//! `catch_unwind`, turning either case into a reason string.

use cudarc::driver::{result, sys};

/// One GPU as the driver describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    /// CUDA device ordinal.
    pub ordinal: usize,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Total device memory in bytes.
    pub memory_bytes: u64,
    /// Streaming multiprocessors.
    pub sm_count: usize,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// PCI location, `domain:bus:device`.
    pub pci: String,
    /// Peak SM clock in kHz.
    pub clock_khz: u32,
}

impl GpuInfo {
    /// Nominal peak f32 rate in GFLOP/s: SMs x f32 lanes per SM x 2 (FMA)
    /// x clock. Lanes per SM by architecture: 64 on sm_60/70/75/80, 128
    /// on sm_61, sm_86/87/89 and sm_90 and later. `hetflow profile`
    /// measures the real rate; this only seeds plans made without it.
    pub fn peak_gflops_f32(&self) -> f64 {
        let lanes = match self.compute_capability {
            (6, 1) | (8, 6..) | (9.., _) => 128.0,
            _ => 64.0,
        };
        self.sm_count as f64 * lanes * 2.0 * self.clock_khz as f64 * 1e-6
    }
}

/// The reason given when the driver library cannot be loaded.
pub const NO_DRIVER: &str = "no CUDA driver (libcuda.so could not be loaded)";

/// Whether `libcuda` can be loaded at all (no CUDA call is made).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library; calls nothing in it.
    unsafe { sys::is_culib_present() }
}

/// The GPUs of this machine, or why there are none usable: no driver, a
/// driver that fails to initialise, or zero devices.
pub fn probe() -> Result<Vec<GpuInfo>, String> {
    if !driver_present() {
        return Err(NO_DRIVER.into());
    }
    match std::panic::catch_unwind(probe_driver) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".into());
            Err(format!(
                "CUDA driver unusable (too old for the CUDA 12.2 API this build uses?): {msg}"
            ))
        }
    }
}

fn probe_driver() -> Result<Vec<GpuInfo>, String> {
    result::init().map_err(|e| format!("CUDA driver present but cuInit failed: {e}"))?;
    let n = result::device::get_count().map_err(|e| format!("cuDeviceGetCount failed: {e}"))?;
    if n <= 0 {
        return Err("CUDA driver present but it reports no GPU".into());
    }
    (0..n).map(describe).collect()
}

fn describe(ordinal: i32) -> Result<GpuInfo, String> {
    use sys::CUdevice_attribute as A;
    let err = |what: &str, e: result::DriverError| format!("cuda:{ordinal}: {what}: {e}");
    let dev = result::device::get(ordinal).map_err(|e| err("cuDeviceGet", e))?;
    let attr = |a: A| -> Result<i32, String> {
        // SAFETY: `dev` is a valid device handle from cuDeviceGet.
        unsafe { result::device::get_attribute(dev, a) }.map_err(|e| err("attribute", e))
    };
    let name = result::device::get_name(dev).map_err(|e| err("name", e))?;
    // SAFETY: as above.
    let memory = unsafe { result::device::total_mem(dev) }.map_err(|e| err("memory", e))?;
    Ok(GpuInfo {
        ordinal: ordinal as usize,
        name,
        memory_bytes: memory as u64,
        sm_count: attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as usize,
        compute_capability: (
            attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ),
        clock_khz: attr(A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)?.max(0) as u32,
        pci: format!(
            "{:04x}:{:02x}:{:02x}",
            attr(A::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?,
            attr(A::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?,
            attr(A::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rate_from_sm_count_and_clock() {
        let h100 = GpuInfo {
            ordinal: 0,
            name: "H100".into(),
            memory_bytes: 80 << 30,
            sm_count: 132,
            compute_capability: (9, 0),
            pci: String::new(),
            clock_khz: 1_980_000,
        };
        // 132 SMs x 128 lanes x 2 x 1.98 GHz = 66.9 TFLOP/s (NVIDIA: 67).
        assert!((h100.peak_gflops_f32() - 66_908.0).abs() < 1.0);
        let a100 = GpuInfo {
            sm_count: 108,
            compute_capability: (8, 0),
            clock_khz: 1_410_000,
            ..h100
        };
        // 19.5 TFLOP/s.
        assert!((a100.peak_gflops_f32() - 19_491.8).abs() < 1.0);
    }

    #[test]
    fn probe_never_panics_and_explains_absence() {
        match probe() {
            Ok(gpus) => {
                assert!(!gpus.is_empty());
                for g in &gpus {
                    assert!(g.memory_bytes > 0 && g.sm_count > 0, "{g:?}");
                }
            }
            Err(why) => {
                assert!(why.contains("CUDA"), "reason should name CUDA: {why}");
                if !driver_present() {
                    assert_eq!(why, NO_DRIVER);
                    eprintln!("skipping GPU part of the discovery test: {why}");
                }
            }
        }
    }
}
