//! The review page's action endpoints (JSON), the login form, the exports
//! and the page's small keyboard script:
//!
//! ```text
//! GET  /api/session                 actions on?, token needed?, who, CSRF value
//! GET  /login, POST /login          the token for a session cookie
//! POST /api/jobs/{id}/approve|flag|unmark|retry|confirm
//! POST /api/jobs/{id}/redo?provider=NAME
//! GET  /api/jobs/{id}/history       the job's actions
//! GET  /api/providers               names a redo may use
//! GET  /api/marks?jobs=1,2,3         the marks of those jobs (badges)
//! GET  /export.csv, /export.jsonl   approvals and flags
//! GET  /review-actions.js           keyboard: arrows, a, f, r
//! ```
//!
//! Every POST passes `auth::Auth::check` first (actions on, not
//! cross-site, token or session + CSRF header).
//!
//! Must not: take a file path from the request (jobs are named by id), or
//! put a secret into a response or a log line.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::actions_ops::{ActionError, Actions};
use super::auth::{Denied, COOKIE};
use crate::store::{Mark, MarkRow};

/// The most marks an export lists.
const EXPORT_MAX: i64 = 100_000;

/// The vendored keyboard and button script.
const SCRIPT: &str = include_str!("actions.js");

pub fn router(a: Arc<Actions>) -> Router {
    Router::new()
        .route("/api/session", get(session))
        .route("/login", get(login_form).post(login))
        .route("/api/jobs/{id}/approve", post(approve))
        .route("/api/jobs/{id}/flag", post(flag))
        .route("/api/jobs/{id}/unmark", post(unmark))
        .route("/api/jobs/{id}/retry", post(retry))
        .route("/api/jobs/{id}/redo", post(redo))
        .route("/api/jobs/{id}/confirm", post(confirm))
        .route("/api/jobs/{id}/history", get(history))
        .route("/api/providers", get(providers))
        .route("/api/marks", get(marks_of))
        .route("/export.csv", get(export_csv))
        .route("/export.jsonl", get(export_jsonl))
        .route("/review-actions.js", get(script))
        .with_state(a)
}

fn denied(d: Denied) -> Response {
    let body = json!({"error": {"code": d.code(), "message": d.to_string()}});
    let status = StatusCode::from_u16(d.status()).unwrap_or(StatusCode::FORBIDDEN);
    (status, Json(body)).into_response()
}

