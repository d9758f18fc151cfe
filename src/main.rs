//! The `cutout` binary: parse the command line, run one command, map the
//! outcome to an exit status (documented in README.md). Nothing else lives here.

use clap::Parser;

fn main() {
    let cli = cutout::cli::Cli::parse();
    let code = cutout::commands::run(cli);
    std::process::exit(code);
}
