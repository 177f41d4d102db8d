//! Topology tests: partitioning over synthetic machines, discovery and
//! binding on this one.

use super::*;

/// A synthetic topology: `per_node[i]` cores on NUMA node `i`.
fn synthetic(per_node: &[usize]) -> CpuTopology {
    let mut cores = Vec::new();
    let mut numa_nodes = Vec::new();
    for (node, &c) in per_node.iter().enumerate() {
        let first = cores.len();
        for _ in 0..c {
            let i = cores.len();
            cores.push(CoreInfo {
                index: i,
                pus: vec![i, i + 1000],
                numa_node: Some(node),
                package: node,
            });
        }
        numa_nodes.push(NumaInfo {
            os_index: node,
            memory_bytes: Some(1 << 30),
            cores: (first..cores.len()).collect(),
        });
    }
    CpuTopology {
        source: "test",
        cpu_model: "test cpu".into(),
        packages: per_node.len(),
        cores,
        numa_nodes,
        total_memory_bytes: (per_node.len() as u64) << 30,
        l3_bytes: Some(32 << 20),
        l2_bytes: Some(1 << 20),
        simd: vec!["avx2".into()],
    }
}

fn node_of(t: &CpuTopology, c: usize) -> Option<usize> {
    t.cores[c].numa_node
}

fn check_cover(t: &CpuTopology, groups: &[Vec<usize>]) {
    let flat: Vec<usize> = groups.concat();
    assert_eq!(flat, (0..t.cores.len()).collect::<Vec<_>>(), "{groups:?}");
    assert!(groups.iter().all(|g| !g.is_empty()), "{groups:?}");
}

#[test]
fn discover_finds_cores_and_memory() {
    let t = CpuTopology::discover();
    assert!(!t.cores.is_empty());
    assert!(t.total_memory_bytes > 0);
    assert!(t.packages >= 1);
    for (i, c) in t.cores.iter().enumerate() {
        assert_eq!(c.index, i);
        assert!(!c.pus.is_empty());
    }
    println!("source: {}\n{}", t.source, t.summary());
}

#[test]
fn discover_uses_hwloc_here() {
    let t = CpuTopology::discover();
    assert_eq!(t.source, "hwloc");
    assert!(!t.numa_nodes.is_empty());
}

#[test]
fn partition_one_covers_all() {
    let t = CpuTopology::discover();
    let g = t.partition(1).unwrap();
    assert_eq!(g.len(), 1);
    check_cover(&t, &g);
}

#[test]
fn partition_per_core() {
    let t = CpuTopology::discover();
    let n = t.cores.len();
    let g = t.partition(n).unwrap();
    assert_eq!(g, (0..n).map(|c| vec![c]).collect::<Vec<_>>());
}

#[test]
fn partition_rejects_zero_and_too_many() {
    let t = CpuTopology::discover();
    assert!(matches!(t.partition(0), Err(TopologyError::ZeroGroups)));
    let n = t.cores.len();
    let e = t.partition(n + 1).unwrap_err();
    assert!(matches!(e, TopologyError::TooManyGroups { .. }));
    assert!(e.to_string().contains(&format!("{n} cores")), "{e}");
}

