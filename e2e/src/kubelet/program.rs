//! What a container's command would do, as far as the simulator can tell without running it.
//!
//! Recognised (after `command` and `args` are joined into one argv):
//! - `sleep N…` (GNU forms: `5`, `0.5`, `2s`, `1m`, `1h`, `1d`; several add up; `infinity`):
//!   exits 0 after that long;
//! - `true`, `false`, `echo …`, `printf …`, `exit [N]`: end at once with 0, 1, 0, 0, N;
//! - `sh|bash|ash|dash -c SCRIPT` (also `-ec`, `-xc`, …): the script is read as a sequence of the
//!   above joined by `;`, newlines, `&&` and `||`, plus `set …`, `:` and `exec CMD`; it ends
//!   like a shell would (the status of the last command, or `exit`; `set -e` stops at the first
//!   failure).
//!
//! Anything else — no command (the image's entrypoint), a server binary, a script with loops,
//! variables, pipes or background jobs — is taken to run until the pod is deleted.

use std::time::Duration;

/// The simulated behaviour of one container process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Program {
    /// Keeps running until the pod is deleted.
    RunsForever,
    /// Ends with `code` after running for `after`.
    Exits { after: Duration, code: i32 },
}

/// The program `command` + `args` would run, after the kubelet's `$(VAR)` expansion with the
/// container's `env` (name, value).
pub fn program_of(command: &[String], args: &[String], env: &[(String, String)]) -> Program {
    let expanded: Vec<String> = command
        .iter()
        .chain(args)
        .map(|word| expand_env(word, env))
        .collect();
    let argv: Vec<&str> = expanded.iter().map(String::as_str).collect();
    run_argv(&argv, Duration::ZERO).map_or(Program::RunsForever, |outcome| outcome.as_program())
}

/// Kubernetes' expansion of `command` and `args`: `$(NAME)` becomes the value of the env var
/// `NAME` when it is defined (and stays as written when not), `$$` becomes `$`, any other `$`
/// is kept.
fn expand_env(word: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Where a command left the simulated shell.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// Finished with a status; the shell continues.
    Status { elapsed: Duration, status: i32 },
    /// `exit N`: the whole process ends.
    Exit { elapsed: Duration, code: i32 },
}

impl Outcome {
    fn as_program(self) -> Program {
        match self {
            Outcome::Status { elapsed, status } => Program::Exits {
                after: elapsed,
                code: status,
            },
            Outcome::Exit { elapsed, code } => Program::Exits {
                after: elapsed,
                code,
            },
        }
    }
}

const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "zsh", "busybox"];

/// Runs one command line; None when it is not understood (so the program runs forever).
fn run_argv(argv: &[&str], elapsed: Duration) -> Option<Outcome> {
    let (&program, rest) = argv.split_first()?;
    let name = program.rsplit('/').next().unwrap_or(program);
    match name {
        "sleep" => {
            let mut total = Duration::ZERO;
            if rest.is_empty() {
                return Some(Outcome::Status { elapsed, status: 1 });
            }
            for arg in rest {
                match parse_sleep(arg) {
                    SleepArg::Finite(duration) => total += duration,
                    SleepArg::Infinity => return None,
                    SleepArg::Invalid => return Some(Outcome::Status { elapsed, status: 1 }),
                }
            }
            Some(Outcome::Status {
                elapsed: elapsed + total,
                status: 0,
            })
        }
        "true" | ":" | "echo" | "printf" => Some(Outcome::Status { elapsed, status: 0 }),
        "false" => Some(Outcome::Status { elapsed, status: 1 }),
        "exit" => match rest {
            [] => Some(Outcome::Exit { elapsed, code: 0 }),
            [code] => code.parse::<i32>().ok().map(|code| Outcome::Exit {
                elapsed,
                code: code & 0xff,
            }),
            _ => None,
        },
        "exec" => run_argv(rest, elapsed),
        shell if SHELLS.contains(&shell) => {
            let rest = if shell == "busybox" {
                rest.strip_prefix(&["sh"])?
            } else {
                rest
            };
            let (flag, script) = (rest.first()?, rest.get(1)?);
            let is_dash_c = flag.starts_with('-') && !flag.starts_with("--") && flag.contains('c');
            if !is_dash_c {
                return None;
            }
            let errexit = flag.contains('e');
            run_script(script, elapsed, errexit)
        }
        _ => None,
    }
}

enum SleepArg {
    Finite(Duration),
    Infinity,
    Invalid,
}

