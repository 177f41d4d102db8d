//! ONNX model loading from memory and what `hetflow run`/`plan` do with the
//! graph before any device is involved: decode, import, shape/dtype
//! inference with constant folding (`load_model_bytes`), the load-time
//! rewrites (`optimize`, as `Model::load` applies them), the CPU-only
//! residual fusion (`SessionBuilder::graph_for`), the cost model at batch 1
//! (`GraphCosts::new`, which the planners and `hetflow plan` use) and the
//! single-device plan with its check.
#![no_main]

use hetflow_scheduler::cost::GraphCosts;
use hetflow_scheduler::Plan;

#[global_allocator]
static ALLOC: hetflow_fuzz::CappedAlloc = hetflow_fuzz::CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(mut g) = hetflow_ops::onnx::load_model_bytes(data, None) else {
        return;
    };
    hetflow_ops::optimize::optimize(&mut g);
    let mut fused = g.clone();
    hetflow_ops::optimize::fuse_residual(&mut fused);
    hetflow_ops::optimize::fuse_gemm_activations(&mut fused);
    for g in [&g, &fused] {
        let _ = GraphCosts::new(g, 1);
        let plan = Plan::single_device(g, "cpu:0");
        plan.validate(g)
            .expect("the single-device plan of a loaded graph is valid");
    }
});