#[test]
fn partition_synthetic_numa() {
    // 2 nodes x 4 cores.
    let t = synthetic(&[4, 4]);
    assert_eq!(t.partition(1).unwrap(), vec![(0..8).collect::<Vec<_>>()]);
    assert_eq!(
        t.partition(2).unwrap(),
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]
    );
    let g3 = t.partition(3).unwrap();
    check_cover(&t, &g3);
    assert_eq!(g3.len(), 3);
    for n in 2..=8 {
        let g = t.partition(n).unwrap();
        assert_eq!(g.len(), n);
        check_cover(&t, &g);
        for grp in &g {
            let node = node_of(&t, grp[0]);
            assert!(grp.iter().all(|&c| node_of(&t, c) == node), "n={n} {g:?}");
        }
        // Within a node, groups are as even as possible; across nodes
        // too when `n` is a multiple of the node count (with n = 3, one
        // node necessarily gets 2 groups of 2 and the other 1 of 4).
        for node in 0..2 {
            let sizes: Vec<usize> = g
                .iter()
                .filter(|grp| node_of(&t, grp[0]) == Some(node))
                .map(Vec::len)
                .collect();
            let (mn, mx) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(mx - mn <= 1, "n={n} {g:?}");
        }
        if n % 2 == 0 {
            let (mn, mx) = (
                g.iter().map(Vec::len).min().unwrap(),
                g.iter().map(Vec::len).max().unwrap(),
            );
            assert!(mx - mn <= 1, "n={n} {g:?}");
        }
    }
    assert_eq!(
        t.partition(3).unwrap(),
        vec![vec![0, 1], vec![2, 3], vec![4, 5, 6, 7]]
    );
    // 4 nodes of unequal size, fewer groups than nodes: nodes unsplit.
    let t = synthetic(&[2, 6, 2, 2]);
    for n in 1..=4 {
        let g = t.partition(n).unwrap();
        assert_eq!(g.len(), n);
        check_cover(&t, &g);
        for node in &t.numa_nodes {
            let holders: Vec<usize> = (0..g.len())
                .filter(|&i| g[i].iter().any(|c| node.cores.contains(c)))
                .collect();
            assert_eq!(
                holders.len(),
                1,
                "node {} split: n={n} {g:?}",
                node.os_index
            );
        }
    }
    assert_eq!(
        t.partition(2).unwrap(),
        vec![vec![0, 1, 2, 3, 4, 5, 6, 7], vec![8, 9, 10, 11]]
    );
    // More groups than nodes: the big node takes the extra groups.
    let g = t.partition(6).unwrap();
    check_cover(&t, &g);
    assert_eq!(
        g.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 2, 2, 2, 2]
    );
}

#[test]
fn pus_and_summary() {
    let t = synthetic(&[2, 2]);
    assert_eq!(t.pus_of(&[1, 2], true), vec![1, 2]);
    assert_eq!(t.pus_of(&[1], false), vec![1, 1001]);
    assert_eq!(t.pus_of(&[99], false), Vec::<usize>::new());
    let s = t.summary();
    assert!(
        s.contains("package 0: 2 cores, 4 threads (test cpu)"),
        "{s}"
    );
    assert!(s.contains("NUMA node 1: 1 GiB, cores 2-3"), "{s}");
    assert!(s.contains("L3 32 MiB"), "{s}");
    assert!(s.contains("simd: avx2"), "{s}");
    assert_eq!(fmt_ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
    assert_eq!(fmt_bytes(24_683_656 * 1024), "23.5 GiB");
}

#[test]
fn bind_first_core_and_read_back() {
    let t = CpuTopology::discover();
    let pus = t.pus_of(&[0], true);
    assert_eq!(pus.len(), 1);
    // Bind a fresh thread, so the test harness thread stays unbound.
    std::thread::spawn(move || {
        bind_current_thread(&pus).expect("binding should work on this machine");
        assert_eq!(current_thread_pus().unwrap(), pus);
        // Cross-check with the kernel's view.
        let tid = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
            .expect("/proc/thread-self");
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string();
        assert_eq!(allowed, pus[0].to_string());
    })
    .join()
    .unwrap();
}

#[test]
fn bind_rejects_bad_input() {
    assert!(matches!(
        bind_current_thread(&[]),
        Err(TopologyError::EmptyPuSet)
    ));
    std::thread::spawn(|| {
        assert!(matches!(
            bind_current_thread(&[usize::MAX]),
            Err(TopologyError::UnknownPu { .. })
        ));
        assert!(matches!(
            bind_current_thread(&[100_000]),
            Err(TopologyError::UnknownPu { pu: 100_000 })
        ));
    })
    .join()
    .unwrap();
}
