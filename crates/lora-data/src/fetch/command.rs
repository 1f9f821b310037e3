//! Running the package tool (npm, pip) that downloads an archive.

use super::error::FetchError;
use std::io;
use std::process::Command;

/// Runs `program args…`, capturing its output.
///
/// Errors: [`FetchError::CommandMissing`] if the program cannot be found,
/// [`FetchError::CommandFailed`] (with the last 20 lines of stderr) on a non-zero exit.
pub fn run_command(program: &str, args: &[&str], what: &str) -> Result<(), FetchError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                FetchError::CommandMissing {
                    program: program.to_string(),
                    what: what.to_string(),
                    source,
                    manual: String::new(),
                }
            } else {
                FetchError::CommandFailed {
                    command: command.clone(),
                    status: format!("could not start: {source}"),
                    stderr_tail: String::new(),
                    manual: String::new(),
                }
            }
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    Err(FetchError::CommandFailed {
        command,
        status: out.status.to_string(),
        stderr_tail: tail,
        manual: String::new(),
    })
}
