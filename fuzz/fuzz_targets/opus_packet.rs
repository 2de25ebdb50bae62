#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    audio_pipeline::_internal_test_exports::fuzz::opus_packet(data)
});
