//! The one TLS stack of the process: rustls on ring. An http client of any part of Axon
//! (an http driver, the OTLP exporter, the CLI, the tests) is built only after
//! [`install_crypto_provider`] has made ring the process's crypto provider.

/// Makes ring the process-wide rustls crypto provider. Calling it again, from any thread,
/// does nothing.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Refused only when a provider is installed already, which is what is wanted.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A blocking http client builder, with the process's crypto provider installed first:
/// the one way a client is made.
pub fn client_builder() -> reqwest::blocking::ClientBuilder {
    install_crypto_provider();
    reqwest::blocking::Client::builder()
}
