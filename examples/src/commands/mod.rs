//! One module per subcommand.

pub mod analyze;
pub mod frames;
pub mod probe;
pub mod quantize;
pub mod serve;
pub mod storyboard;
pub mod thumbnail;

use std::process::ExitCode;

use crate::cli::Command;
use crate::failure::Failure;

/// Runs `command`; `Err` is a failure to report on stderr.
pub fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Analyze(args) => analyze::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Frames(args) => frames::run(args),
        Command::Thumbnail(args) => thumbnail::run(args),
        Command::Storyboard(args) => storyboard::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Serve(args) => serve::run(args),
    }
}
