//! Logs and traces: `tracing` with a human or JSON format, and optional OTLP/HTTP export
//! of spans (one per HTTP request, one per actor hop, each with its `correlation_id`).

use crate::config::{LogConfig, LogFormat};
use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes exported spans when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("axon: flushing traces failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber. Call once, before the node starts.
pub fn init(cfg: &LogConfig) -> anyhow::Result<Telemetry> {
    // The OTLP exporter builds an http client: a node started in-process (a test) has
    // not been through `main`.
    axon_drivers::tls::install_crypto_provider();
    let filter = EnvFilter::try_new(&cfg.level).context("log.level")?;
    let fmt = match cfg.format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let (otel, provider) = if cfg.otlp_endpoint.is_empty() {
        (None, None)
    } else {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(cfg.otlp_endpoint.clone())
            .build()
            .context("cannot build the OTLP exporter")?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("axon")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("axon");
        (
            Some(tracing_opentelemetry::layer().with_tracer(tracer)),
            Some(provider),
        )
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .context("a tracing subscriber is already installed")?;
    Ok(Telemetry { provider })
}

/// Routes panic messages into the log as one line each (they are caught and handled as
/// child failures, so they are events, not crashes).
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = axon_supervisors::worker::panic_message(info.payload());
        tracing::error!(%location, panic = %msg, "panic");
    }));
}
