//! Log lines of the long-running commands (`watch`, and `failover` that shares its code):
//! `tracing` events on stderr, for people (`TIME CLUSTER: message`) or one JSON object per
//! line for log shippers. Nothing logged holds a secret: passwords never leave
//! [`crate::spec::secret::Secret`], the API token and webhook secrets are never formatted.
//! I/O: stderr.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::LogFormat;

/// Installs the subscriber for this process (a second call is a no-op).
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO);
    let _ = match format {
        LogFormat::Human => builder.event_format(Human).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// `2026-12-02T15:37:14.123Z shop: message`; warnings and errors say so.
struct Human;

#[derive(Default)]
struct Fields {
    message: String,
    cluster: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "cluster" => self.cluster = Some(value.to_string()),
            "message" => self.message = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "cluster" => self.cluster = Some(format!("{value:?}")),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S, N> FormatEvent<S, N> for Human
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = crate::state::utc(crate::state::now_millis());
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error: ",
            tracing::Level::WARN => "warning: ",
            _ => "",
        };
        match fields.cluster {
            Some(c) => writeln!(writer, "{now} {c}: {level}{}", fields.message),
            None => writeln!(writer, "{now} {level}{}", fields.message),
        }
    }
}
