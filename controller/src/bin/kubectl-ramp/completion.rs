//! `completion bash|zsh|fish`: a shell completion script for `kubectl-ramp` on standard output.
//!
//! ```text
//! kubectl ramp completion bash > /etc/bash_completion.d/kubectl-ramp
//! kubectl ramp completion zsh > "${fpath[1]}/_kubectl-ramp"
//! kubectl ramp completion fish > ~/.config/fish/completions/kubectl-ramp.fish
//! ```

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Command, ValueEnum};
use clap_complete::Shell;

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: ShellName,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ShellName {
    Bash,
    Zsh,
    Fish,
}

/// Writes the script for `command` (the plugin's whole command tree).
pub fn run(args: CompletionArgs, mut command: Command) -> ExitCode {
    let shell = match args.shell {
        ShellName::Bash => Shell::Bash,
        ShellName::Zsh => Shell::Zsh,
        ShellName::Fish => Shell::Fish,
    };
    // The script completes the binary as installed on PATH (kubectl finds plugins there).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "kubectl-ramp", &mut script);
    match std::io::stdout().write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`| head`) is not an error.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: writing the completion script: {error}");
            ExitCode::FAILURE
        }
    }
}
