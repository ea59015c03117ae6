//! Fuzzes the condition language: any text must parse to a program or an error, and any
//! program must evaluate to a value or an error against typical `result`s, never panic,
//! overflow the stack or run unbounded.
//!
//! Run from `analysis/fuzz` (on a stable toolchain, `RUSTC_BOOTSTRAP=1` unlocks the sanitizer
//! flags cargo-fuzz passes):
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run condition /tmp/condition-corpus corpus/condition -- \
//!     -dict=condition.dict -max_len=1024 -timeout=5 -max_total_time=300
//! ```
//!
//! `corpus/condition` is a small seed corpus that `analysis/tests/conditions.rs` replays in
//! every `cargo test`; new inputs go to the first (scratch) directory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ramp_analysis::expr::{Env, Value, parse};
use serde_json::json;

fn results() -> [Value; 6] {
    [
        Value::Nil,
        Value::Float(0.0042),
        Value::Float(f64::NAN),
        Value::from(vec![0.5, 0.99, f64::INFINITY]),
        Value::Array(Vec::new()),
        Value::from(json!({"major": "1", "Status": 0, "values": [1, 2.5, "x", null], "ok": true})),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match parse(source) {
        Ok(program) => {
            for result in results() {
                match program.eval(&Env::with_result(result)) {
                    Ok(_) => {}
                    Err(err) => assert!(err.offset() <= source.len(), "{err}"),
                }
            }
        }
        Err(err) => {
            assert!(err.offset() <= source.len(), "{err}");
            let _ = err.to_string();
        }
    }
});
