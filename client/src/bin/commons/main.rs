//! `commons`: the command line of Commons for DAO members and marketplace
//! operators. Every read is verified against the validator set the home
//! directory trusts (see the `commons_client` crate docs); `--no-verify`
//! turns that off for debugging and says so loudly.

mod cli;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A client error's message is complete (its source is part of
            // it); other errors show their whole context chain.
            let code = match e.downcast_ref::<commons_client::ClientError>() {
                Some(c) => {
                    eprintln!("error: {c}");
                    c.exit_code()
                }
                None => {
                    eprintln!("error: {e:#}");
                    1
                }
            };
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}