fn failed(e: ActionError) -> Response {
    let body = json!({"error": {"code": e.code(), "message": e.to_string()}});
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

fn answer<T: serde::Serialize>(r: Result<T, ActionError>) -> Response {
    match r {
        Ok(v) => (StatusCode::OK, Json(json!({"ok": true, "result": v}))).into_response(),
        Err(e) => failed(e),
    }
}

async fn session(State(a): State<Arc<Actions>>, h: HeaderMap) -> Response {
    let s = a.auth.session_csrf(&h);
    Json(json!({
        "actions": a.auth.enabled,
        "needs_token": a.auth.needs_token(),
        "logged_in": s.is_some(),
        "who": s.as_ref().map(|(w, _)| w.clone()),
        "csrf": s.map(|(_, c)| c),
    }))
    .into_response()
}

const LOGIN_PAGE: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>cutout · log in</title>
<style>body{font:16px system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}
input,button{font:inherit;width:100%;margin:.3rem 0 1rem;padding:.5rem;box-sizing:border-box}
.err{color:#b00020}</style></head><body><h1>cutout review</h1>{MSG}
<form method="post" action="/login"><label>Your name<input name="name" autocomplete="username"></label>
<label>Token (from <code>http.token_file</code>)<input name="token" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button></form></body></html>"#;

async fn login_form() -> Response {
    page(StatusCode::OK, "")
}

fn page(status: StatusCode, msg: &str) -> Response {
    let html = LOGIN_PAGE.replace("{MSG}", msg);
    let ct = [(header::CONTENT_TYPE, "text/html; charset=utf-8")];
    (status, ct, html).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    name: String,
}

async fn login(State(a): State<Arc<Actions>>, h: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    match a.auth.login(&h, &f.token, &f.name) {
        Ok(sid) => {
            let cookie = format!("{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict");
            let hs = [
                (header::SET_COOKIE, cookie),
                (header::LOCATION, "/".to_string()),
            ];
            (StatusCode::SEE_OTHER, hs).into_response()
        }
        Err(Denied::BadToken) => {
            tracing::warn!("review: a login with a wrong token was refused");
            page(
                StatusCode::UNAUTHORIZED,
                r#"<p class="err">Wrong token.</p>"#,
            )
        }
        Err(d) => denied(d),
    }
}

async fn mark(a: &Actions, h: &HeaderMap, id: i64, m: Option<Mark>) -> Response {
    match a.auth.check(h) {
        Ok(who) => answer(a.mark(id, m, &who).await.map(|()| m)),
        Err(d) => denied(d),
    }
}

async fn approve(State(a): State<Arc<Actions>>, h: HeaderMap, Path(id): Path<i64>) -> Response {
    mark(&a, &h, id, Some(Mark::Approved)).await
}

async fn flag(State(a): State<Arc<Actions>>, h: HeaderMap, Path(id): Path<i64>) -> Response {
    mark(&a, &h, id, Some(Mark::Flagged)).await
}

async fn unmark(State(a): State<Arc<Actions>>, h: HeaderMap, Path(id): Path<i64>) -> Response {
    mark(&a, &h, id, None).await
}

async fn retry(State(a): State<Arc<Actions>>, h: HeaderMap, Path(id): Path<i64>) -> Response {
    match a.auth.check(&h) {
        Ok(who) => answer(a.retry(id, &who).await),
        Err(d) => denied(d),
    }
}

#[derive(Deserialize)]
struct RedoQuery {
    provider: String,
}

async fn redo(
    State(a): State<Arc<Actions>>,
    h: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<RedoQuery>,
) -> Response {
    match a.auth.check(&h) {
        Ok(who) => answer(a.redo(id, &q.provider, &who).await),
        Err(d) => denied(d),
    }
}

async fn confirm(State(a): State<Arc<Actions>>, h: HeaderMap, Path(id): Path<i64>) -> Response {
    match a.auth.check(&h) {
        Ok(who) => answer(a.confirm(id, &who).await),
        Err(d) => denied(d),
    }
}

async fn history(State(a): State<Arc<Actions>>, Path(id): Path<i64>) -> Response {
    let store = a.ctx.store.clone();
    let got = crate::blocking::run("review: history", move || {
        let mark = store.mark_of(id)?;
        let acts = store.actions_of(id)?;
        Ok::<_, crate::store::StoreError>((mark, acts))
    })
    .await;
    match got {
        Ok(Ok((mark, acts))) => {
            let acts: Vec<_> = acts
                .iter()
                .map(|x| {
                    json!({"action": x.id, "kind": x.kind, "state": x.state, "by": x.by,
                           "provider": x.provider, "at": rfc3339(x.created_ms)})
                })
                .collect();
            Json(json!({"job": id, "mark": mark, "actions": acts})).into_response()
        }
        Ok(Err(e)) => failed(e.into()),
        Err(e) => failed(e.into()),
    }
}

#[derive(Deserialize)]
struct MarksQuery {
    /// Job ids, comma-separated (at most 500 are looked at).
    jobs: String,
}

/// The marks of the jobs on screen (for the badges).
async fn marks_of(State(a): State<Arc<Actions>>, Query(q): Query<MarksQuery>) -> Response {
    let ids: Vec<i64> = q
        .jobs
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .take(500)
        .collect();
    let store = a.ctx.store.clone();
    match crate::blocking::run("review: marks", move || store.marks_for(ids)).await {
        Ok(Ok(v)) => {
            let m: serde_json::Map<String, serde_json::Value> = v
                .into_iter()
                .map(|(j, m)| (j.to_string(), json!(m.as_str())))
                .collect();
            Json(json!({ "marks": m })).into_response()
        }
        Ok(Err(e)) => failed(e.into()),
        Err(e) => failed(e.into()),
    }
}

async fn providers(State(a): State<Arc<Actions>>) -> Response {
    let names: Vec<&String> = a.ctx.cfg.providers.keys().collect();
    Json(json!({ "providers": names })).into_response()
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

async fn marks(a: &Actions) -> Result<Vec<MarkRow>, Response> {
    let store = a.ctx.store.clone();
    match crate::blocking::run("review: export", move || store.marks(EXPORT_MAX)).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Err(failed(e.into())),
        Err(e) => Err(failed(e.into())),
    }
}

async fn export_jsonl(State(a): State<Arc<Actions>>) -> Response {
    let rows = match marks(&a).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut out = String::new();
    for r in &rows {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        v["at"] = json!(rfc3339(r.at_ms));
        out.push_str(&v.to_string());
        out.push('\n');
    }
    let ct = [(header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8")];
    (StatusCode::OK, ct, out).into_response()
}

/// One CSV field: quoted when needed, and a leading `=`, `+`, `-` or `@`
/// defused so a spreadsheet never runs it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

async fn export_csv(State(a): State<Arc<Actions>>) -> Response {
    let rows = match marks(&a).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut out = String::from("job,mark,by,at,inbox,input,outcome,output\n");
    for r in &rows {
        let fields = [
            r.job.to_string(),
            r.mark.as_str().to_string(),
            r.by.clone(),
            rfc3339(r.at_ms),
            r.inbox.clone(),
            r.input.clone(),
            r.outcome.clone().unwrap_or_default(),
            r.output.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    let hs = [
        (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
        (
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"cutout-review.csv\"",
        ),
    ];
    (StatusCode::OK, hs, out).into_response()
}

async fn script() -> Response {
    let hs = [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")];
    (StatusCode::OK, hs, SCRIPT).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("a.jpg"), "a.jpg");
        assert_eq!(csv_field("a,b.jpg"), "\"a,b.jpg\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}
