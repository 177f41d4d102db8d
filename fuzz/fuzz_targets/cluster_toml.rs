//! Cluster spec TOML (`hetflow plan/simulate --cluster`): parse and
//! validate, then what the planners read off a valid spec (every link,
//! the link matrix, per-device peaks and memory, a subset as `--devices`
//! makes one) and a write/read round trip.
#![no_main]

use hetflow_scheduler::dag::Links;
use hetflow_scheduler::ClusterSpec;

#[global_allocator]
static ALLOC: hetflow_fuzz::CappedAlloc = hetflow_fuzz::CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = ClusterSpec::from_toml(s) else {
        return;
    };
    let n = c.devices.len();
    for a in 0..n {
        let d = &c.devices[a];
        let _ = (d.peak_flops(None), d.memory_bytes());
        for b in 0..n {
            let _ = c.link(a, b);
        }
    }
    let _ = Links::from_cluster(&c);
    let names: Vec<String> = c.devices.iter().rev().map(|d| d.name.clone()).collect();
    let _ = c.subset(&names);
    let _ = ClusterSpec::from_toml(&c.to_toml());
});
