use super::*;
use crate::dag::TaskGraph;
use crate::heft;
use crate::plan::Schedule;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + a.abs().max(b.abs()))
}

/// `p` stages of two units each (time `t / 2` each, so a stage takes `t`),
/// free links, `bytes` per value.
fn pipeline(p: usize, m: usize, t: f64, bytes: f64, schedule: Schedule) -> Workload {
    let devices = (0..p).map(|i| format!("d{i}")).collect();
    let mut w = Workload::new(devices, "", 1.0);
    let mut prev: Option<usize> = None;
    for s in 0..p {
        let a = w.add_unit(&format!("s{s}a"), "task", s, t / 2.0);
        let b = w.add_unit(&format!("s{s}b"), "task", s, t / 2.0);
        if let Some(x) = prev {
            w.add_value(&format!("v{x}"), x, vec![a], bytes, Some(0.0));
        }
        w.add_value(&format!("v{a}"), a, vec![b], bytes, Some(0.0));
        w.stages.push(vec![a, b]);
        prev = Some(b);
    }
    w.microbatches = m;
    w.schedule = schedule;
    w
}

#[test]
fn topcuoglu_schedules_are_reproduced_exactly() {
    let g = TaskGraph::from_json(heft::tests::TOPCUOGLU, None).unwrap();
    for (name, want) in [("heft", 80.0), ("cpop", 86.0)] {
        let s = heft::by_name(name).unwrap()(&g).unwrap();
        let r = simulate(&Workload::from_task_graph(&g, &s).unwrap()).unwrap();
        assert_eq!(r.makespan, want, "{name}");
        // The critical path ends at the makespan and starts at 0.
        let cp = &r.critical_path;
        assert_eq!(cp.last().unwrap().finish, want);
        assert_eq!(cp.first().unwrap().start, 0.0);
    }
    // Every other scheduler: the simulator never beats the schedule it was
    // given and never misses it (list schedules are left-justified).
    for name in heft::SCHEDULERS {
        let s = heft::by_name(name).unwrap()(&g).unwrap();
        let r = simulate(&Workload::from_task_graph(&g, &s).unwrap()).unwrap();
        assert!(
            r.makespan <= s.makespan + 1e-9,
            "{name}: {} > {}",
            r.makespan,
            s.makespan
        );
    }
}

#[test]
fn gpipe_and_1f1b_give_the_textbook_bubble() {
    for (p, m) in [(4, 8), (2, 1), (3, 5), (8, 32)] {
        for sched in [Schedule::Gpipe, Schedule::OneFOneB] {
            let r = simulate(&pipeline(p, m, 1.0, 0.0, sched)).unwrap();
            let want = (p - 1) as f64 / (m + p - 1) as f64;
            assert!(
                close(r.bubble_frac, want),
                "{sched:?} p={p} m={m}: {} vs {want}",
                r.bubble_frac
            );
            // Forward 1 + backward 2 per stage and micro-batch.
            assert!(
                close(r.makespan, 3.0 * (m + p - 1) as f64),
                "{sched:?}: {}",
                r.makespan
            );
            for d in &r.devices {
                assert!(close(d.busy, 3.0 * m as f64));
            }
        }
    }
}

#[test]
fn one_f_one_b_stashes_fewer_activations() {
    let (p, m) = (4, 16);
    let g = simulate(&pipeline(p, m, 1.0, 100.0, Schedule::Gpipe)).unwrap();
    let o = simulate(&pipeline(p, m, 1.0, 100.0, Schedule::OneFOneB)).unwrap();
    // Stage 0 keeps one activation (inside the stage) per micro-batch in
    // flight, all m under GPipe, at most p under 1F1B, plus the one it is
    // sending.
    assert_eq!(g.devices[0].peak_memory, 100.0 * (m + 1) as f64);
    assert!(
        o.devices[0].peak_memory <= 100.0 * (p + 1) as f64,
        "{}",
        o.devices[0].peak_memory
    );
}

#[test]
fn streaming_pipeline_and_credits() {
    // Two stages of 1 unit time on two devices, free links: m + p - 1.
    let mut w = pipeline(2, 6, 1.0, 8.0, Schedule::Streaming);
    w.stages.clear();
    let r = simulate(&w).unwrap();
    assert!(close(r.makespan, 7.0), "{}", r.makespan);
    assert!(close(r.throughput, 6.0 / 7.0));
    // Memory bounded by credits: each device holds at most `credits`
    // buffers of its local value at once.
    assert!(r.devices[0].peak_memory <= 8.0 * 2.0 + 8.0 * 2.0);
}

