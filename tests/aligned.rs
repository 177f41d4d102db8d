//! Models run under [`hetflow::AlignedAlloc`], the global allocator the
//! `hetflow` binary installs (`hetflow_ops::alloc`): outputs still match
//! onnxruntime's references, large tensors start on a cache line, and memory
//! stays flat over many runs (the pool hands buffers back and forth
//! through the widened layouts).
//!
//! Its own test binary: the allocator is process-wide. Its tests take
//! turns (`TURN`) so that no other test allocates while one measures.

mod common;

use common::{case, check_outputs, read, rss_bytes};
use hetflow::{Model, SessionBuilder, Tensor};
use std::sync::{Arc, Mutex};

static TURN: Mutex<()> = Mutex::new(());

#[global_allocator]
static ALLOC: hetflow::AlignedAlloc = hetflow::AlignedAlloc;

#[test]
fn conv_models_match_references_with_aligned_buffers() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    for name in ["resnet_block", "mobilenet_block", "lenet"] {
        let c = case(name);
        let model = Model::load(&c.model).unwrap_or_else(|e| panic!("{name}: load: {e}"));
        let inputs: Vec<Arc<Tensor>> = c.inputs.iter().map(|(_, f)| Arc::new(read(f))).collect();
        let mut s = SessionBuilder::new(&model)
            .build()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for _ in 0..3 {
            let got = s
                .run(inputs.clone())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            check_outputs(&c, &got, name);
            for (i, t) in got.iter().enumerate() {
                if t.byte_len() < hetflow::ops::alloc::LINE_FROM {
                    continue;
                }
                let p = t.as_slice::<f32>().expect("f32 output").as_ptr() as usize;
                assert_eq!(
                    p % 64,
                    0,
                    "{name}: output {i} ({} bytes) at {p:#x}",
                    t.byte_len()
                );
            }
        }
    }
}

#[test]
fn memory_stays_flat_over_runs() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let c = case("resnet_block");
    let model = Model::load(&c.model).expect("load");
    let inputs: Vec<Arc<Tensor>> = c.inputs.iter().map(|(_, f)| Arc::new(read(f))).collect();
    let mut s = SessionBuilder::new(&model).build().expect("session");
    for _ in 0..50 {
        s.run(inputs.clone()).expect("run");
    }
    let before = rss_bytes();
    for _ in 0..2000 {
        s.run(inputs.clone()).expect("run");
    }
    let grown = rss_bytes().saturating_sub(before);
    // One leaked output per run would be 2,000 x 32 KB.
    assert!(
        grown < 16 << 20,
        "RSS grew by {} KB over 2,000 runs",
        grown / 1024
    );
}
