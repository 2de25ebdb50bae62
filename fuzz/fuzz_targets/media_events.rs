#![no_main]
// Untrusted bodies of service-hosted media: tone notifications, recording metadata, list
// answers and media request bodies.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    graph_signaling::_internal_test_exports::fuzz::media_events(data);
});