#[test]
fn credits_bound_micro_batches_in_flight() {
    // P (1) -> delay 3 -> C (1). With 2+ credits the transfers overlap and
    // P runs back to back: m + 3 + 1. With one credit P must wait for each
    // transfer and C to hand the buffer back: a period of 4.
    let mut w = Workload::new(vec!["a".into(), "b".into()], "", 1.0);
    let p = w.add_unit("P", "task", 0, 1.0);
    let c = w.add_unit("C", "task", 1, 1.0);
    w.add_value("x", p, vec![c], 0.0, Some(3.0));
    w.microbatches = 6;
    w.credits = 4;
    assert!(close(simulate(&w).unwrap().makespan, 10.0));
    w.credits = 1;
    let r = simulate(&w).unwrap();
    assert!(close(r.makespan, 4.0 * 5.0 + 5.0), "{}", r.makespan);
}

fn two_link_workload(shared: bool) -> Workload {
    // Devices a, b, c; a sends one value to b and one to c at the same time.
    let mut w = Workload::new(vec!["a".into(), "b".into(), "c".into()], "s", 1e6);
    let src = w.add_unit("src", "task", 0, 0.0);
    let rb = w.add_unit("rb", "task", 1, 0.0);
    let rc = w.add_unit("rc", "task", 2, 0.0);
    w.add_value("x", src, vec![rb], 100.0, None);
    w.add_value("y", src, vec![rc], 100.0, None);
    let l = LinkInfo {
        latency: 1.0,
        per_byte: 0.1,
        shared: if shared { Some(0) } else { None },
    };
    w.links = vec![l; 9];
    w
}

#[test]
fn shared_links_split_bandwidth() {
    // Own links: each copy takes latency 1 + 100 * 0.1 = 11.
    let r = simulate(&two_link_workload(false)).unwrap();
    assert!(close(r.makespan, 11.0), "{}", r.makespan);
    // One shared link: both transfers progress at half rate: 1 + 20.
    let r = simulate(&two_link_workload(true)).unwrap();
    assert!(close(r.makespan, 21.0), "{}", r.makespan);
    let copies: Vec<&SimEvent> = r.events.iter().filter(|e| e.cat == "copy").collect();
    assert_eq!(copies.len(), 2);
    assert!(copies.iter().all(|e| close(e.dur, 21.0)));
}

#[test]
fn inbound_copies_share_one_copy_queue() {
    // Two values to the same device: its one inbound copy engine runs them
    // one after the other (11 + 11).
    let mut w = two_link_workload(false);
    w.units[2].device = 1;
    let r = simulate(&w).unwrap();
    assert!(close(r.makespan, 22.0), "{}", r.makespan);
    assert!(close(r.devices[1].copy_busy, 22.0));
    let cp = &r.critical_path;
    assert_eq!(cp.last().unwrap().finish, r.makespan);
    assert!(cp.iter().any(|s| s.waited_for == "queue"), "{cp:?}");
}

#[test]
fn bad_workloads_are_named() {
    let mut w = pipeline(2, 1, 1.0, 0.0, Schedule::Streaming);
    w.units[1].device = 7;
    let e = simulate(&w).unwrap_err().to_string();
    assert!(e.contains("s0b") && e.contains("#7"), "{e}");
    let mut w = two_link_workload(false);
    w.links.clear();
    let e = simulate(&w).unwrap_err().to_string();
    assert!(e.contains("'x'") && e.contains("no links"), "{e}");
    let mut w = pipeline(2, 1, 1.0, 0.0, Schedule::Gpipe);
    w.stages.clear();
    let e = simulate(&w).unwrap_err().to_string();
    assert!(e.contains("stages"), "{e}");
}

#[test]
fn renders_trace_and_svg() {
    let r = simulate(&pipeline(3, 4, 1.0, 8.0, Schedule::OneFOneB)).unwrap();
    let j: serde_json::Value = serde_json::from_str(&chrome_trace_json(&r)).unwrap();
    let evs = j["traceEvents"].as_array().unwrap();
    let kernels = evs
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == "kernel")
        .count();
    assert_eq!(kernels, 3 * 2 * 4 * 2);
    let svg = svg_gantt(&r);
    assert!(svg.starts_with("<svg") && svg.contains("#59a14f") && svg.contains("d2 compute"));
}

