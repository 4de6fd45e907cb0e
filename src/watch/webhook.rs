//! Webhooks: watch's events POSTed as JSON to the URLs the policy names.
//!
//! Takes the configured [`Target`]s (a URL, an optional signing secret) and events (JSON
//! objects with string fields `id` and `kind`); gives at-least-once, in-order delivery per
//! URL and the counters of [`WebhookMetrics`]. Each URL has its own bounded queue
//! ([`QUEUE_CAPACITY`]) and its own task, which delivers one event at a time: a slow or dead
//! receiver delays only itself, and [`Webhooks::send`] never waits for anything (a full
//! queue drops the event, counts it, and says so in the log at most once per
//! [`LOG_INTERVAL`]).
//!
//! Each attempt is bounded by [`ATTEMPT_TIMEOUT`]; a connection error, a timeout, 408, 429
//! and 5xx are retried after [`FIRST_BACKOFF`], doubling up to [`MAX_BACKOFF`], until
//! [`RETRY_BUDGET`] has passed since the first attempt; then the event is dropped. Any other
//! non-2xx answer is final: the receiver refused the event, and sending it again would not
//! change its mind. Every event ends in exactly one of `orch_webhook_deliveries_total
//! {outcome="delivered"}`, `{outcome="failed"}` or `orch_webhook_dropped_total`.
//!
//! The connection to a URL is kept alive between deliveries (hyper's
//! `client::conn::http1`, one connection per URL) and made again after any error or
//! timeout. Receivers authenticate orch with `X-Orch-Signature-256` (as GitHub's
//! `X-Hub-Signature-256`) and/or the URL's userinfo (sent as HTTP Basic); neither the
//! secret nor the userinfo ever reaches a log line or a metric label, which show the URL
//! without userinfo and query ([`url_label`]). I/O: TCP (and TLS) to the receivers, the
//! clock, the log.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use ring::hmac;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use crate::httpc::url_label;
use crate::httpc::{Conn, ConnectError, Endpoint, TlsFiles, TlsReloader, connect, hex};
use crate::spec::secret::Secret;

/// Events waiting per URL. Watch emits a handful of events per failure, so 1,024 holds a
/// storm's worth while a receiver is down, and bounds memory (the bodies are shared
/// between URLs) when one never comes back.
pub const QUEUE_CAPACITY: usize = 1024;
/// One attempt: connect, TLS, send, and the whole answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The wait before the first retry; doubled after each failed attempt.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How long one event is tried, from its first attempt; then it is dropped, so a receiver
/// that is down cannot hold the queue behind one event for longer.
pub const RETRY_BUDGET: Duration = Duration::from_secs(60);
/// At most one "queue full" and one "refused" log line per URL this often (a storm drops
/// or refuses many events); the first of a burst is logged at once, the rest counted.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How much of a receiver's answer is read; a longer one closes the connection.
const ANSWER_KEPT: usize = 64 * 1024;

/// The retry rules and the log throttle, the constants above except in tests (which
/// cannot wait a minute, nor count on finishing within [`LOG_INTERVAL`] on a busy machine).
#[derive(Clone, Copy, Debug)]
struct Timing {
    attempt_timeout: Duration,
    first_backoff: Duration,
    max_backoff: Duration,
    retry_budget: Duration,
    log_interval: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            attempt_timeout: ATTEMPT_TIMEOUT,
            first_backoff: FIRST_BACKOFF,
            max_backoff: MAX_BACKOFF,
            retry_budget: RETRY_BUDGET,
            log_interval: LOG_INTERVAL,
        }
    }
}

/// One configured webhook.
#[derive(Clone)]
pub struct Target {
    /// `http://` or `https://`; userinfo, if any, is sent as HTTP Basic authentication.
    pub url: String,
    /// Signs each body (`X-Orch-Signature-256`).
    pub secret: Option<Secret>,
    /// What an https:// receiver's certificate must chain up to: the files (a private CA,
    /// re-read when rotated), or None for the public roots.
    pub tls: Option<Arc<TlsReloader>>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password in its userinfo or a token in its query.
        f.debug_struct("Target")
            .field("url", &url_label(&self.url))
            .field("secret", &self.secret)
            .field("own_ca", &self.tls.is_some())
            .finish()
    }
}

/// The metric labels of one URL: the URL without userinfo, query or fragment.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UrlLabel {
    pub url: String,
}

impl UrlLabel {
    pub fn new(url: &str) -> UrlLabel {
        UrlLabel {
            url: url_label(url),
        }
    }
}

/// How an event ended at one URL, when it was not dropped.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// The receiver refused it with an answer that is not retried (a 4xx other than 408
    /// and 429, or a 1xx/3xx).
    Failed,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        use fmt::Write;
        encoder.write_str(match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
        })
    }
}

/// The labels of `orch_webhook_deliveries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabel {
    pub url: String,
    pub outcome: Outcome,
}

/// Counters, registered in the watch process's Prometheus registry by the caller.
#[derive(Clone, Debug, Default)]
pub struct WebhookMetrics {
    /// `orch_webhook_deliveries_total{url, outcome}`: events that ended with an answer.
    pub delivered: Family<DeliveryLabel, Counter>,
    /// `orch_webhook_dropped_total{url}`: the queue was full, or retries ran out.
    pub dropped: Family<UrlLabel, Counter>,
    /// `orch_webhook_failed_attempts_total{url}`: every attempt that was not a 2xx.
    pub failed_attempts: Family<UrlLabel, Counter>,
}

