//! The fake of rembg's own server (`rembg s`, rembg 2.0.x):
//! `POST /api/remove` (multipart part `file`; form fields `model`, `a`,
//! `af`, `ab`, `ae`, `om`, `ppm`, `dc`, `vm`; query `bgc`, `extras`) answered
//! 200 `image/png`, and `GET /openapi.json`.
//!
//! Like the real server: FastAPI's 422 `{"detail": [{type, loc, msg}]}`
//! for a missing file, a bad field value or an unknown model name; a 500
//! (plain text) for a malformed `bgc` or a picture it cannot read. Stricter
//! than the real one: unknown parts, repeated parts and unknown query
//! parameters are 422 too (so a client bug cannot hide). No key of its own;
//! with a key configured the fake plays a proxy in front of it that wants
//! `Authorization: Bearer <key>` (401 otherwise). Each call's model, fields
//! and query are recorded ([`crate::FakeProvider::rembg_server_calls`]).

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::config::Endpoint;
use crate::http::{read_form, sha256_hex, Ctx, Form, FormError};
use crate::imaging::{self, Options, OutFormat};
use crate::peers::RembgServerCall;
use crate::state::Shared;

/// rembg 2.0.x session names.
const MODELS: &[&str] = &[
    "u2net",
    "u2netp",
    "u2net_human_seg",
    "u2net_cloth_seg",
    "silueta",
    "isnet-general-use",
    "isnet-anime",
    "sam",
    "birefnet-general",
    "birefnet-general-lite",
    "birefnet-portrait",
    "birefnet-dis",
    "birefnet-hrsod",
    "birefnet-cod",
    "birefnet-massive",
    "bria-rmbg",
    "ben2-base",
    "u2net_custom",
];
const FIELDS: &[&str] = &[
    "file", "model", "a", "af", "ab", "ae", "om", "ppm", "dc", "vm",
];

/// An error as the server (or a proxy) answers it: 500 as plain text,
/// anything else `{"detail": msg}`.
pub(crate) fn error(status: u16, msg: &str) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == 500 {
        return (
            s,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Internal Server Error",
        )
            .into_response();
    }
    (s, Json(json!({"detail": msg}))).into_response()
}

/// FastAPI's 422 naming one body field.
pub(crate) fn invalid(field: &str, msg: &str) -> Response {
    invalid_at("body", field, "value_error", msg)
}

fn invalid_at(place: &str, field: &str, kind: &str, msg: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"detail": [{"type": kind, "loc": [place, field], "msg": msg, "input": null}]})),
    )
        .into_response()
}

fn check_auth(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Response> {
    let key = ctx.shared.cfg(|c| c.rembg_server.key.clone());
    if key.is_empty() {
        return Ok(());
    }
    let want = format!("Bearer {key}");
    match headers.get(header::AUTHORIZATION) {
        Some(v) if v.as_bytes() == want.as_bytes() => Ok(()),
        _ => Err(error(401, "Not authenticated")),
    }
}

/// `POST /api/remove`
pub(crate) async fn remove(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let mut ctx = Ctx::new(shared, Endpoint::RembgServerRemove);
    let resp = remove_inner(&mut ctx, req).await.unwrap_or_else(|e| e);
    ctx.finish(resp)
}

async fn remove_inner(ctx: &mut Ctx, req: Request) -> Result<Response, Response> {
    ctx.admit().await?;
    let headers = req.headers().clone();
    let query = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .map_err(|_| error(500, "bad query"))?;
    let form = read_form(req).await;
    if let Ok(f) = &form {
        if let Some(p) = f.get("file") {
            ctx.note.file_name = p.file_name.clone();
            if !p.data.is_empty() {
                ctx.note.sha256 = Some(sha256_hex(&p.data));
            }
        }
    }
    ctx.pre_fault().await?;
    check_auth(ctx, &headers)?;
    let form = match form {
        Ok(f) => f,
        Err(FormError::TooLarge) => return Err(error(413, "Request Entity Too Large")),
        Err(_) => return Err(invalid_at("body", "file", "missing", "Field required")),
    };
    let opts = validate(&form, &query)?;
    ctx.shared
        .peers
        .calls
        .lock()
        .unwrap()
        .push(RembgServerCall {
            model: form.text("model"),
            fields: form
                .parts
                .iter()
                .filter(|p| p.name != "file")
                .map(|p| {
                    (
                        p.name.clone(),
                        String::from_utf8_lossy(&p.data).into_owned(),
                    )
                })
                .collect(),
            query,
        });
    let input = form.get("file").expect("validated").data.clone();
    // The real server decodes whatever PIL reads; an unreadable file is a 500.
    let kind = imaging::sniff(&input).ok_or_else(|| error(500, "cannot identify image file"))?;
    let work_in = input.clone();
    let out = tokio::task::spawn_blocking(move || imaging::rembg_cutout(&work_in, kind, &opts))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|e| error(500, &e))?;
    ctx.note.charged = true;
    let resp = (StatusCode::OK, [(header::CONTENT_TYPE, "image/png")], out).into_response();
    Ok(ctx.post_fault(resp, Some((input, kind))).await)
}

