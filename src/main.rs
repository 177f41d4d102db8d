//! The `hetflow` command line; see `hetflow --help` and the README.
mod cli;

/// Large buffers aligned for the kernels (`hetflow_ops::alloc`).
#[global_allocator]
static ALLOC: hetflow::AlignedAlloc = hetflow::AlignedAlloc;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
