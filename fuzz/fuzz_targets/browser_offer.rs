#![no_main]
// A browser's SDP offer through the softphone's pre-stack check, then the stack's SDP reader
// for offers the check lets through.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    media_transport::_internal_test_exports::fuzz::browser_offer(data);
});
