//! The subcommands, one file each; main.rs parses the command line and
//! dispatches here. Shared by `read` and `live`: the output options
//! ([`output`]), the final summary ([`summary`]) and the exit status.

pub mod ace_collect;
pub mod config;
pub mod gen;
pub mod live;
pub mod man;
pub mod output;
pub mod read;
mod summary;

use mailtap_engine::{EngineError, Summary};

/// Exit statuses (docs/operations.md#exit-status).
pub const EXIT_OK: i32 = 0;
/// An input, output or capture error (the logs hold what came before).
pub const EXIT_ERROR: i32 = 1;
/// Bad command line or configuration: nothing was read.
pub const EXIT_USAGE: i32 = 2;
/// `mailtap read` stopped by SIGINT/SIGTERM before the end of its input.
pub const EXIT_INTERRUPTED: i32 = 3;
/// A thread panicked: a bug (the logs hold what the other threads wrote).
pub const EXIT_PANIC: i32 = 4;

/// The exit status of a run that ended with `result`: an error also when
/// a sink stopped or a file output met write errors (records were lost or
/// only written late).
pub fn exit_code(result: &Result<(), EngineError>, summary: &Summary) -> i32 {
    match result {
        Err(EngineError::Panic(_)) => EXIT_PANIC,
        Err(_) => EXIT_ERROR,
        Ok(()) if !summary.sink_errors.is_empty() => EXIT_ERROR,
        Ok(()) if summary.failed_outputs().next().is_some() => EXIT_ERROR,
        Ok(()) => EXIT_OK,
    }
}
