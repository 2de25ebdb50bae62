#![no_main]
// What graph-sim reads from outside for service-hosted media: prompt files fetched from a URL
// a bot names (WAV) and the key presses of a scenario file. Neither may panic; a prompt read
// is within the length limit; presses read write back to text that reads the same.
use graph_sim::scenario::Presses;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(samples) = graph_sim::media::decode_prompt(data) {
        assert!(samples.len() <= graph_sim::service::MAX_PROMPT_SAMPLES);
    }
    let text = String::from_utf8_lossy(data).into_owned();
    if let Ok(presses) = Presses::try_from(text) {
        let written = String::from(presses.clone());
        assert_eq!(Presses::try_from(written).ok(), Some(presses));
    }
});
