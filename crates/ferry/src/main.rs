//! The `ferry` binary: `ferry server` starts the server; the other subcommands are the CLI,
//! which talks to a server through its REST API.
//!
//! Architecture invariant: only this crate knows the command line.

mod agent_cmd;
mod agents;
mod cli;
mod server;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: self-hosted deployment automation (Octopus Deploy compatible API)"
)]
struct Cli {
    #[command(flatten)]
    conn: cli::ConnArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Ferry server (REST API, task worker, built-in worker).
    Server(server::ServerArgs),
    /// Run and manage a Ferry agent on a deployment target.
    #[command(subcommand)]
    Agent(agent_cmd::AgentCommand),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() {
    let args = Cli::parse();
    let code = match args.command {
        Command::Server(a) => server::main(a),
        Command::Agent(c) => agent_cmd::main(args.conn, c),
        Command::Client(c) => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: could not start the async runtime: {e}");
                    std::process::exit(1);
                }
            };
            rt.block_on(cli::run(args.conn, c))
        }
    };
    std::process::exit(code);
}
