#![no_main]
// Untrusted notification bodies: parse, round-trip, apply to call state, inspect.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    graph_signaling::fuzzing::notification_parse(data);
});