#[test]
fn compute_queues_run_the_oldest_micro_batch_first() {
    // One device, A -> B, two micro-batches, two credits: A of micro-batch
    // 1 is ready from the start, B of micro-batch 0 only after A of 0. The
    // runtime's ready queue runs B(0) before A(1) (oldest micro-batch
    // first); first-come first-served would run A(1) first.
    let mut w = Workload::new(vec!["d0".into()], "", 1.0);
    let a = w.add_unit("a", "task", 0, 1.0);
    let b = w.add_unit("b", "task", 0, 1.0);
    w.add_value("va", a, vec![b], 0.0, None);
    w.microbatches = 2;
    w.credits = 2;
    let r = simulate(&w).unwrap();
    let b0 = r
        .events
        .iter()
        .find(|e| e.name == "b" && e.mb == 0)
        .unwrap();
    assert_eq!(b0.start, 1.0, "{:?}", r.events);
    assert_eq!(r.makespan, 4.0);
}

#[test]
fn a_replicated_stage_takes_alternate_micro_batches() {
    // d0 (1 per micro-batch) feeds d1 (3 per micro-batch); the replica
    // gives d1's stage to d2 for odd micro-batches, d0's stage is shared.
    let build = |replicate: bool| {
        let mut w = Workload::new(vec!["d0".into(), "d1".into(), "d2".into()], "", 1.0);
        let a = w.add_unit("a", "task", 0, 1.0);
        let b = w.add_unit("b", "task", 1, 3.0);
        w.add_value("va", a, vec![b], 0.0, Some(0.0));
        w.microbatches = 8;
        if replicate {
            w.copies = vec![vec![0, 1, 2], vec![0, 2, 2]];
            w.copy_times = vec![vec![1.0, 3.0]];
        }
        w
    };
    assert_eq!(simulate(&build(false)).unwrap().makespan, 25.0);
    let r = simulate(&build(true)).unwrap();
    // Hand schedule: d1 runs micro-batches 0, 2, 4, 6 over [1, 13], d2
    // runs 1, 3, 5, 7 over [2, 14]; credits (2 per copy) hold d0's
    // micro-batches 6 and 7 until d1/d2 finish 2 and 3.
    assert_eq!(r.makespan, 14.0, "{:?}", r.events);
    for e in r.events.iter().filter(|e| e.name == "b") {
        assert_eq!(e.device, if e.mb % 2 == 0 { 1 } else { 2 }, "{e:?}");
    }
    assert_eq!(r.devices[0].busy, 8.0);
}

#[test]
fn kernels_slow_down_while_another_device_of_the_host_computes() {
    // Two independent chains on two devices of one host: a device's
    // kernels progress at 1 / factor while the other device computes.
    let mut w = Workload::new(vec!["d0".into(), "d1".into()], "", 1.0);
    let a = w.add_unit("a", "task", 0, 2.0);
    let b = w.add_unit("b", "task", 0, 2.0);
    w.add_value("va", a, vec![b], 0.0, None);
    w.add_unit("c", "task", 1, 5.0);
    let alone = simulate(&w).unwrap().makespan;
    assert_eq!(alone, 5.0);
    w.hosts = vec![(0, 1.5), (0, 1.0)];
    let r = simulate(&w).unwrap();
    // a runs at 2/3 speed while c runs: ends at 3. b does 4/3 of its 2 by
    // 5 (c ends), the remaining 2/3 at full speed: ends at 17/3.
    assert!((r.makespan - 17.0 / 3.0).abs() < 1e-12, "{:?}", r.events);
    // c alone on d1 is slowed too when its factor is 2: c runs at 1/2
    // while a and b run, and at full speed after b.
    w.hosts = vec![(0, 1.0), (0, 2.0)];
    let r = simulate(&w).unwrap();
    // d0 busy 0..4 (a, b at full speed); c does 2 of its 5 by 4, then 3.
    assert!((r.makespan - 7.0).abs() < 1e-12, "{:?}", r.events);
    // On different hosts nothing changes.
    w.hosts = vec![(0, 1.5), (1, 1.0)];
    assert_eq!(simulate(&w).unwrap().makespan, 5.0);
}

#[test]
fn a_device_without_a_copy_engine_runs_its_copies_in_its_compute_queue() {
    // On device a: P (1) feeds C on b through a copy of latency 1; Q (3),
    // independent, is ready from the start. With a copy engine the copy
    // runs at once beside Q: P 0-1, copy 1-2, C 2-3, Q 1-4: makespan 4.
    // Without one (an OpenCL CPU device) the copy is submitted after Q and
    // waits for it: copy 4-5, C 5-6.
    let mut w = Workload::new(vec!["a".into(), "b".into()], "s", 1e6);
    let p = w.add_unit("P", "task", 0, 1.0);
    let _q = w.add_unit("Q", "task", 0, 3.0);
    let c = w.add_unit("C", "task", 1, 1.0);
    w.add_value("x", p, vec![c], 0.0, None);
    let l = LinkInfo {
        latency: 1.0,
        per_byte: 0.0,
        shared: None,
    };
    w.links = vec![l; 4];
    let r = simulate(&w).unwrap();
    assert!(close(r.makespan, 4.0), "{}", r.makespan);
    w.shared_copy = vec![true, false];
    let r = simulate(&w).unwrap();
    assert!(close(r.makespan, 6.0), "{}", r.makespan);
    let copy = r.events.iter().find(|e| e.cat == "copy").unwrap();
    assert!(close(copy.start, 4.0), "{}", copy.start);
    // With contention factors the engine runs kernels (and such copies)
    // at rates; devices on different hosts never slow each other.
    w.hosts = vec![(0, 2.0), (1, 2.0)];
    assert!(close(simulate(&w).unwrap().makespan, 6.0));
}

