//! STUB (replaced by the webhook branch): the interface only.
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct UrlLabel {
    pub url: String,
}

pub struct Target {
    pub url: String,
    pub secret: Option<crate::spec::secret::Secret>,
}

#[derive(Clone, Default)]
pub struct WebhookMetrics {
    pub delivered: Family<UrlLabel, Counter>,
    pub dropped: Family<UrlLabel, Counter>,
    pub failed_attempts: Family<UrlLabel, Counter>,
}

impl WebhookMetrics {
    pub fn register(&self, _registry: &mut prometheus_client::registry::Registry) {}
}

#[derive(Clone)]
pub struct Webhooks {}

impl Webhooks {
    pub fn start(_targets: Vec<Target>, _metrics: WebhookMetrics) -> Webhooks {
        Webhooks {}
    }
    pub fn none() -> Webhooks {
        Webhooks {}
    }
    pub fn send(&self, _event: &serde_json::Value) {}
    pub async fn flush(&self, _deadline: std::time::Duration) {}
}
