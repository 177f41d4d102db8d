//! CLI (contract in DESIGN.md): `devices`, `run`, `bench`, `profile`, `plan`, `simulate`,
//! `launch`, `train`. Errors print one
//! line on stderr and exit with status 2; a panic would be a bug.

mod bench;
mod cluster;
mod devices;
mod inputs;
mod launch;
mod plan;
mod profile;
mod run;
mod simulate;
mod simulate_gpt;
mod train;
mod train_job;

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
    /// Measure this machine's devices and links; write a cluster spec.
    Profile(profile::Args),
    /// Place a model on a cluster; print the stages, write the plan JSON.
    Plan(plan::Args),
    /// Predict a plan, model or research DAG with the discrete-event simulator.
    Simulate(Box<simulate::Args>),
    /// Run `run` or `bench` as one job over several hosts (mpirun/srun).
    Launch(launch::Args),
    /// Train a model's weights on a dataset; the last line is
    /// `loss=<float> accuracy=<float>`.
    Train(Box<train::Args>),
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
        Command::Run(a) => cluster::job(|hub| run::main(a, hub)),
        Command::Bench(a) => cluster::job(|hub| bench::main(a, hub)),
        Command::Profile(a) => cluster::job(|hub| profile::main(a, hub)),
        Command::Plan(a) => plan::main(a),
        Command::Simulate(a) => simulate::main(*a),
        Command::Launch(a) => launch::main(a),
        Command::Train(a) => train::main(*a),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            let msg = hetflow::escape_controls(&format!("{e:#}").replace('\n', " "));
            eprintln!("error: {msg}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks (duplicate flags, conflicts naming
    /// unknown arguments), which otherwise run only in debug builds.
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
