//! The `hetflow` command line; see `hetflow --help` and the README.
mod cli;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
