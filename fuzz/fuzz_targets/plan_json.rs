//! Plan JSON (`hetflow run --plan`, `simulate --plan`) and the task-graph
//! JSON of `hetflow simulate --dag`. A plan that parses is checked against
//! a small fixed graph (`fuzz/data/plan_graph.onnx`) as `run` checks it
//! against the model; a DAG that parses is scheduled with HEFT and the
//! schedule checked, as `simulate --dag` does.
#![no_main]

use hetflow_scheduler::dag::TaskGraph;
use hetflow_scheduler::Plan;
use std::sync::OnceLock;

#[global_allocator]
static ALLOC: hetflow_fuzz::CappedAlloc = hetflow_fuzz::CappedAlloc;

fn graph() -> &'static hetflow_ops::Graph {
    static G: OnceLock<hetflow_ops::Graph> = OnceLock::new();
    G.get_or_init(|| {
        hetflow_ops::onnx::load_model_bytes(include_bytes!("../data/plan_graph.onnx"), None)
            .expect("fuzz/data/plan_graph.onnx loads")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(plan) = Plan::from_json(s) {
        let _ = plan.validate(graph());
        let _ = plan.copies();
        let _ = Plan::from_json(&plan.to_json());
    }
    if let Ok(tg) = TaskGraph::from_json(s, None) {
        if let Ok(sched) = hetflow_scheduler::heft::heft(&tg) {
            if let Err(e) = sched.check(&tg) {
                panic!("HEFT made an invalid schedule: {e}");
            }
        }
    }
});