impl WebhookMetrics {
    pub fn register(&self, registry: &mut Registry) {
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "orch_webhook_deliveries",
            "Webhook events that got a final answer: delivered (2xx) or failed (refused, not retried)",
            self.delivered.clone(),
        );
        registry.register(
            "orch_webhook_dropped",
            "Webhook events dropped: the URL's queue was full, or retries ran out",
            self.dropped.clone(),
        );
        registry.register(
            "orch_webhook_failed_attempts",
            "Webhook delivery attempts that failed: connection error, timeout or a non-2xx answer",
            self.failed_attempts.clone(),
        );
    }
}

/// One URL's counters, looked up once (and so shown as 0 before the first event).
#[derive(Clone)]
struct Counters {
    delivered: Counter,
    failed: Counter,
    dropped: Counter,
    failed_attempts: Counter,
}

impl Counters {
    fn new(metrics: &WebhookMetrics, label: &UrlLabel) -> Counters {
        let outcome = |outcome| DeliveryLabel {
            url: label.url.clone(),
            outcome,
        };
        // One statement each: `get_or_create` returns a guard on the family's lock, and a
        // second call on the same family in the same statement would wait for it forever.
        let delivered = metrics
            .delivered
            .get_or_create(&outcome(Outcome::Delivered))
            .clone();
        let failed = metrics
            .delivered
            .get_or_create(&outcome(Outcome::Failed))
            .clone();
        let dropped = metrics.dropped.get_or_create(label).clone();
        let failed_attempts = metrics.failed_attempts.get_or_create(label).clone();
        Counters {
            delivered,
            failed,
            dropped,
            failed_attempts,
        }
    }
}

/// One event, serialized once and shared by every URL's queue.
struct Event {
    id: HeaderValue,
    kind: HeaderValue,
    body: Bytes,
}

/// What [`Webhooks::send`] and every delivery task share.
struct Shared {
    /// Events queued or being delivered, over all URLs.
    pending: AtomicUsize,
    /// Woken when `pending` reaches 0.
    idle: tokio::sync::Notify,
}

