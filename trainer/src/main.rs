//! The `ddis` binary: parses the command line (usage errors as clap words
//! them) and reports run-time errors on one line.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`ddis inspect A
    // | head`) would panic; restore the default: the process ends quietly.
    // SAFETY: called first thing, before any other thread exists.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    ddis_trainer::train::backend::keep_freed_memory();
    let cli = match ddis_trainer::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print as clap formats them.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // A usage error: clap's own message names the option and keeps its
        // "did you mean" hint and the usage line.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    match ddis_trainer::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the whole context chain on one line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
