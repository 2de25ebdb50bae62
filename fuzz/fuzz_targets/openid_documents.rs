#![no_main]
// The OpenID configuration and JWK set the notification endpoint fetches to check tokens.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    graph_signaling::_internal_test_exports::fuzz::openid_documents(data);
});
