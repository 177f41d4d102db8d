//! `hetflow devices`.

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn main(a: Args) -> Result<()> {
    let (topo, backends) = hetflow::devices::discover();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"topology": topo, "backends": backends})
        );
        return Ok(());
    }
    println!("topology ({}):", topo.source);
    for line in topo.summary().lines() {
        println!("  {line}");
    }
    println!("devices:");
    for b in &backends {
        for d in &b.devices {
            println!(
                "  {:<8} {}  memory {:.1} GiB  numa {}  {}",
                d.id.to_string(),
                d.name,
                d.memory_bytes as f64 / (1u64 << 30) as f64,
                d.numa_node
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                d.locality
            );
        }
        if let Some(why) = &b.unavailable {
            println!("  {:<8} unavailable: {why}", b.kind.name());
        }
    }
    let cores = topo.cores.len();
    if cores > 1 {
        println!(
            "hint: --device cpu:0,...,cpu:{} splits the {cores} cores into logical CPU devices",
            cores - 1
        );
    }
    Ok(())
}
