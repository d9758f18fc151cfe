//! The optional HTTP endpoint (`[http] listen = "127.0.0.1:9808"`):
//! `GET /healthz` (200 while the pipeline is alive, 503 with the reason
//! otherwise) and `GET /metrics` (Prometheus text format), plus the review
//! page's routes (`crate::review`) when `[http] review` is on.
//!
//! Owns: binding the listener, the two routes and their answers, mounting
//! the review router and the review actions' router.
//!
//! Must not: change anything itself (every route here is read-only; the
//! review's actions are gated by `review::auth`), expose config values or
//! secrets (file names only on the review page), or keep the daemon from
//! stopping.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::{self, Liveness};
use crate::service::{self, Heartbeat};

/// The HTTP endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("`http.listen` = \"{addr}\": cannot listen there: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("http server: {0}")]
    Serve(std::io::Error),
}

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub heartbeat: Arc<Heartbeat>,
    /// The review page (None: `[http] review = false`, or tests).
    pub review: Option<Arc<crate::review::Review>>,
    /// The review page's actions and exports (None: not served).
    pub actions: Option<Arc<crate::review::actions_ops::Actions>>,
}

/// Bind the listener (call before `READY=1`, so a bad address fails the
/// start instead of going unnoticed).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, HttpError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

pub fn router(state: HttpState) -> Router {
    let (review, actions) = (state.review.clone(), state.actions.clone());
    let mut base = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(state);
    if let Some(r) = review {
        base = base.merge(crate::review::routes::router(r));
    }
    if let Some(a) = actions {
        base = base.merge(crate::review::actions::router(a));
    }
    base
}

/// Serve until `stop` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stop)
        .await
        .map_err(HttpError::Serve)
}

async fn healthz(State(st): State<HttpState>) -> impl IntoResponse {
    let status = service::status_line(&metrics::global().snapshot());
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match st.heartbeat.verdict() {
        Ok(why) => (StatusCode::OK, plain, format!("ok\n{why}\n{status}\n")),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            plain,
            format!("unavailable\n{why}\n"),
        ),
    }
}

async fn metrics_text(State(st): State<HttpState>) -> impl IntoResponse {
    let live = Liveness {
        up: st.heartbeat.verdict().is_ok(),
        heartbeat_age: st.heartbeat.age().map(|a| a.as_secs_f64()),
    };
    let body = metrics::global().render(live);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A plain HTTP/1.1 GET over a real TCP connection.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("send");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        (code, body.to_string())
    }

    #[tokio::test]
    async fn healthz_follows_the_heartbeat() {
        let hb = Arc::new(Heartbeat::new());
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            HttpState {
                heartbeat: hb.clone(),
                review: None,
                actions: None,
            },
            async move {
                let _ = rx.await;
            },
        ));

        let (code, body) = get(addr, "/healthz").await;
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("starting"), "{body}");

        hb.beat();
        let (code, body) = get(addr, "/healthz").await;
        assert_eq!(code, 200, "{body}");
        assert!(body.starts_with("ok\n"), "{body}");
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("\ncutout_up 1\n"), "{body}");

        hb.set_stopping();
        let (code, body) = get(addr, "/healthz").await;
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("stopping"), "{body}");
        let (_, body) = get(addr, "/metrics").await;
        assert!(body.contains("\ncutout_up 0\n"), "{body}");

        let (code, _) = get(addr, "/nope").await;
        assert_eq!(code, 404);

        let _ = tx.send(());
        server.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn a_busy_address_names_the_key() {
        let first = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = first.local_addr().expect("addr");
        let e = bind(addr).await.expect_err("address in use");
        assert!(e.to_string().contains("http.listen"), "{e}");
    }
}
