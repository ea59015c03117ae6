//! Printing: objects as JSON or YAML (`-o`), whether to colour, and frames of a watch.

use std::io::{IsTerminal, Write};

use anyhow::Context as _;
use clap::ValueEnum;
use ramp_controller::plugin::Style;
use serde_json::Value;

/// `-o json|yaml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

/// The object as `kubectl get -o` prints it (without `metadata.managedFields`).
pub fn object_text(object: &Value, format: Format) -> anyhow::Result<String> {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    match format {
        Format::Json => Ok(format!("{}\n", serde_json::to_string_pretty(&object)?)),
        Format::Yaml => serde_saphyr::to_string(&object).context("writing YAML"),
    }
}

/// Prints `text` and flushes, so a reader of a pipe sees each frame as it comes.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .context("writing to standard output")?;
    stdout.flush().context("writing to standard output")
}

/// Whether standard output is a terminal.
pub fn is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Colour only on a terminal, never with `--no-color` or `NO_COLOR` set (<https://no-color.org>).
pub fn style(no_color: bool) -> Style {
    let disabled = no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    Style {
        color: !disabled && is_terminal(),
    }
}

/// Moves the cursor home and clears the screen (a watch's next frame on a terminal).
pub const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_fields_are_left_out() {
        let object = serde_json::json!({"metadata": {"name": "web", "managedFields": [{"manager": "x"}]}, "spec": {}});
        let yaml = object_text(&object, Format::Yaml).unwrap();
        assert!(!yaml.contains("managedFields"), "{yaml}");
        assert!(yaml.contains("name: web"), "{yaml}");
        let json = object_text(&object, Format::Json).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&json).unwrap()["metadata"],
            serde_json::json!({"name": "web"})
        );
    }
}
