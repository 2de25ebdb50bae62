#![no_main]
// Untrusted notification bodies: parse, round-trip, apply to call state, inspect.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    graph_signaling::_internal_test_exports::fuzz::notification_parse(data);
});
