#![no_main]
// Graph's answers to the client: status and body read as a call, an operation or an error.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    graph_signaling::_internal_test_exports::fuzz::graph_responses(data);
});
