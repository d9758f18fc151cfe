//! The HTTP side: the axum router of both fake APIs, the accept loop on a
//! hyper HTTP/1.1 connection per socket, and the wrapper service that logs
//! every request and carries out wire faults (closing a connection without
//! an answer, or cutting a body short of its `Content-Length`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::config::Endpoint;
use crate::http::{rembg_error, verging_error, Note, Wire};
use crate::log::LogEntry;
use crate::state::Shared;
use crate::{rembg, rembg_server, remove_bg, verging};

/// Largest request body read (rembg's 50 MB limit plus multipart overhead).
const MAX_BODY: usize = 64 * 1024 * 1024;

fn is_verging_path(path: &str) -> bool {
    path.starts_with("/api/v1") || path.starts_with("/upload/") || path.starts_with("/files/")
}

async fn not_found(req: Request) -> Response {
    if is_verging_path(req.uri().path()) {
        verging_error(404, "Not found")
    } else {
        rembg_error(404, "Not found")
    }
}

async fn not_allowed(req: Request) -> Response {
    if is_verging_path(req.uri().path()) {
        verging_error(405, "Method not allowed")
    } else {
        rembg_error(405, "Method not allowed")
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/rmbg", post(rembg::remove))
        .route("/api/membership-usage", get(rembg::usage))
        .route("/api/v1/auth/me", get(verging::me))
        .route(
            "/api/v1/background-removal/create-job",
            post(verging::create_job),
        )
        .route("/api/v1/background-removal/jobs", get(verging::jobs))
        .route("/api/v1/upload-video", post(verging::upload_url))
        .route("/upload/{token}", put(verging::upload_put))
        .route("/files/{*name}", get(verging::file))
        .route("/v1.0/removebg", post(remove_bg::remove))
        .route("/v1.0/account", get(remove_bg::account))
        .route("/api/remove", post(rembg_server::remove))
        .route("/openapi.json", get(rembg_server::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// The error a service returns to make hyper close the connection without
/// writing an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn serve_one(
    shared: Arc<Shared>,
    mut router: Router,
    req: hyper::Request<Incoming>,
) -> Result<Response, Dropped> {
    let at = Instant::now();
    let at_system = SystemTime::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let mut resp = match tower_service::Service::call(&mut router, req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let note = resp
        .extensions_mut()
        .remove::<Note>()
        .unwrap_or_else(|| Note::new(Endpoint::classify(&path)));
    let status = resp.status().as_u16();
    let mut entry = LogEntry {
        seq: 0,
        at,
        at_system,
        duration: at.elapsed(),
        api: note.endpoint.api(),
        endpoint: note.endpoint,
        method,
        path,
        query,
        status: Some(status),
        fault: note.fault,
        file_name: note.file_name,
        image_sha256: note.sha256,
        charged: note.charged,
        job_id: note.job_id,
    };
    match note.wire {
        Wire::Normal => {
            shared.log.push(entry);
            Ok(resp)
        }
        Wire::Drop => {
            entry.status = None;
            shared.log.push(entry);
            Err(Dropped)
        }
        Wire::Truncate => {
            let (mut parts, body) = resp.into_parts();
            let full = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let declared = full.len().max(1);
            let sent = full.slice(..full.len() / 2);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(declared));
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let sent = sent.clone();
                async move {
                    match step {
                        0 => Some((Ok::<Bytes, std::io::Error>(sent), 1)),
                        1 => {
                            // let hyper flush the half body before failing
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Some((
                                Err(std::io::Error::new(
                                    std::io::ErrorKind::ConnectionAborted,
                                    "body cut short on purpose",
                                )),
                                2,
                            ))
                        }
                        _ => None,
                    }
                }
            });
            shared.log.push(entry);
            Ok(Response::from_parts(parts, Body::from_stream(stream)))
        }
    }
}

/// Accepts connections until `stop` fires.
pub(crate) async fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let router = router(shared.clone());
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(_) => {
                // e.g. out of file descriptors: back off a little
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                serve_one(shared.clone(), router.clone(), req)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
