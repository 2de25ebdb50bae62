//! Throwaway RSA certificates for tests of certificate credentials, generated at test time so
//! that no private key is ever checked in.

/// A self-signed certificate and its private key, both PEM.
#[derive(Clone)]
pub struct TestCertificate {
    /// The certificate (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// Its PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl std::fmt::Debug for TestCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Even a throwaway key stays out of test logs, like a real one would.
        f.debug_struct("TestCertificate").finish_non_exhaustive()
    }
}

/// A fresh 2048-bit RSA key and a self-signed certificate for `common_name`.
///
/// # Panics
/// If key generation or signing fails, which only a broken crypto library does (a test
/// helper, so it panics instead of returning an error).
pub fn self_signed_rsa(common_name: &str) -> TestCertificate {
    use aws_lc_rs::encoding::AsDer;
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .expect("RSA key generation");
    let pkcs8 = rsa.as_der().expect("PKCS#8 encoding");
    let key = rcgen::KeyPair::try_from(pkcs8.as_ref()).expect("rcgen reads a PKCS#8 RSA key");
    let params = rcgen::CertificateParams::new(vec![common_name.to_owned()])
        .expect("a DNS name for the certificate");
    let cert = params.self_signed(&key).expect("self-signing");
    TestCertificate {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}
