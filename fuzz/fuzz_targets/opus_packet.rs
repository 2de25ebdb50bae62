#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| audio_pipeline::_fuzz::opus_packet(data));
