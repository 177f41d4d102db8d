//! CLI (contract in DESIGN.md): `devices`, `run`, `bench`. Errors print one
//! line on stderr and exit with status 2; a panic would be a bug.

mod bench;
mod devices;
mod inputs;
mod run;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hetflow",
    version,
    about = "Actor-based dataflow runtime for deep-learning graphs on heterogeneous devices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List devices and the CPU topology; say why absent backends are absent.
    Devices(devices::Args),
    /// Run a model once and write each output as <name>.npy.
    Run(run::Args),
    /// Time a model; the last line is `median_ms=<float>`.
    Bench(bench::Args),
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let r = match cli.command {
        Command::Devices(a) => devices::main(a),
        Command::Run(a) => run::main(a),
        Command::Bench(a) => bench::main(a),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            2
        }
    }
}