impl Shared {
    fn finished(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// One URL's queue, as the sending side sees it.
struct Lane {
    tx: mpsc::Sender<Arc<Event>>,
    full: Arc<QueueFull>,
}

/// Counts occurrences of one thing that can happen in bursts, and lets at most one log line
/// about them through per `interval` ([`LOG_INTERVAL`]). Lock-free: [`Webhooks::send`]
/// uses it.
struct Throttle {
    epoch: Instant,
    interval: Duration,
    /// Occurrences not yet logged.
    unlogged: AtomicU64,
    /// When a line was last let through, in ms since `epoch`, plus 1 (0: never).
    logged_at: AtomicU64,
}

impl Throttle {
    fn new(interval: Duration) -> Throttle {
        Throttle {
            epoch: Instant::now(),
            interval,
            unlogged: AtomicU64::new(0),
            logged_at: AtomicU64::new(0),
        }
    }

    fn note(&self) {
        self.unlogged.fetch_add(1, Ordering::Relaxed);
    }

    /// The occurrences to log now, if any and if the last line is old enough.
    fn due(&self) -> Option<u64> {
        if self.unlogged.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.logged_at.load(Ordering::Relaxed);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now < last.saturating_add(interval) {
            return None;
        }
        // One caller wins the line; the others' occurrences are in its count or the next.
        self.logged_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(self.unlogged.swap(0, Ordering::Relaxed)).filter(|&n| n > 0)
    }

    /// When the occurrences not yet logged may be (None: there are none).
    fn next_due(&self) -> Option<Instant> {
        if self.unlogged.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let last = self.logged_at.load(Ordering::Relaxed);
        Some(self.epoch + Duration::from_millis(last.saturating_sub(1)) + self.interval)
    }
}

/// One URL's events dropped because its queue was full: noted by the senders, reported
/// by them or by the URL's task between deliveries. Apart from `Lane` so that the task
/// does not hold a sender of its own queue, which would then never close.
struct QueueFull {
    label: UrlLabel,
    /// `orch_webhook_dropped_total` for this URL.
    counter: Counter,
    throttle: Throttle,
}

impl QueueFull {
    fn dropped(&self) {
        self.counter.inc();
        self.throttle.note();
        self.report();
    }

    fn report(&self) {
        if let Some(n) = self.throttle.due() {
            let total = self.counter.get();
            tracing::warn!(
                url = %self.label.url,
                dropped = n,
                "webhook queue full ({QUEUE_CAPACITY} events waiting): dropped {n} event(s) \
                 since the last report ({total} dropped in all)"
            );
        }
    }
}

/// The delivery side: one bounded queue and one task per URL.
#[derive(Clone)]
pub struct Webhooks {
    lanes: Arc<[Lane]>,
    shared: Arc<Shared>,
}

impl Webhooks {
    /// Starts one delivery task per target on the current tokio runtime (must be called
    /// inside one). A URL that does not parse is logged and skipped (the policy validator
    /// has already checked it). Tasks end once every `Webhooks` clone is dropped and their
    /// queue is drained.
    pub fn start(targets: Vec<Target>, metrics: WebhookMetrics) -> Webhooks {
        Webhooks::start_with(targets, metrics, Timing::default())
    }

    fn start_with(targets: Vec<Target>, metrics: WebhookMetrics, timing: Timing) -> Webhooks {
        let shared = Arc::new(Shared {
            pending: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        });
        let mut public_roots = None;
        let mut lanes = Vec::new();
        for target in targets {
            let endpoint = match Endpoint::parse(&target.url) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(url = %url_label(&target.url), "webhook skipped: {e}");
                    continue;
                }
            };
            let connector = match (endpoint.server_name.is_some(), target.tls) {
                (false, _) => None,
                (true, Some(own)) => Some(own),
                (true, None) => {
                    let roots = public_roots
                        .get_or_insert_with(|| TlsReloader::new(TlsFiles::default()).map(Arc::new));
                    match roots {
                        Ok(c) => Some(c.clone()),
                        Err(e) => {
                            tracing::error!(url = %endpoint.label, "webhook skipped: TLS: {e}");
                            continue;
                        }
                    }
                }
            };
            let counters = Counters::new(
                &metrics,
                &UrlLabel {
                    url: endpoint.label.clone(),
                },
            );
            let full = Arc::new(QueueFull {
                label: UrlLabel {
                    url: endpoint.label.clone(),
                },
                counter: counters.dropped.clone(),
                throttle: Throttle::new(timing.log_interval),
            });
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            lanes.push(Lane {
                tx,
                full: full.clone(),
            });
            let deliverer = Deliverer {
                key: target
                    .secret
                    .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.expose().as_bytes())),
                endpoint,
                tls: connector,
                conn: None,
                counters,
                timing,
                full,
                refused: Throttle::new(timing.log_interval),
                last_refusal: String::new(),
            };
            tokio::spawn(deliverer.run(rx, shared.clone()));
        }
        let lanes: Arc<[Lane]> = lanes.into();
        Webhooks { lanes, shared }
    }

    /// No targets: [`Webhooks::send`] is a no-op.
    pub fn none() -> Webhooks {
        Webhooks {
            lanes: Arc::new([]),
            shared: Arc::new(Shared {
                pending: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The URLs delivered to (as [`url_label`] shows them).
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.lanes.iter().map(|l| l.full.label.url.as_str())
    }

    /// Queues `event` (a JSON object with string fields `id` and `kind`) for every URL.
    /// Never blocks, never awaits: a full queue drops the event for that URL, counts it and
    /// logs it (at most one line per URL per [`LOG_INTERVAL`]).
    pub fn send(&self, event: &serde_json::Value) {
        if self.lanes.is_empty() {
            return;
        }
        let field =
            |name: &str| header_value(event.get(name).and_then(|v| v.as_str()).unwrap_or(""));
        let body = match serde_json::to_vec(event) {
            Ok(b) => b,
            Err(e) => {
                // Only a map with non-string keys fails; events are built by orch.
                tracing::error!("webhook event not sent: cannot serialize it: {e}");
                return;
            }
        };
        let event = Arc::new(Event {
            id: field("id"),
            kind: field("kind"),
            body: Bytes::from(body),
        });
        for lane in self.lanes.iter() {
            // Counted before it is queued: the task may finish it before try_send returns.
            self.shared.pending.fetch_add(1, Ordering::AcqRel);
            if lane.tx.try_send(event.clone()).is_err() {
                // Full, or the task is gone (it only ends when the runtime does).
                self.shared.finished();
                lane.full.dropped();
            }
        }
    }

    /// Waits until every queued event is delivered, refused or dropped, or `deadline`
    /// passes (used when watch stops, and by tests). Gives the number of events still
    /// queued or in flight (0: all done).
    pub async fn flush(&self, deadline: Duration) -> usize {
        let shared = &self.shared;
        let drained = async {
            loop {
                // Registered before the check, so a wake-up between the two is not lost.
                let idle = shared.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if shared.pending.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(deadline, drained).await;
        shared.pending.load(Ordering::Acquire)
    }
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.urls()).finish()
    }
}

/// `s` as a header value, with bytes a header cannot carry replaced by `?`.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| {
        let clean: String = s
            .chars()
            .map(|c| {
                if c == '\t' || (' '..='~').contains(&c) {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        HeaderValue::from_str(&clean).unwrap_or(HeaderValue::from_static(""))
    })
}

/// Why one attempt failed.
#[derive(Debug)]
enum AttemptError {
    Connect(std::io::Error),
    Tls(std::io::Error),
    Http(hyper::Error),
    Timeout(Duration),
    /// A non-2xx answer.
    Status(StatusCode),
}

impl From<ConnectError> for AttemptError {
    fn from(e: ConnectError) -> AttemptError {
        match e {
            ConnectError::Connect(e) => AttemptError::Connect(e),
            ConnectError::Tls(e) => AttemptError::Tls(e),
            ConnectError::Http(e) => AttemptError::Http(e),
        }
    }
}

impl AttemptError {
    /// Whether a later attempt may succeed.
    fn retried(&self) -> bool {
        match self {
            AttemptError::Status(s) => {
                s.is_server_error()
                    || *s == StatusCode::REQUEST_TIMEOUT
                    || *s == StatusCode::TOO_MANY_REQUESTS
            }
            // An untrusted certificate (a missing `ca_file`, a receiver's own mistake).
            AttemptError::Tls(e) => !crate::httpc::certificate_problem(e),
            _ => true,
        }
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Connect(e) => write!(f, "cannot connect: {e}"),
            AttemptError::Tls(e) => write!(f, "{}", crate::httpc::tls_text(e)),
            AttemptError::Http(e) => write!(f, "HTTP: {e}"),
            AttemptError::Timeout(t) => write!(f, "no answer within {t:?}"),
            AttemptError::Status(s) => write!(f, "answered {s}"),
        }
    }
}

/// One URL's delivery task.
struct Deliverer {
    endpoint: Endpoint,
    key: Option<hmac::Key>,
    tls: Option<Arc<TlsReloader>>,
    conn: Option<Conn>,
    counters: Counters,
    timing: Timing,
    full: Arc<QueueFull>,
    /// Events refused (not retried), reported like a full queue: a receiver that refuses
    /// everything (a wrong secret) would otherwise log a line per event.
    refused: Throttle,
    /// The last refusal, for its report.
    last_refusal: String,
}

impl Deliverer {
    async fn run(mut self, mut rx: mpsc::Receiver<Arc<Event>>, shared: Arc<Shared>) {
        loop {
            // Between events: report what is left to report once it may be.
            let due = [self.full.throttle.next_due(), self.refused.next_due()]
                .into_iter()
                .flatten()
                .min();
            let next = match due {
                Some(at) => tokio::select! {
                    next = rx.recv() => next,
                    () = tokio::time::sleep_until(at) => {
                        self.report();
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(event) = next else { break };
            self.deliver(&event).await;
            shared.finished();
            self.report();
        }
    }

    fn report(&self) {
        self.full.report();
        if let Some(n) = self.refused.due() {
            tracing::warn!(
                url = %self.endpoint.label,
                refused = n,
                "webhook refused {n} event(s) since the last report, not retried; last: {}",
                self.last_refusal
            );
        }
    }

    /// Tries `event` until it is answered or [`RETRY_BUDGET`] is spent.
    async fn deliver(&mut self, event: &Event) {
        let url = self.endpoint.label.clone();
        let signature = self.key.as_ref().map(|key| {
            let tag = hmac::sign(key, &event.body);
            header_value(&format!("sha256={}", hex(tag.as_ref())))
        });
        let began = Instant::now();
        let Timing {
            attempt_timeout,
            first_backoff,
            max_backoff,
            retry_budget,
            ..
        } = self.timing;
        let mut backoff = first_backoff;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            // The last attempt is cut short rather than outlive the budget.
            let timeout = attempt_timeout.min(retry_budget.saturating_sub(began.elapsed()));
            let result = match tokio::time::timeout(
                timeout,
                self.attempt(event, signature.as_ref()),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(AttemptError::Timeout(timeout)),
            };
            let error = match result {
                Ok(()) => {
                    self.counters.delivered.inc();
                    if attempts > 1 {
                        tracing::info!(url = %url, event = ?event.id, attempts, "webhook delivered after retries");
                    }
                    return;
                }
                Err(e) => e,
            };
            self.counters.failed_attempts.inc();
            if !matches!(error, AttemptError::Status(_)) {
                // The connection's state is unknown (a request may be half sent).
                self.conn = None;
            }
            if !error.retried() {
                self.counters.failed.inc();
                self.refused.note();
                self.last_refusal = format!("event {:?} ({:?}) {error}", event.id, event.kind);
                return;
            }
            if began.elapsed() + backoff >= retry_budget {
                self.counters.dropped.inc();
                tracing::warn!(
                    url = %url, event = ?event.id, kind = ?event.kind, attempts,
                    "webhook dropped after {attempts} attempts in {:?}: {error}", began.elapsed()
                );
                return;
            }
            tracing::debug!(url = %url, event = ?event.id, attempts, "webhook attempt failed, retrying in {backoff:?}: {error}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(max_backoff);
        }
    }

    /// One attempt: on the kept connection if it is still open, else a new one.
    async fn attempt(
        &mut self,
        event: &Event,
        signature: Option<&HeaderValue>,
    ) -> Result<(), AttemptError> {
        let reused = self.conn.as_ref().is_some_and(|c| !c.sender.is_closed());
        if !reused {
            self.conn = None;
        }
        match self.exchange(event, signature).await {
            // The receiver may have closed an idle connection just as we sent on it: that
            // is not the receiver failing, so try once more at once on a new connection.
            Err(AttemptError::Http(_)) if reused => {
                self.conn = None;
                self.exchange(event, signature).await
            }
            r => r,
        }
    }

    async fn exchange(
        &mut self,
        event: &Event,
        signature: Option<&HeaderValue>,
    ) -> Result<(), AttemptError> {
        let ep = &self.endpoint;
        let conn = match &mut self.conn {
            Some(c) => c,
            slot @ None => {
                let tls = self.tls.as_ref().map(|t| t.connector());
                slot.insert(connect(ep, tls.as_ref()).await?)
            }
        };
        conn.sender.ready().await.map_err(AttemptError::Http)?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(ep.path.as_str())
            .header(header::HOST, ep.host_header.clone())
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT))
            .header("x-orch-event", event.kind.clone())
            .header("x-orch-delivery", event.id.clone());
        if let Some(sig) = signature {
            request = request.header("x-orch-signature-256", sig.clone());
        }
        if let Some(auth) = &ep.authorization {
            request = request.header(header::AUTHORIZATION, auth.clone());
        }
        let request = request
            .body(Full::new(event.body.clone()))
            .expect("the path and headers were validated when the URL was parsed");
        let answer = conn
            .sender
            .send_request(request)
            .await
            .map_err(AttemptError::Http)?;
        let status = answer.status();
        // Read the answer to its end, so the connection can carry the next event.
        let mut body = answer.into_body();
        let mut read = 0;
        // The status is the answer: a broken or endless body only costs the connection
        // (trying again after a 2xx would deliver the event twice).
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => read += frame.data_ref().map_or(0, |d| d.len()),
                Err(_) => read = usize::MAX,
            }
            if read > ANSWER_KEPT {
                self.conn = None;
                break;
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(AttemptError::Status(status))
        }
    }
}

const USER_AGENT: &str = concat!("orch/", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use axum::extract::{ConnectInfo, Request as AxumRequest, State};
    use axum::http::HeaderMap;
    use serde_json::json;

    use super::*;

    /// What a test receiver was sent.
    #[derive(Clone, Debug)]
    struct Seen {
        /// The client's address: one per connection.
        peer: SocketAddr,
        target: String,
        headers: HeaderMap,
        body: Bytes,
    }

    type Answer = Arc<dyn Fn(usize) -> u16 + Send + Sync>;

    /// A webhook receiver on 127.0.0.1: records each request, answers `answer(n)` to the
    /// n-th (from 0).
    struct Receiver {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Receiver {
        async fn start(answer: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Receiver {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let answer: Answer = Arc::new(answer);
            let app = axum::Router::new()
                .fallback(
                    |State((seen, answer)): State<(Arc<Mutex<Vec<Seen>>>, Answer)>,
                     ConnectInfo(peer): ConnectInfo<SocketAddr>,
                     request: AxumRequest| async move {
                        let target = request.uri().to_string();
                        let headers = request.headers().clone();
                        let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                            .await
                            .unwrap();
                        let n = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(Seen {
                                peer,
                                target,
                                headers,
                                body,
                            });
                            seen.len() - 1
                        };
                        axum::http::StatusCode::from_u16(answer(n)).unwrap()
                    },
                )
                .with_state((seen.clone(), answer));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            Receiver { addr, seen }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        fn count(&self) -> usize {
            self.seen.lock().unwrap().len()
        }
    }

    /// Polls `condition` until it holds; panics after `deadline`.
    async fn wait_until(what: &str, deadline: Duration, condition: impl Fn() -> bool) {
        let began = Instant::now();
        while !condition() {
            assert!(
                began.elapsed() < deadline,
                "still waiting after {deadline:?}: {what}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn target(url: String) -> Target {
        Target {
            url,
            secret: None,
            tls: None,
        }
    }

    fn event(i: usize) -> serde_json::Value {
        json!({"id": format!("ev-{i}"), "kind": "failover.completed", "cluster": "main", "n": i})
    }

    fn get(family: &Family<UrlLabel, Counter>, url: &str) -> u64 {
        family.get_or_create(&UrlLabel::new(url)).get()
    }

    fn outcome(metrics: &WebhookMetrics, url: &str, outcome: Outcome) -> u64 {
        metrics
            .delivered
            .get_or_create(&DeliveryLabel {
                url: url_label(url),
                outcome,
            })
            .get()
    }

    #[tokio::test]
    async fn events_arrive_in_order_with_headers_and_a_verifiable_signature() {
        let receiver = Receiver::start(|_| 200).await;
        // Userinfo becomes HTTP Basic; the query is sent; neither is in the metrics label.
        let url = format!("http://orch:p%40ss@{}/hooks/orch?token=t1", receiver.addr);
        let secret = "It's a Secret to Everybody";
        let metrics = WebhookMetrics::default();
        let hooks = Webhooks::start(
            vec![Target {
                url: url.clone(),
                secret: Some(Secret::new(secret.into())),
                tls: None,
            }],
            metrics.clone(),
        );
        for i in 0..50 {
            hooks.send(&event(i));
        }
        assert_eq!(hooks.flush(Duration::from_secs(20)).await, 0);

        let seen = receiver.seen();
        assert_eq!(seen.len(), 50, "each event once");
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        for (i, s) in seen.iter().enumerate() {
            let h = |name: &str| s.headers.get(name).unwrap().to_str().unwrap().to_string();
            let body: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
            assert_eq!(body, event(i), "in order");
            assert_eq!(s.target, "/hooks/orch?token=t1");
            assert_eq!(h("content-type"), "application/json");
            assert_eq!(
                h("user-agent"),
                format!("orch/{}", env!("CARGO_PKG_VERSION"))
            );
            assert_eq!(h("x-orch-event"), "failover.completed");
            assert_eq!(h("x-orch-delivery"), format!("ev-{i}"));
            assert_eq!(h("authorization"), "Basic b3JjaDpwQHNz"); // orch:p@ss
            assert_eq!(h("host"), receiver.addr.to_string());
            // Verified independently of the code under test: ring's verify, and the hex
            // spelled out by hand.
            let signature = h("x-orch-signature-256");
            let hex_sig = signature.strip_prefix("sha256=").unwrap();
            assert_eq!(hex_sig.len(), 64);
            assert!(
                hex_sig
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            let tag: Vec<u8> = (0..32)
                .map(|j| u8::from_str_radix(&hex_sig[2 * j..2 * j + 2], 16).unwrap())
                .collect();
            hmac::verify(&key, &s.body, &tag).expect("signature verifies with the secret");
        }
        assert!(
            seen.iter().all(|s| s.peer == seen[0].peer),
            "one kept-alive connection"
        );
        assert_eq!(outcome(&metrics, &url, Outcome::Delivered), 50);
        assert_eq!(get(&metrics.failed_attempts, &url), 0);
        assert_eq!(get(&metrics.dropped, &url), 0);
    }

    #[tokio::test]
    async fn a_5xx_is_retried_until_delivered() {
        let receiver = Receiver::start(|n| if n < 2 { 500 } else { 200 }).await;
        let url = receiver.url("/");
        let metrics = WebhookMetrics::default();
        let hooks = Webhooks::start(vec![target(url.clone())], metrics.clone());
        hooks.send(&event(7));
        // Two backoffs: 250 ms + 500 ms.
        assert_eq!(hooks.flush(Duration::from_secs(20)).await, 0);
        let seen = receiver.seen();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|s| s.headers["x-orch-delivery"] == "ev-7"));
        assert_eq!(outcome(&metrics, &url, Outcome::Delivered), 1);
        assert_eq!(outcome(&metrics, &url, Outcome::Failed), 0);
        assert_eq!(get(&metrics.failed_attempts, &url), 2);
        assert_eq!(get(&metrics.dropped, &url), 0);
    }

    #[tokio::test]
    async fn a_400_is_not_retried() {
        let receiver = Receiver::start(|_| 400).await;
        let url = receiver.url("/hook");
        let metrics = WebhookMetrics::default();
        let hooks = Webhooks::start(vec![target(url.clone())], metrics.clone());
        hooks.send(&event(1));
        hooks.send(&event(2));
        // Both finished (refused): neither can be tried again.
        assert_eq!(hooks.flush(Duration::from_secs(20)).await, 0);
        let ids: Vec<_> = receiver
            .seen()
            .iter()
            .map(|s| s.headers["x-orch-delivery"].to_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["ev-1", "ev-2"]);
        assert_eq!(outcome(&metrics, &url, Outcome::Failed), 2);
        assert_eq!(outcome(&metrics, &url, Outcome::Delivered), 0);
        assert_eq!(get(&metrics.failed_attempts, &url), 2);
        assert_eq!(get(&metrics.dropped, &url), 0);
    }

    #[test]
    fn retryable_statuses() {
        for (status, retried) in [
            (400, false),
            (401, false),
            (404, false),
            (408, true),
            (429, true),
            (500, true),
            (503, true),
            (302, false),
        ] {
            let e = AttemptError::Status(StatusCode::from_u16(status).unwrap());
            assert_eq!(e.retried(), retried, "{status}");
        }
        assert!(AttemptError::Timeout(ATTEMPT_TIMEOUT).retried());
    }

    #[tokio::test]
    async fn a_dead_or_hanging_url_does_not_delay_a_live_one_nor_the_caller() {
        let live = Receiver::start(|_| 204).await;
        // Refuses connections: bound to find a free port, then closed.
        let dead = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        // Accepts connections (the kernel does, from the backlog) and never answers.
        let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = WebhookMetrics::default();
        let hooks = Webhooks::start(
            vec![
                target(format!("http://{dead}/")),
                target(format!("http://{}/", hanging.local_addr().unwrap())),
                target(live.url("/")),
            ],
            metrics.clone(),
        );
        let events: Vec<_> = (0..1000).map(event).collect();
        for e in &events {
            hooks.send(e);
        }
        // The caller never waits for a delivery: on this single-threaded runtime no task
        // (neither the senders nor the receiver) ran during the calls, yet all returned,
        // with every event queued for each of the three URLs. Decided by what ran, not by
        // a stopwatch on a busy machine.
        assert_eq!(live.count(), 0);
        assert_eq!(hooks.shared.pending.load(Ordering::Acquire), 3 * 1000);
        // Were the URLs served one after another, the first event alone would wait for
        // the dead URL's whole retry budget (60 s).
        wait_until(
            "the live URL has every event",
            Duration::from_secs(30),
            || live.count() == 1000,
        )
        .await;
        let ids: Vec<_> = live
            .seen()
            .iter()
            .map(|s| s.headers["x-orch-delivery"].to_str().unwrap().to_string())
            .collect();
        let expected: Vec<_> = (0..1000).map(|i| format!("ev-{i}")).collect();
        assert_eq!(ids, expected);
        assert_eq!(get(&metrics.dropped, &format!("http://{dead}/")), 0);
        assert!(
            hooks.flush(Duration::from_millis(1)).await > 0,
            "the dead URL's are pending"
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        // Never answers: the task is stuck on its first event.
        let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", hanging.local_addr().unwrap());
        let metrics = WebhookMetrics::default();
        let hooks = Webhooks::start(vec![target(url.clone())], metrics.clone());
        // No await in between: the task cannot take any event off the queue meanwhile.
        for i in 0..QUEUE_CAPACITY + 100 {
            hooks.send(&event(i));
        }
        assert_eq!(get(&metrics.dropped, &url), 100);
        assert_eq!(hooks.flush(Duration::ZERO).await, QUEUE_CAPACITY);
        // Once the task holds one event, there is room for exactly one more.
        wait_until(
            "the task takes the first event",
            Duration::from_secs(10),
            || hooks.lanes[0].tx.capacity() == 1,
        )
        .await;
        hooks.send(&event(0));
        hooks.send(&event(0));
        assert_eq!(get(&metrics.dropped, &url), 101);
        assert_eq!(outcome(&metrics, &url, Outcome::Delivered), 0);
    }

    /// Short enough for a test to see an event run out of retries.
    fn quick() -> Timing {
        Timing {
            attempt_timeout: Duration::from_millis(200),
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            retry_budget: Duration::from_millis(1700),
            log_interval: LOG_INTERVAL,
        }
    }

    /// In paused time: the attempts, back-offs and the budget are counted on tokio's clock,
    /// which moves only when every task waits (a refused connection is seen first), so the
    /// attempt count follows from the timing rules, not from how busy the machine is (in
    /// real time a 550 ms slack decided the third attempt to the hanging URL).
    #[tokio::test(start_paused = true)]
    async fn an_event_is_dropped_when_its_retries_run_out() {
        let dead = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (dead, hanging_url) = (
            format!("http://{dead}/"),
            format!("http://{}/", hanging.local_addr().unwrap()),
        );
        let metrics = WebhookMetrics::default();
        let hooks = Webhooks::start_with(
            vec![target(dead.clone()), target(hanging_url.clone())],
            metrics.clone(),
            quick(),
        );
        hooks.send(&event(1));
        assert_eq!(hooks.flush(Duration::from_secs(20)).await, 0);
        // Refused at once: attempts at 0, 250 and 750 ms; the next (1,750 ms) is past the
        // budget. Never answering: attempts at 0 (to 200), 450 (to 650) and 1,150 ms (to
        // 1,350); the next would start at 2,350.
        for (url, attempts) in [(&dead, 3), (&hanging_url, 3)] {
            assert_eq!(get(&metrics.failed_attempts, url), attempts, "{url}");
            assert_eq!(get(&metrics.dropped, url), 1, "{url}");
            assert_eq!(outcome(&metrics, url, Outcome::Delivered), 0);
            assert_eq!(outcome(&metrics, url, Outcome::Failed), 0);
        }
    }

    /// An HTTP/1.1 receiver that answers 200 and then closes the connection without saying
    /// so (no `Connection: close`), as a server restart or an idle timeout would.
    async fn closing_receiver() -> (SocketAddr, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answered = Arc::new(AtomicUsize::new(0));
        let count = answered.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The headers, then Content-Length bytes of body.
                let complete = |r: &[u8]| {
                    let text = String::from_utf8_lossy(r);
                    let Some(end) = text.find("\r\n\r\n") else {
                        return false;
                    };
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap();
                    r.len() >= end + 4 + length
                };
                while !complete(&request) {
                    let n = socket.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the client closed first");
                    request.extend_from_slice(&buf[..n]);
                }
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        (addr, answered)
    }

    #[tokio::test]
    async fn a_connection_the_receiver_closed_is_made_again() {
        let (addr, answered) = closing_receiver().await;
        let url = format!("http://{addr}/");
        let metrics = WebhookMetrics::default();
        let hooks = Webhooks::start(vec![target(url.clone())], metrics.clone());
        for i in 0..20 {
            hooks.send(&event(i));
            // One at a time, so that each finds the connection its predecessor used (and
            // the receiver closed).
            assert_eq!(hooks.flush(Duration::from_secs(20)).await, 0);
        }
        assert_eq!(answered.load(Ordering::SeqCst), 20);
        assert_eq!(outcome(&metrics, &url, Outcome::Delivered), 20);
        assert_eq!(
            get(&metrics.failed_attempts, &url),
            0,
            "a closed idle connection is not a failure"
        );
    }

    /// Everything logged while `f` runs (on this thread: the tests' runtime is
    /// current-thread, so the delivery tasks log here too).
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn start(&self) -> tracing::subscriber::DefaultGuard {
            let out = self.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || out.clone())
                .finish();
            tracing::subscriber::set_default(subscriber)
        }
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[tokio::test]
    async fn logs_never_show_the_secret_nor_the_userinfo() {
        let logs = Captured::default();
        let _guard = logs.start();
        let refusing = Receiver::start(|n| if n == 0 { 503 } else { 403 }).await;
        let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let secret = Some(Secret::new("s3cret-value".into()));
        let urls = [
            format!("http://orch:hunter2@{}/a?token=tok1", refusing.addr),
            format!(
                "http://orch:hunter2@{}/b?token=tok2",
                hanging.local_addr().unwrap()
            ),
            "gopher://orch:hunter2@h/?token=tok3".to_string(),
        ];
        let targets = urls
            .iter()
            .map(|url| Target {
                url: url.clone(),
                secret: secret.clone(),
                tls: None,
            })
            .collect();
        let metrics = WebhookMetrics::default();
        // One log line per URL and kind for the whole test, however long a busy machine
        // takes over the 1,034 events (with the 10 s interval, a second line came when it
        // took longer than that).
        let timing = Timing {
            log_interval: Duration::from_secs(3600),
            ..quick()
        };
        let hooks = Webhooks::start_with(targets, metrics.clone(), timing);
        for i in 0..QUEUE_CAPACITY + 10 {
            hooks.send(&event(i));
        }
        let a = &urls[0];
        wait_until("the refusing URL is done", Duration::from_secs(20), || {
            outcome(&metrics, a, Outcome::Failed) + get(&metrics.dropped, a)
                == (QUEUE_CAPACITY + 10) as u64
        })
        .await;
        let text = logs.text();
        for hidden in ["hunter2", "orch:hunter2", "tok1", "tok2", "tok3", "s3cret"] {
            assert!(!text.contains(hidden), "the logs show {hidden:?}:\n{text}");
        }
        // What they do say.
        assert!(
            text.contains("webhook skipped: scheme `gopher` is not supported"),
            "{text}"
        );
        // 1,034 refusals, reported at once for the first and then once per interval.
        let refused: Vec<_> = text.lines().filter(|l| l.contains("refused")).collect();
        assert_eq!(refused.len(), 1, "{text}");
        assert!(
            refused[0].contains(r#"refused 1 event(s) since the last report, not retried; last: event "ev-0" ("failover.completed") answered 403 Forbidden"#),
            "{text}"
        );
        assert!(
            text.contains(&format!("url=http://{}/b", hanging.local_addr().unwrap())),
            "{text}"
        );
        let full: Vec<_> = text.lines().filter(|l| l.contains("queue full")).collect();
        // The refusing URL drains its queue fast enough to drop none, or a few; the hanging
        // one drops 10, reported in one line (the next may come only an interval later).
        assert!(!full.is_empty() && full.len() <= 2, "{text}");
        assert!(
            full.iter()
                .any(|l| l.contains("/b") && l.contains("dropped 1 event(s)")),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_logged_once_then_counted() {
        let t = Throttle::new(LOG_INTERVAL);
        assert_eq!((t.due(), t.next_due()), (None, None));
        t.note();
        assert_eq!(t.due(), Some(1), "the first is logged at once");
        for _ in 0..5 {
            t.note();
        }
        assert_eq!(t.due(), None);
        assert_eq!(t.next_due(), Some(t.epoch + LOG_INTERVAL));
        tokio::time::advance(LOG_INTERVAL - Duration::from_millis(1)).await;
        assert_eq!(t.due(), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(t.due(), Some(5));
        assert_eq!((t.due(), t.next_due()), (None, None));
    }

    #[tokio::test]
    async fn none_sends_nothing() {
        let hooks = Webhooks::none();
        hooks.send(&event(1));
        assert_eq!(hooks.flush(Duration::ZERO).await, 0);
        assert_eq!(hooks.urls().count(), 0);
    }

    #[tokio::test]
    async fn a_bad_url_is_skipped() {
        let live = Receiver::start(|_| 200).await;
        let hooks = Webhooks::start(
            vec![target("ftp://example.com/".into()), target(live.url("/"))],
            WebhookMetrics::default(),
        );
        assert_eq!(hooks.urls().collect::<Vec<_>>(), [live.url("/")]);
        hooks.send(&event(1));
        assert_eq!(hooks.flush(Duration::from_secs(20)).await, 0);
        assert_eq!(live.count(), 1);
    }

    #[test]
    fn url_label_strips_userinfo_query_and_fragment() {
        for (url, label) in [
            (
                "https://user:pass@hooks.example.com:8443/orch?token=abc#x",
                "https://hooks.example.com:8443/orch",
            ),
            ("http://user:p@ss@h/a@b?q", "http://h/a@b"),
            ("http://h?token=1", "http://h"),
            ("http://[::1]:80/x", "http://[::1]:80/x"),
            ("http://h/path", "http://h/path"),
            ("not a url?secret", "not a url"),
        ] {
            assert_eq!(url_label(url), label, "{url}");
        }
        let target = Target {
            url: "https://u:hunter2@h/p?token=t".into(),
            secret: Some(Secret::new("s3cret".into())),
            tls: None,
        };
        let shown = format!("{target:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("token") && !shown.contains("s3cret")
        );
    }

    #[test]
    fn metrics_render_with_stripped_labels() {
        let metrics = WebhookMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        Counters::new(&metrics, &UrlLabel::new("https://u:pw@h/x?token=t"))
            .delivered
            .inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                r#"orch_webhook_deliveries_total{url="https://h/x",outcome="delivered"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"orch_webhook_dropped_total{url="https://h/x"} 0"#),
            "{text}"
        );
        assert!(text.contains(r#"orch_webhook_failed_attempts_total{url="https://h/x"} 0"#));
        assert!(!text.contains("pw") && !text.contains("token"));
    }

    #[test]
    fn urls_parse() {
        let ok = |url: &str| Endpoint::parse(url).unwrap();
        let e = ok("http://example.com");
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("example.com", 80, "/")
        );
        assert_eq!(e.host_header, "example.com");
        assert!(e.server_name.is_none() && e.authorization.is_none());
        let e = ok("HTTPS://example.com:8443?a=1#frag");
        assert_eq!((e.port, e.path.as_str()), (8443, "/?a=1"));
        assert_eq!(e.host_header, "example.com:8443");
        assert!(e.server_name.is_some());
        let e = ok("https://example.com:443/x");
        assert_eq!(e.host_header, "example.com");
        let e = ok("http://[::1]:8080/hook?x=y");
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("::1", 8080, "/hook?x=y")
        );
        assert_eq!(e.host_header, "[::1]:8080");
        let e = ok("https://[2001:db8::1]/");
        assert_eq!((e.host.as_str(), e.port), ("2001:db8::1", 443));
        let e = ok("http://a:b@h:81/");
        assert!(e.authorization.unwrap().is_sensitive());

        for (url, error) in [
            ("example.com/hook", "not a URL"),
            ("ftp://example.com/", "scheme `ftp` is not supported"),
            ("http:///path", "no host"),
            ("http://user@:80/", "no host"),
            ("http://h:99999/", "port `99999`"),
            ("http://h:0/", "port `0`"),
            ("http://h:x/", "port `x`"),
            ("http://[::1/", "not closed"),
            ("http://[zz]/", "not an IPv6 address"),
            ("http://[::1]x/", "expected `:PORT`"),
            ("http://h/a b", "percent-encode"),
            ("http://h o/", "not a host"),
            ("http://::1/", "must be in brackets"),
            ("http://h_[x]/", "not a host"),
            ("http://u%4:p@h/", "%-escape"),
        ] {
            let e = Endpoint::parse(url).unwrap_err();
            assert!(e.contains(error), "{url}: {e}");
            assert!(
                !e.contains("u%4:p"),
                "{url}: the error repeats the userinfo: {e}"
            );
        }
    }

    #[test]
    fn the_tls_client_config_builds() {
        TlsReloader::new(TlsFiles::default()).unwrap();
    }
}
