//! The repository's copy of the compatibility targets (`e2e/testdata/reference`) must match
//! the team's shared copy wherever that exists beside the checkout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), bytes);
            }
        }
    }
    out
}

#[test]
fn vendored_reference_matches_the_shared_copy() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let vendored = workspace.join("e2e/testdata/reference");
    let vendored_files = files(&vendored);
    assert!(
        vendored_files.len() > 100,
        "the vendored reference looks empty"
    );
    let shared = workspace.join("../shared/reference");
    if !shared.is_dir() {
        eprintln!(
            "no shared reference at {}; nothing to compare",
            shared.display()
        );
        return;
    }
    let shared_files = files(&shared);
    let differing: Vec<_> = shared_files
        .iter()
        .filter(|(path, bytes)| vendored_files.get(*path) != Some(*bytes))
        .map(|(path, _)| path.display().to_string())
        .chain(
            vendored_files
                .keys()
                .filter(|p| !shared_files.contains_key(*p))
                .map(|p| format!("{} (only in the copy)", p.display())),
        )
        .collect();
    assert!(
        differing.is_empty(),
        "e2e/testdata/reference differs from {}: {differing:?}; copy it again",
        shared.display()
    );
}
