//! Fuzzes the GitOps render: any bytes committed to Git as a manifest file must render to
//! objects or to errors that name the file, never a panic, a stack overflow or unbounded work.
//! The input is split at its first NUL byte into two files so multi-file renders (and the
//! directory options) are exercised too.
//!
//! Run from `controller/fuzz` (on a stable toolchain, `RUSTC_BOOTSTRAP=1` unlocks the
//! sanitizer flags cargo-fuzz passes):
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run gitops_render /tmp/render-corpus corpus/gitops_render -- \
//!     -max_len=65536 -timeout=10 -max_total_time=300
//! ```
//!
//! `corpus/gitops_render` is the seed corpus that `controller/tests/hostile_input.rs` replays
//! in every `cargo test`; new inputs go to the first (scratch) directory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ramp_controller::gitops::render::{DirectoryOptions, SourceFile, render};

fuzz_target!(|data: &[u8]| {
    let (first, second) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let mut files = vec![SourceFile {
        path: "app.yaml".into(),
        content: first.to_vec(),
    }];
    if let Some(second) = second {
        files.push(SourceFile {
            path: "nested/more.json".into(),
            content: second.to_vec(),
        });
    }
    let names = ["app.yaml", "nested/more.json"];
    for options in [
        DirectoryOptions::default(),
        DirectoryOptions {
            recurse: true,
            include: Some("*.{yaml,json}".into()),
            exclude: None,
        },
    ] {
        match render(&files, &options) {
            Ok(manifests) => {
                for manifest in manifests {
                    assert!(names.contains(&manifest.file.as_str()));
                    assert!(manifest.object.contains_key("kind"));
                }
            }
            Err(errors) => {
                assert!(!errors.is_empty());
                for error in errors {
                    assert!(names.contains(&error.file.as_str()), "{error}");
                }
            }
        }
    }
});