fn parse_sleep(arg: &str) -> SleepArg {
    if arg == "infinity" || arg == "inf" {
        return SleepArg::Infinity;
    }
    let (number, unit) = match arg.char_indices().last() {
        Some((index, c)) if c.is_ascii_alphabetic() => (&arg[..index], &arg[index..]),
        _ => (arg, "s"),
    };
    let factor = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return SleepArg::Invalid,
    };
    match number.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => {
            SleepArg::Finite(Duration::from_secs_f64(value * factor))
        }
        _ => SleepArg::Invalid,
    }
}

/// A token of the small shell subset.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    /// `;` or a newline.
    Separator,
    And,
    Or,
}

/// Splits a script into words and operators; None for anything outside the subset (pipes,
/// background jobs, redirections, expansions, subshells, unterminated quotes).
fn tokenize(script: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = script.chars().peekable();
    let finish = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => finish(&mut word, &mut in_word, &mut tokens),
            ';' | '\n' => {
                finish(&mut word, &mut in_word, &mut tokens);
                tokens.push(Token::Separator);
            }
            '&' if chars.peek() == Some(&'&') => {
                chars.next();
                finish(&mut word, &mut in_word, &mut tokens);
                tokens.push(Token::And);
            }
            '|' if chars.peek() == Some(&'|') => {
                chars.next();
                finish(&mut word, &mut in_word, &mut tokens);
                tokens.push(Token::Or);
            }
            '#' if !in_word => {
                // A comment runs to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        tokens.push(Token::Separator);
                        break;
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '$' | '`' => return None,
                        '\\' => word.push(chars.next()?),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next()? {
                    '\n' => {}
                    c => word.push(c),
                }
            }
            '&' | '|' | '<' | '>' | '$' | '`' | '(' | ')' | '{' | '}' | '*' | '?' | '[' => {
                return None;
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    finish(&mut word, &mut in_word, &mut tokens);
    Some(tokens)
}

/// Runs a script of the subset; None if it leaves the subset.
fn run_script(script: &str, start: Duration, errexit_flag: bool) -> Option<Outcome> {
    let tokens = tokenize(script)?;
    let mut elapsed = start;
    let mut status = 0;
    let mut errexit = errexit_flag;
    // Split into and-or lists at separators, then each list into commands at && / ||.
    for list in tokens.split(|t| *t == Token::Separator) {
        if list.is_empty() {
            continue;
        }
        let mut pending: Option<&Token> = None;
        let mut words: Vec<&str> = Vec::new();
        let mut commands: Vec<(Option<&Token>, Vec<&str>)> = Vec::new();
        for token in list {
            match token {
                Token::Word(word) => words.push(word),
                Token::And | Token::Or => {
                    if words.is_empty() {
                        return None;
                    }
                    commands.push((pending, std::mem::take(&mut words)));
                    pending = Some(token);
                }
                // Split out above.
                Token::Separator => {}
            }
        }
        if words.is_empty() {
            return None;
        }
        commands.push((pending, words));
        let last_index = commands.len() - 1;
        for (index, (operator, argv)) in commands.into_iter().enumerate() {
            let runs = match operator {
                None => true,
                Some(Token::And) => status == 0,
                Some(_) => status != 0,
            };
            if !runs {
                continue;
            }
            if argv[0] == "set" {
                errexit |= argv[1..]
                    .iter()
                    .any(|a| a.starts_with('-') && a.contains('e'));
                status = 0;
                continue;
            }
            match run_argv(&argv, elapsed)? {
                Outcome::Exit { elapsed, code } => return Some(Outcome::Exit { elapsed, code }),
                Outcome::Status {
                    elapsed: after,
                    status: code,
                } => {
                    elapsed = after;
                    status = code;
                }
            }
            // `set -e` ignores failures on the left of && and ||.
            if errexit && status != 0 && index == last_index {
                return Some(Outcome::Exit {
                    elapsed,
                    code: status,
                });
            }
        }
    }
    Some(Outcome::Status { elapsed, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn run(words: &[&str]) -> Program {
        program_of(&argv(words), &[], &[])
    }

    fn exits(seconds: f64, code: i32) -> Program {
        Program::Exits {
            after: Duration::from_secs_f64(seconds),
            code,
        }
    }

    #[test]
    fn env_references_are_expanded_as_the_kubelet_does() {
        let env = vec![("HASH".to_owned(), "6cd44767".to_owned())];
        assert_eq!(expand_env("hash $(HASH)!", &env), "hash 6cd44767!");
        assert_eq!(
            expand_env("$(MISSING) $$(HASH) $5", &env),
            "$(MISSING) $(HASH) $5"
        );
        assert_eq!(expand_env("$(UNCLOSED", &env), "$(UNCLOSED");
        let script = argv(&["sh", "-c", "echo \"hash: $(HASH)\"\nexit 0"]);
        assert_eq!(program_of(&script, &[], &env), exits(0.0, 0));
        // Unexpanded, the `$` leaves the simulated shell's subset.
        assert_eq!(program_of(&script, &[], &[]), Program::RunsForever);
    }

    #[test]
    fn no_command_or_unknown_program_runs_forever() {
        assert_eq!(program_of(&[], &[], &[]), Program::RunsForever);
        assert_eq!(run(&["/app/server", "--port=8080"]), Program::RunsForever);
        assert_eq!(run(&["nginx", "-g", "daemon off;"]), Program::RunsForever);
        assert_eq!(run(&["sleep", "infinity"]), Program::RunsForever);
    }

    #[test]
    fn plain_commands() {
        assert_eq!(run(&["sleep", "5"]), exits(5.0, 0));
        assert_eq!(run(&["/bin/sleep", "0.5"]), exits(0.5, 0));
        assert_eq!(run(&["sleep", "1m", "30"]), exits(90.0, 0));
        assert_eq!(run(&["sleep", "soon"]), exits(0.0, 1));
        assert_eq!(run(&["true"]), exits(0.0, 0));
        assert_eq!(run(&["false"]), exits(0.0, 1));
        assert_eq!(run(&["exit", "3"]), exits(0.0, 3));
        assert_eq!(run(&["echo", "hello"]), exits(0.0, 0));
    }

    #[test]
    fn command_and_args_are_joined() {
        assert_eq!(
            program_of(&argv(&["sh", "-c"]), &argv(&["sleep 2; exit 4"]), &[]),
            exits(2.0, 4)
        );
        assert_eq!(
            program_of(&argv(&["sleep"]), &argv(&["3"]), &[]),
            exits(3.0, 0)
        );
    }

    #[test]
    fn shell_scripts_of_the_subset() {
        assert_eq!(run(&["sh", "-c", "exit 0"]), exits(0.0, 0));
        assert_eq!(run(&["sh", "-c", "exit 1"]), exits(0.0, 1));
        assert_eq!(
            run(&["/bin/bash", "-c", "sleep 1; sleep 2; exit 7"]),
            exits(3.0, 7)
        );
        assert_eq!(run(&["sh", "-c", "sleep 1 && exit 2"]), exits(1.0, 2));
        assert_eq!(run(&["sh", "-c", "false && sleep 10"]), exits(0.0, 1));
        assert_eq!(run(&["sh", "-c", "false || exit 5"]), exits(0.0, 5));
        assert_eq!(
            run(&["sh", "-c", "echo 'starting up'; sleep 2"]),
            exits(2.0, 0)
        );
        assert_eq!(run(&["sh", "-c", "false"]), exits(0.0, 1));
        assert_eq!(run(&["sh", "-c", "false; true"]), exits(0.0, 0));
        assert_eq!(run(&["sh", "-ec", "false; sleep 9"]), exits(0.0, 1));
        assert_eq!(
            run(&["sh", "-c", "set -e\nsleep 1\nfalse\nsleep 9"]),
            exits(1.0, 1)
        );
        assert_eq!(
            run(&["sh", "-c", "# wait a bit\nsleep 1 # really\nexit 0"]),
            exits(1.0, 0)
        );
        assert_eq!(run(&["sh", "-c", "exec sleep 4"]), exits(4.0, 0));
        assert_eq!(run(&["busybox", "sh", "-c", "exit 9"]), exits(0.0, 9));
        assert_eq!(run(&["sh", "-c", "exit 256"]), exits(0.0, 0));
    }

    #[test]
    fn scripts_outside_the_subset_run_forever() {
        assert_eq!(
            run(&["sh", "-c", "while true; do sleep 1; done"]),
            Program::RunsForever
        );
        assert_eq!(run(&["sh", "-c", "exit $CODE"]), Program::RunsForever);
        assert_eq!(run(&["sh", "-c", "sleep 5 &"]), Program::RunsForever);
        assert_eq!(
            run(&["sh", "-c", "cat /etc/hosts | wc -l"]),
            Program::RunsForever
        );
        assert_eq!(
            run(&["sh", "-c", "echo 'unterminated"]),
            Program::RunsForever
        );
        assert_eq!(run(&["sh", "script.sh"]), Program::RunsForever);
        assert_eq!(run(&["sh", "-c", "&& exit 1"]), Program::RunsForever);
    }
}
