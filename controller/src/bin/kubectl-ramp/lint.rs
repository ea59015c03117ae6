//! `kubectl ramp lint -f FILE…`: one line per problem (`FILE:LINE: PATH: message`), then a
//! summary. Exit status 0 when every document is valid, 1 when one is not, 2 for usage and
//! I/O errors.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ramp_controller::lint::Report;

#[derive(Args)]
pub struct LintArgs {
    /// Manifest files or directories to check (`-` reads standard input); repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// Look into subdirectories of the directories given.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

pub fn run(args: LintArgs) -> ExitCode {
    let mut report = Report::default();
    for input in &args.files {
        let result = if input == Path::new("-") {
            read_stdin().map(|text| report.add_file("-", &text))
        } else {
            manifest_files(input, args.recursive).and_then(|files| {
                for file in files {
                    let text = std::fs::read(&file)
                        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                    match String::from_utf8(text) {
                        Ok(text) => report.add_file(&file.display().to_string(), &text),
                        Err(e) => {
                            return Err(format!(
                                "{}: not UTF-8 text (invalid byte at offset {})",
                                file.display(),
                                e.utf8_error().valid_up_to()
                            ));
                        }
                    }
                }
                Ok(())
            })
        };
        if let Err(message) = result {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    }
    match args.output {
        Output::Text => {
            for problem in &report.problems {
                println!("{problem}");
            }
            println!("{}", report.summary());
        }
        Output::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    }
    if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn read_stdin() -> Result<String, String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(text)
}

/// The files to read for one `-f` argument: the file itself, or the YAML and JSON files of a
/// directory (sorted; with `recursive`, of its subdirectories too).
fn manifest_files(path: &Path, recursive: bool) -> Result<Vec<PathBuf>, String> {
    let metadata =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let path = entry.path();
            if path.is_dir() {
                if recursive {
                    dirs.push(path);
                }
            } else if path
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
