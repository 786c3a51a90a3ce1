//! The operator's HTTP endpoint (hyper): `/metrics` for Prometheus, `/healthz` (alive),
//! `/readyz` (listening and not shedding calls), `POST /reload` (same as SIGHUP).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::observability::metrics::Metrics;

/// What the endpoint needs from the process.
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// Whether to take traffic: the reason not to, if any.
    pub ready: Box<dyn Fn() -> Result<(), String> + Send + Sync>,
    /// Triggers a reload; returns the outcome text.
    /// `true`: lists that shrank by more than half are taken too (`?force=1`).
    pub reload: Box<dyn Fn(bool) -> Result<String, String> + Send + Sync>,
    pub version: Box<dyn Fn() -> String + Send + Sync>,
    /// Brings the gauges read from live state up to date before a scrape.
    pub refresh: Box<dyn Fn() + Send + Sync>,
}

fn reply(code: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn serve(
    st: Arc<HttpState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    // HEAD is GET without the body (RFC 9110 9.3.2; hyper leaves the body out), which
    // load-balancer probes send; OPTIONS says what a path takes.
    let method = match req.method() {
        &Method::HEAD => &Method::GET,
        m => m,
    };
    let r = match (method, req.uri().path()) {
        (&Method::GET, "/metrics") => {
            (st.refresh)();
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                st.metrics.render(),
            )
        }
        (&Method::GET, "/healthz") => reply(
            StatusCode::OK,
            "text/plain",
            format!("ok {}\n", (st.version)()),
        ),
        (&Method::GET, "/readyz") => match (st.ready)() {
            Ok(()) => reply(
                StatusCode::OK,
                "text/plain",
                format!("ready {}\n", (st.version)()),
            ),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        (&Method::POST, "/reload") => {
            let st2 = st.clone();
            let force = req.uri().query().is_some_and(|q| {
                q.split('&')
                    .any(|kv| matches!(kv, "force" | "force=1" | "force=true" | "force=yes"))
            });
            // Loading millions of list entries must not stall the metrics runtime.
            match tokio::task::spawn_blocking(move || (st2.reload)(force)).await {
                Ok(Ok(msg)) => reply(StatusCode::OK, "text/plain", format!("{msg}\n")),
                Ok(Err(msg)) => reply(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "text/plain",
                    format!("{msg}\n"),
                ),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "reload task failed\n".into(),
                ),
            }
        }
        // A known path asked with the wrong method: say which method it takes.
        (m, path @ ("/metrics" | "/healthz" | "/readyz" | "/reload")) => {
            let allow = if path == "/reload" {
                "POST, OPTIONS"
            } else {
                "GET, HEAD, OPTIONS"
            };
            let mut r = if m == Method::OPTIONS {
                // A probe that sends OPTIONS (HAProxy's default) learns readiness too.
                let code = if path == "/readyz" && (st.ready)().is_err() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                };
                reply(code, "text/plain", String::new())
            } else {
                reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain",
                    format!("{path} takes {allow}\n"),
                )
            };
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static(allow),
            );
            r
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    Ok(r)
}

/// Connections served at once: Prometheus, a Grafana agent, a probe and an operator's
/// curl need a handful; past this a new one is closed at once, so that a flood of idle
/// connections cannot take every file descriptor of the process (QA 44). Fewer when
/// the open files limit keeps few back (see [`run`]).
pub const MAX_CONNECTIONS: usize = 256;

/// Connections served at once from one address: one host holding idle connections
/// open cannot take the places of the probes and the scrapers (QA 54: 64 half-sent
/// requests from one host had `/healthz` unanswered, which restarts a gateway whose
/// liveness probe it is).
const PER_SOURCE: usize = 8;

/// A request's header section must arrive within this (and a kept-alive connection
/// send its next one): a connection held open and silent is closed.
const HEADER_READ: Duration = Duration::from_secs(10);

/// Connections open per source address, at most `.1` each; an entry goes with its
/// last connection.
struct PerSource(
    std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    usize,
);

impl PerSource {
    /// A place for one more connection from `ip`, given back when the guard drops.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<SourcePlace> {
        let mut m = self.0.lock().ok()?;
        let n = m.entry(ip).or_default();
        if *n >= self.1 {
            return None;
        }
        *n += 1;
        Some(SourcePlace(self.clone(), ip))
    }
}

struct SourcePlace(Arc<PerSource>, std::net::IpAddr);

impl Drop for SourcePlace {
    fn drop(&mut self) {
        if let Ok(mut m) = self.0.0.lock()
            && let Some(n) = m.get_mut(&self.1)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Serves until the task is dropped, at most `max_connections` at once.
pub async fn run(listener: TcpListener, st: Arc<HttpState>, max_connections: usize) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    // One address takes a quarter of the places at most, so that a host holding
    // connections cannot take all of a small server's (QA 121: with 8 places and 8 per
    // address, one host had every /healthz closed).
    let per_source = (max_connections / 4).clamp(1, PER_SOURCE);
    let sources = Arc::new(PerSource(Default::default(), per_source));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                // No descriptor left (EMFILE) and the like: the listener stays readable,
                // so retrying at once would spin the thread that also runs the control
                // loop (QA 44: 100% CPU and /metrics unanswered until peers went away).
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(place) = sources.take(peer.ip().to_canonical()) else {
            drop(stream);
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let st = st.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| serve(st.clone(), req));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            drop((slot, place));
        });
    }
}

pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr).await?;
    let a = l.local_addr()?;
    Ok((l, a))
}
