//! What webhook delivery sustains: events per second from `Webhooks::send` to a receiver on
//! loopback that answers 204 at once (one URL, its one kept-alive connection, one event at
//! a time as in production), and what one `send()` costs the caller (serialize the event,
//! queue it), both when it is queued and when the queue is full and it is dropped. orch's
//! side runs on a current-thread runtime, as in `orch watch`; the receiver on its own
//! thread. Run: `cargo bench --bench webhook`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use orch::watch::webhook::{
    DeliveryLabel, Outcome, QUEUE_CAPACITY, Target, UrlLabel, WebhookMetrics, Webhooks,
};
use serde_json::json;

/// Events per end-to-end sample.
const N: usize = 10_000;
/// Sent between two flushes: below the queue's capacity, so none is dropped.
const BATCH: usize = 1_000;

/// A receiver on its own thread that answers every POST with 204 once it has the body.
fn receiver() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new()
                .fallback(|_: axum::body::Bytes| async { axum::http::StatusCode::NO_CONTENT });
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// An event the size of watch's (a failover with its hosts).
fn event(i: usize) -> serde_json::Value {
    json!({
        "id": format!("01J9Z3K4QH8W6Y2M5N7P{i:06}"),
        "kind": "failover.completed",
        "at": "2026-01-12T10:04:31.512Z",
        "cluster": "main",
        "from": "db1.dc1.example.com:3306",
        "to": "db2.dc1.example.com:3306",
        "replicas": ["db3.dc1.example.com:3306", "db4.dc2.example.com:3306"],
        "millis": 2140,
        "run": 4127,
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("http://{}/hooks/orch", receiver());
    let metrics = WebhookMetrics::default();
    let hooks = rt.block_on(async {
        Webhooks::start(
            vec![Target {
                url: url.clone(),
                secret: Some(orch::spec::secret::Secret::new("bench-secret".into())),
                tls: None,
            }],
            metrics.clone(),
        )
    });
    let events: Vec<_> = (0..BATCH).map(event).collect();

    let mut group = c.benchmark_group("webhook");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("deliver 10,000 events to a loopback receiver (204)", |b| {
        b.iter(|| {
            rt.block_on(async {
                for _ in 0..N / BATCH {
                    for e in &events {
                        hooks.send(e);
                    }
                    assert_eq!(hooks.flush(Duration::from_secs(60)).await, 0);
                }
            })
        })
    });

    group.sample_size(50);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    group.bench_function("send() one event, queued", |b| {
        b.iter_custom(|iters| {
            // Timed in batches that fit the queue; the deliveries between are not timed.
            let mut timed = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(BATCH);
                let began = Instant::now();
                for e in &events[..n] {
                    hooks.send(e);
                }
                timed += began.elapsed();
                left -= n;
                assert_eq!(rt.block_on(hooks.flush(Duration::from_secs(60))), 0);
            }
            timed
        })
    });
    let dropped = |url: &str| metrics.dropped.get_or_create(&UrlLabel::new(url)).get();
    assert_eq!(dropped(&url), 0, "the receiver kept up");
    let delivered = metrics
        .delivered
        .get_or_create(&DeliveryLabel {
            url: UrlLabel::new(&url).url,
            outcome: Outcome::Delivered,
        })
        .get();
    assert!(delivered >= N as u64);

    // A receiver that accepts connections and never answers: the queue stays full.
    let _guard = rt.enter();
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging_url = format!("http://{}/", hanging.local_addr().unwrap());
    let stuck = Webhooks::start(
        vec![Target {
            url: hanging_url.clone(),
            secret: None,
            tls: None,
        }],
        metrics.clone(),
    );
    for e in events.iter().cycle().take(QUEUE_CAPACITY + 1) {
        stuck.send(e);
    }
    assert!(dropped(&hanging_url) >= 1);
    group.bench_function("send() one event, queue full (dropped)", |b| {
        b.iter(|| stuck.send(&events[7]))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
