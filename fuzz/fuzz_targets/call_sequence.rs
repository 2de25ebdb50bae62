#![no_main]
// Arbitrary sequences of service, application and time inputs through the whole-call harness
// (graph-sim's service core and the bot's call cores on made-up time), checking the call
// invariants after every step.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mediabot::_internal_test_exports::fuzz::call_sequence(data);
});
