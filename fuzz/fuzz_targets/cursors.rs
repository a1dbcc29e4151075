//! See `sse_progress::server::fuzzing::cursors`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sse_progress::server::fuzzing::cursors(data));