#[test]
fn a_device_finishes_a_micro_batch_before_starting_the_next() {
    // a -> b -> c on d0, then d on d1; three micro-batches. When a kernel
    // ends, its successor and the next micro-batch's first kernel become
    // ready together; the runtime hands outputs on first, so d0 runs
    // a0 b0 c0 a1 b1 c1 a2 b2 c2 and d1 starts at 3, not after the
    // micro-batches have been interleaved.
    let mut w = Workload::new(vec!["d0".into(), "d1".into()], "", 1.0);
    let a = w.add_unit("a", "task", 0, 1.0);
    let b = w.add_unit("b", "task", 0, 1.0);
    let c = w.add_unit("c", "task", 0, 1.0);
    let d = w.add_unit("d", "task", 1, 1.0);
    w.add_value("va", a, vec![b], 0.0, None);
    w.add_value("vb", b, vec![c], 0.0, None);
    w.add_value("vc", c, vec![d], 0.0, Some(0.0));
    w.microbatches = 3;
    w.credits = 3;
    let r = simulate(&w).unwrap();
    let mut on0: Vec<(f64, String)> = r
        .events
        .iter()
        .filter(|e| e.device == 0 && e.cat == "kernel")
        .map(|e| (e.start, format!("{}{}", e.name, e.mb)))
        .collect();
    on0.sort_by(|x, y| x.0.total_cmp(&y.0));
    let order: Vec<&str> = on0.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(
        order,
        ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]
    );
    let d0 = r
        .events
        .iter()
        .find(|e| e.name == "d" && e.mb == 0)
        .unwrap();
    assert_eq!(d0.start, 3.0);
    assert_eq!(r.makespan, 10.0);
}

/// A plan across hosts reads its inputs at the root and returns its
/// outputs there: with every node on the non-root device, one micro-batch
/// takes the input's transfer, the compute and the output's transfer, in
/// that order (closed form from the link: latency + bytes / bandwidth);
/// with every node on the root's device nothing crosses and no io device
/// is added.
#[test]
fn inputs_and_outputs_of_a_remote_stage_cross_from_and_to_the_root() {
    use crate::cost::{CostModel, GraphCosts};
    let g = crate::partition::tests::wide_input(2);
    let costs = GraphCosts::new(&g, 64);
    let c = crate::partition::tests::two_hosts(true);
    let m = CostModel::new(&c);
    let n = g.nodes.len();
    let names = vec!["rank0/cpu:0".to_string(), "rank1/cpu:0".to_string()];
    let remote = crate::Plan::from_placement(&g, names.clone(), vec![1; n]);
    let w = Workload::from_plan(&g, &remote, &costs, &c).unwrap();
    assert_eq!(w.devices.len(), 3, "{:?}", w.devices);
    assert_eq!(w.devices[2], "rank0 io");
    let r = simulate(&w).unwrap();
    let compute: f64 = (0..n).map(|i| m.op_time(1, &costs.nodes[i])).sum();
    let t_in = 50e-6 + (64.0 * 4096.0 * 4.0) / 0.05e9;
    let t_out = 50e-6 + (64.0 * 64.0 * 4.0) / 0.05e9;
    let want = (t_in + compute + t_out) * 1e3;
    assert!(
        (r.makespan - want).abs() <= 1e-9 * want,
        "{} vs {want}",
        r.makespan
    );
    let local = crate::Plan::from_placement(&g, names, vec![0; n]);
    let w = Workload::from_plan(&g, &local, &costs, &c).unwrap();
    assert_eq!(w.devices.len(), 2);
    let r = simulate(&w).unwrap();
    let compute0: f64 = (0..n).map(|i| m.op_time(0, &costs.nodes[i])).sum();
    assert!(
        close(r.makespan, compute0 * 1e3),
        "{} vs {}",
        r.makespan,
        compute0 * 1e3
    );
}