fn validate(form: &Form, query: &[(String, String)]) -> Result<Options, Response> {
    for p in &form.parts {
        if !FIELDS.contains(&p.name.as_str()) {
            return Err(invalid_at(
                "body",
                &p.name,
                "extra_forbidden",
                "Extra inputs are not permitted",
            ));
        }
        if p.name != "file" && p.file_name.is_some() {
            return Err(invalid(&p.name, "Input should be a valid string"));
        }
    }
    if let Some(d) = form.duplicate() {
        return Err(invalid(d, "Field sent more than once"));
    }
    match form.get("file") {
        Some(f) if f.file_name.is_some() && !f.data.is_empty() => {}
        Some(_) => {
            return Err(invalid(
                "file",
                "Expected UploadFile, received: <class 'str'>",
            ))
        }
        None => return Err(invalid_at("body", "file", "missing", "Field required")),
    }
    if let Some(m) = form.text("model") {
        if !MODELS.contains(&m.as_str()) {
            return Err(invalid_at(
                "body",
                "model",
                "string_pattern_mismatch",
                &format!("String should match pattern '({})'", MODELS.join("|")),
            ));
        }
    }
    let mut o = Options {
        format: OutFormat::Png,
        expand: false,
        ..Options::default()
    };
    o.mask = check_fields(form)?;
    check_query(query, &mut o)?;
    Ok(o)
}

/// The form fields' values; returns whether only the mask is wanted.
fn check_fields(form: &Form) -> Result<bool, Response> {
    let mut mask = false;
    for b in ["a", "om", "ppm", "dc", "vm"] {
        match form.text(b).as_deref() {
            None | Some("false") => {}
            Some("true") => mask |= b == "om",
            Some(_) => {
                return Err(invalid_at(
                    "body",
                    b,
                    "bool_parsing",
                    "Input should be a valid boolean",
                ))
            }
        }
    }
    for (k, max) in [("af", 255), ("ab", 255), ("ae", i64::MAX)] {
        if let Some(v) = form.text(k) {
            match v.parse::<i64>() {
                Ok(n) if (0..=max).contains(&n) => {}
                Ok(_) => {
                    return Err(invalid_at(
                        "body",
                        k,
                        "less_than_equal",
                        "Input should be less than or equal to 255",
                    ))
                }
                Err(_) => {
                    return Err(invalid_at(
                        "body",
                        k,
                        "int_parsing",
                        "Input should be a valid integer, unable to parse string as an integer",
                    ))
                }
            }
        }
    }
    Ok(mask)
}

/// `bgc` and `extras`; nothing else is taken.
fn check_query(query: &[(String, String)], o: &mut Options) -> Result<(), Response> {
    for (k, v) in query {
        match k.as_str() {
            "bgc" => {
                let c: Vec<u8> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                if c.len() != 4 || v.split(',').count() != 4 {
                    return Err(error(500, "malformed bgc"));
                }
                o.bg_color = Some([c[0], c[1], c[2], c[3]]);
            }
            "extras" => {
                if serde_json::from_str::<serde_json::Value>(v).is_err() {
                    return Err(invalid_at(
                        "query",
                        "extras",
                        "json_invalid",
                        "extras is not JSON",
                    ));
                }
            }
            other => {
                return Err(invalid_at(
                    "query",
                    other,
                    "extra_forbidden",
                    "Extra inputs are not permitted",
                ))
            }
        }
    }
    Ok(())
}

/// `GET /openapi.json`: enough of the real description to be recognised.
pub(crate) async fn openapi(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let mut ctx = Ctx::new(shared, Endpoint::RembgServerOpenapi);
    let headers = req.headers().clone();
    drop(req);
    let resp = async {
        ctx.admit().await?;
        ctx.pre_fault().await?;
        check_auth(&ctx, &headers)?;
        let body = json!({
            "openapi": "3.1.0",
            "info": {"title": "Rembg", "version": "2.0.86"},
            "paths": {"/api/remove": {"get": {}, "post": {}}},
        });
        Ok(Json(body).into_response())
    }
    .await
    .unwrap_or_else(|e: Response| e);
    ctx.finish(resp)
}
