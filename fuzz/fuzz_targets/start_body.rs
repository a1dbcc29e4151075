//! See `sse_progress::server::fuzzing::start_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sse_progress::server::fuzzing::start_body(data));
