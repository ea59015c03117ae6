//! Fuzzes manifest decoding as `kubectl ramp lint` and validation see it: any text must give
//! documents or a parse error naming the file, and every document of a Ramp kind must decode
//! and validate to problems, never a panic, a stack overflow or unbounded work.
//!
//! Run from `controller/fuzz` (on a stable toolchain, `RUSTC_BOOTSTRAP=1` unlocks the
//! sanitizer flags cargo-fuzz passes):
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run manifest /tmp/manifest-corpus corpus/manifest -- \
//!     -max_len=65536 -timeout=10 -max_total_time=300
//! ```
//!
//! `corpus/manifest` is the seed corpus that `controller/tests/hostile_input.rs` replays in
//! every `cargo test`; new inputs go to the first (scratch) directory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ramp_controller::lint::Report;
use ramp_controller::manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut report = Report::default();
    report.add_file("fuzz.yaml", text);
    for problem in &report.problems {
        assert_eq!(problem.file, "fuzz.yaml");
        let _ = problem.to_string();
    }
    if let Ok(documents) = manifest::parse("fuzz.yaml", text) {
        for document in &documents {
            if let Some(path) = manifest::decode::<ramp_controller::api::Rollout>(&document.value)
                .err()
                .map(|e| e.path)
            {
                let _ = document.line(&path);
            }
        }
    }
});
