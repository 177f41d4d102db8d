//! Finding OpenCL platforms and devices, and describing them.
//!
//! Every platform's devices of every type (CPU, GPU, ACCELERATOR, CUSTOM)
//! are listed in platform order, then device order; `opencl:K` is the K-th
//! of that list. With no ICD loader, no ICD, or no platform, discovery
//! returns the reason as an error (never a panic).

use opencl3::device::{
    Device as ClDevice, CL_DEVICE_TYPE_ACCELERATOR, CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_CPU,
    CL_DEVICE_TYPE_CUSTOM, CL_DEVICE_TYPE_GPU,
};
use opencl3::platform::get_platforms;
use opencl3::types::cl_device_id;

/// Serialises platform discovery, context creation and program builds
/// across threads: the ICD loader's first-call initialisation and some
/// drivers' compilers are not thread-safe (concurrent first calls crashed
/// PoCL 3.1 through ocl-icd here).
pub(crate) fn cl_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The OpenCL device class (`CL_DEVICE_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClDeviceType {
    /// A host CPU (PoCL, Intel CPU runtime).
    Cpu,
    /// A GPU.
    Gpu,
    /// An accelerator: FPGA boards, DSPs.
    Accelerator,
    /// Custom devices (fixed-function, built-in kernels only).
    Custom,
    /// Anything else the driver reports.
    Other,
}

impl ClDeviceType {
    fn from_bits(t: u64) -> ClDeviceType {
        if t & CL_DEVICE_TYPE_GPU != 0 {
            ClDeviceType::Gpu
        } else if t & CL_DEVICE_TYPE_ACCELERATOR != 0 {
            ClDeviceType::Accelerator
        } else if t & CL_DEVICE_TYPE_CUSTOM != 0 {
            ClDeviceType::Custom
        } else if t & CL_DEVICE_TYPE_CPU != 0 {
            ClDeviceType::Cpu
        } else {
            ClDeviceType::Other
        }
    }
    /// Upper-case name as in `clinfo`.
    pub fn name(self) -> &'static str {
        match self {
            ClDeviceType::Cpu => "CPU",
            ClDeviceType::Gpu => "GPU",
            ClDeviceType::Accelerator => "ACCELERATOR",
            ClDeviceType::Custom => "CUSTOM",
            ClDeviceType::Other => "OTHER",
        }
    }
}

/// What one OpenCL device reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClDeviceDesc {
    /// Position in the all-platforms list (`opencl:index`).
    pub index: usize,
    /// Platform name (e.g. "Portable Computing Language").
    pub platform: String,
    /// Device name (`CL_DEVICE_NAME`).
    pub name: String,
    /// Vendor.
    pub vendor: String,
    /// `CL_DEVICE_VERSION`.
    pub version: String,
    /// Class.
    pub device_type: ClDeviceType,
    /// `CL_DEVICE_GLOBAL_MEM_SIZE`.
    pub global_mem_bytes: u64,
    /// `CL_DEVICE_MAX_MEM_ALLOC_SIZE`.
    pub max_alloc_bytes: u64,
    /// `CL_DEVICE_LOCAL_MEM_SIZE`.
    pub local_mem_bytes: u64,
    /// `CL_DEVICE_MAX_COMPUTE_UNITS`.
    pub compute_units: usize,
    /// `CL_DEVICE_MAX_WORK_GROUP_SIZE`.
    pub max_work_group: usize,
    /// `CL_DEVICE_MAX_WORK_ITEM_SIZES`.
    pub max_work_item_sizes: Vec<usize>,
    /// `CL_DEVICE_MAX_CLOCK_FREQUENCY` in MHz.
    pub clock_mhz: u32,
    #[serde(skip)]
    pub(crate) id: usize,
}

impl ClDeviceDesc {
    pub(crate) fn cl_id(&self) -> cl_device_id {
        self.id as cl_device_id
    }
}

/// Why there is no OpenCL device to use.
fn cl_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Every device of every platform, in order, or why there are none:
/// "no OpenCL platform (...)" when the ICD loader finds no platform.
pub fn list_devices() -> Result<Vec<ClDeviceDesc>, String> {
    let _g = cl_lock();
    if !cl3::is_opencl_runtime_available() {
        return Err(
            "no OpenCL platform: the OpenCL ICD loader (libOpenCL.so.1) is not installed".into(),
        );
    }
    let platforms = get_platforms().map_err(|e| {
        format!("no OpenCL platform: the ICD loader found none ({e}; is an ICD such as pocl-opencl-icd installed in /etc/OpenCL/vendors?)")
    })?;
    if platforms.is_empty() {
        return Err("no OpenCL platform: the ICD loader found none".into());
    }
    let mut out = Vec::new();
    for p in &platforms {
        let pname = p.name().unwrap_or_else(|_| "?".into());
        let ids = match p.get_devices(CL_DEVICE_TYPE_ALL) {
            Ok(ids) => ids,
            // CL_DEVICE_NOT_FOUND: a platform without devices.
            Err(_) => continue,
        };
        for id in ids {
            let d = ClDevice::new(id);
            out.push(ClDeviceDesc {
                index: out.len(),
                platform: pname.clone(),
                name: d
                    .name()
                    .map_err(|e| cl_err("CL_DEVICE_NAME", e))?
                    .trim()
                    .to_string(),
                vendor: d.vendor().unwrap_or_default().trim().to_string(),
                version: d.version().unwrap_or_default().trim().to_string(),
                device_type: ClDeviceType::from_bits(d.dev_type().unwrap_or(0)),
                global_mem_bytes: d.global_mem_size().unwrap_or(0),
                max_alloc_bytes: d.max_mem_alloc_size().unwrap_or(0),
                local_mem_bytes: d.local_mem_size().unwrap_or(0),
                compute_units: d.max_compute_units().unwrap_or(1) as usize,
                max_work_group: d.max_work_group_size().unwrap_or(1),
                max_work_item_sizes: d.max_work_item_sizes().unwrap_or_default(),
                clock_mhz: d.max_clock_frequency().unwrap_or(0),
                id: id as usize,
            });
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no OpenCL device: {} platform(s) but none has a device",
            platforms.len()
        ));
    }
    Ok(out)
}
