#![no_main]
// Teams meeting join links, as a person pastes them into a bot.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    graph_signaling::_internal_test_exports::fuzz::join_url(data);
});
