#![no_main]
// RFC 4733 telephone-event payloads and the digit detector: raw packets and event trains with
// losses, duplicates and reordering.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    media_transport::_internal_test_exports::fuzz::dtmf_payload(data);
});
