//! The `wharf` binary: command-line interface and wiring of the library crates.
//!
//! Each subcommand lives in its own module with its own `Args` and `run`.

mod config;
mod serve;

use clap::{Parser, Subcommand};

/// Wharf, a Kubernetes-native container image registry.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the registry server.
    Serve(serve::ServeArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => serve::run(args),
    }
}
