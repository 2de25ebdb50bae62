//! Any bytes into the blob parser: it must return, never panic, and what it accepts must survive a
//! write and re-read unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = media_session::parse_blob_or_body(text) {
        let written = config.to_blob();
        let mut again = media_session::parse(&written).expect("a written blob parses");
        // Unknown fields are reported on read but never written.
        again.unknown_fields = config.unknown_fields.clone();
        assert_eq!(again, config);
    }
});
