//! The device matrix: every foundation model, every light-zoo CNN and
//! every single-op case, each on every device (cpu, cpu:0,cpu:1,
//! opencl:0, tpu:0, cuda:0), from the one list of each
//! (`tests/common`). Models are checked against onnxruntime's references,
//! op cases against float64 evaluations of the ONNX definitions. Test
//! names read `<list>::<device>::<case>` (`foundation::opencl::mlp`); a
//! device that is absent skips its tests with a `SKIP` line on stderr
//! (`tests/common/devices.rs` says what each device must do).

mod common;
use common::devices::{run_fixture, run_op};

mod foundation {
    use super::*;
    foundation_fixtures!(device_tests, run_fixture);
}

mod zoo {
    use super::*;
    zoo_fixtures!(device_tests, run_fixture);
}

mod ops {
    use super::*;
    op_cases!(device_tests, run_op);
}
