//! The admin endpoint's own accept loop: a connection cap and three timeouts, all counted.
//!
//! `axum::serve` accepts every socket and keeps it as long as the peer likes: 700 sockets that
//! send half a request took the process's file descriptors from the SIP listeners. Here each
//! connection is a hyper HTTP/1.1 connection watched by a small state machine: *idle* (no request
//! byte yet, bounded by `idle_timeout_ms`), *head* (from the first byte of a request head until
//! the head is parsed, `header_timeout_ms`) and *request* (until the response is written,
//! `request_timeout_ms`). A connection past its bound is closed. Over `max_connections` a new
//! socket is closed at once. The counters are in `/metrics` (`lcs_admin_*`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::config::AdminSettings;

/// The admin endpoint's connection counters (`/metrics`).
#[derive(Debug, Default)]
pub struct AdminMetrics {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused: AtomicU64,
    /// Connections closed: no request byte within the idle timeout.
    pub idle_timeouts: AtomicU64,
    /// Connections closed: a request head not complete within the header timeout.
    pub header_timeouts: AtomicU64,
    /// Connections closed: a request not answered within the request timeout.
    pub request_timeouts: AtomicU64,
    /// Requests refused by the guard, indexed by [`super::guard::Refusal`].
    pub refused_requests: [AtomicU64; 4],
}

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const REQUEST: u8 = 2;

/// Where one connection is, and a wake-up for its watchdog when that changes.
#[derive(Debug, Default)]
struct Phase {
    now: AtomicU8,
    changed: Notify,
}

impl Phase {
    fn set(&self, phase: u8) {
        if self.now.swap(phase, Ordering::AcqRel) != phase {
            self.changed.notify_one();
        }
    }
}

/// A socket that moves its connection from idle to head when a byte arrives.
struct Watched {
    inner: TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && self.phase.now.load(Ordering::Acquire) == IDLE {
            self.phase.set(HEAD);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts on `listener` until the task is dropped, serving `router` under `settings`' cap and
/// timeouts.
pub async fn run(
    listener: TcpListener,
    router: Router,
    settings: AdminSettings,
    metrics: Arc<AdminMetrics>,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            // Out of file descriptors or a reset before accept: wait a little, keep serving.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if metrics.open.load(Ordering::Acquire) >= u64::from(settings.max_connections) {
            metrics.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        metrics.open.fetch_add(1, Ordering::AcqRel);
        metrics.accepted.fetch_add(1, Ordering::Relaxed);
        let router = router.clone();
        let settings = settings.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            connection(stream, router, &settings, &metrics).await;
            metrics.open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Serves one connection until it ends or its watchdog fires.
async fn connection(
    stream: TcpStream,
    router: Router,
    settings: &AdminSettings,
    metrics: &AdminMetrics,
) {
    let phase = Arc::new(Phase::default());
    let io = TokioIo::new(Watched {
        inner: stream,
        phase: phase.clone(),
    });
    let on_request = phase.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        on_request.set(REQUEST);
        let mut router = router.clone();
        let phase = on_request.clone();
        async move {
            let response = tower_service::Service::call(&mut router, req).await;
            phase.set(IDLE);
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::select! {
        _ = conn => {}
        counter = watchdog(&phase, settings, metrics) => {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Returns the counter of the bound the connection overstayed.
async fn watchdog<'m>(
    phase: &Phase,
    settings: &AdminSettings,
    metrics: &'m AdminMetrics,
) -> &'m AtomicU64 {
    loop {
        let (limit, counter) = match phase.now.load(Ordering::Acquire) {
            IDLE => (settings.idle_timeout_ms, &metrics.idle_timeouts),
            HEAD => (settings.header_timeout_ms, &metrics.header_timeouts),
            _ => (settings.request_timeout_ms, &metrics.request_timeouts),
        };
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(limit)) => return counter,
            () = phase.changed.notified() => {}
        }
    }
}
