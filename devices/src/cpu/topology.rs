//! TEMPORARY stand-in until the hwloc module lands (same API).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CoreInfo {
    pub index: usize,
    pub pus: Vec<usize>,
    pub numa_node: Option<usize>,
    pub package: usize,
}
#[derive(Clone, Debug, serde::Serialize)]
pub struct NumaInfo {
    pub os_index: usize,
    pub memory_bytes: Option<u64>,
    pub cores: Vec<usize>,
}
#[derive(Clone, Debug, serde::Serialize)]
pub struct CpuTopology {
    pub source: &'static str,
    pub cpu_model: String,
    pub packages: usize,
    pub cores: Vec<CoreInfo>,
    pub numa_nodes: Vec<NumaInfo>,
    pub total_memory_bytes: u64,
    pub l3_bytes: Option<u64>,
    pub l2_bytes: Option<u64>,
    pub simd: Vec<String>,
}
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{0}")]
    Bad(String),
}
impl CpuTopology {
    pub fn discover() -> CpuTopology {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        CpuTopology {
            source: "fallback",
            cpu_model: "cpu".into(),
            packages: 1,
            cores: (0..n)
                .map(|i| CoreInfo {
                    index: i,
                    pus: vec![i],
                    numa_node: Some(0),
                    package: 0,
                })
                .collect(),
            numa_nodes: vec![],
            total_memory_bytes: 1 << 30,
            l3_bytes: None,
            l2_bytes: None,
            simd: vec![],
        }
    }
    pub fn partition(&self, n: usize) -> Result<Vec<Vec<usize>>, TopologyError> {
        if n == 0 || n > self.cores.len() {
            return Err(TopologyError::Bad(format!(
                "cannot split {} cores into {n} devices",
                self.cores.len()
            )));
        }
        let c = self.cores.len();
        Ok((0..n)
            .map(|g| (g * c / n..(g + 1) * c / n).collect())
            .collect())
    }
    pub fn pus_of(&self, cores: &[usize], _one: bool) -> Vec<usize> {
        cores.iter().map(|&c| self.cores[c].pus[0]).collect()
    }
    pub fn summary(&self) -> String {
        format!("{} cores", self.cores.len())
    }
}
pub fn bind_current_thread(_pus: &[usize]) -> Result<(), TopologyError> {
    Ok(())
}
