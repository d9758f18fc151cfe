//! The fake remove.bg API: `POST /v1.0/removebg` (strict multipart
//! validation, a real PNG cut-out, credits and the `X-Credits-Charged`
//! header, the megapixel-image rate window with `X-RateLimit-*` on every
//! answer and `Retry-After` on its 429) and `GET /v1.0/account`.
//!
//! Errors have the vendor's shape `{"errors": [{"title", "code",
//! "detail"}]}`: 400 for bad requests (`invalid_<param>`,
//! `missing_source`, `file_too_large`, …), 402 out of credits, 403 a
//! missing or wrong `X-Api-Key`, 429 over the rate window. Failed calls
//! are not charged. Order: generic limiter → latency → read body → rate
//! window → "before" faults → key → validation → credits → work → charge
//! → "after" faults.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::config::Endpoint;
use crate::http::{read_form, sha256_hex, Ctx, Form, FormError};
use crate::imaging::{self, Kind, Options, OutFormat};
use crate::peers::Budget;
use crate::state::Shared;

const MAX_FILE: usize = 12 * 1024 * 1024;
const MAX_MEGAPIXELS: f64 = 50.0;
const FIELDS: &[&str] = &[
    "image_file",
    "image_url",
    "image_file_b64",
    "size",
    "type",
    "type_level",
    "format",
    "roi",
    "crop",
    "crop_margin",
    "scale",
    "position",
    "channels",
    "add_shadow",
    "semitransparency",
    "bg_color",
    "bg_image_url",
    "bg_image_file",
];

/// remove.bg's error body.
pub(crate) fn error(status: u16, code: &str, title: &str) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        s,
        Json(json!({"errors": [{"title": title, "code": code, "detail": title}]})),
    )
        .into_response()
}

pub(crate) fn no_credits() -> Response {
    error(402, "insufficient_credits", "Insufficient credits")
}

fn invalid(param: &str, v: &str) -> Response {
    error(
        400,
        &format!("invalid_{param}"),
        &format!("Invalid {param} parameter: {v:?}"),
    )
}

fn with_budget(mut resp: Response, b: &Budget) -> Response {
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(b.limit));
    h.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(b.remaining.floor() as u64),
    );
    h.insert("x-ratelimit-reset", HeaderValue::from(b.reset));
    if let Some(s) = b.refused_for {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

/// `POST /v1.0/removebg`
pub(crate) async fn remove(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let mut ctx = Ctx::new(shared, Endpoint::RemoveBgRemove);
    let resp = remove_inner(&mut ctx, req).await.unwrap_or_else(|e| e);
    ctx.finish(resp)
}

async fn remove_inner(ctx: &mut Ctx, req: Request) -> Result<Response, Response> {
    ctx.admit().await?;
    let headers = req.headers().clone();
    let form = read_form(req).await;
    let mut cost = 1.0;
    if let Ok(f) = &form {
        if let Some(p) = f.get("image_file") {
            ctx.note.file_name = p.file_name.clone();
            if !p.data.is_empty() {
                ctx.note.sha256 = Some(sha256_hex(&p.data));
            }
            if let Some((w, h)) =
                imaging::sniff(&p.data).and_then(|k| imaging::dimensions(&p.data, k).ok())
            {
                let small = matches!(
                    f.text("size").as_deref(),
                    Some("preview" | "small" | "regular")
                );
                let mp = f64::from(w) * f64::from(h) / 1e6;
                cost = if small {
                    1.0
                } else {
                    mp.min(25.0).ceil().max(1.0)
                };
            }
        }
    }
    let window = ctx.shared.cfg(|c| c.peers.remove_bg_window);
    let budget = ctx.shared.peers.take(window, cost);
    let out = async {
        if budget.refused_for.is_some() {
            ctx.note.fault = Some("rate-limit".into());
            return Err(error(429, "rate_limit_exceeded", "Rate limit exceeded"));
        }
        ctx.pre_fault().await?;
        check_key(ctx, &headers)?;
        let form = match form {
            Ok(f) => f,
            Err(FormError::TooLarge) => return Err(error(400, "file_too_large", "File too large")),
            Err(_) => {
                return Err(error(
                    400,
                    "missing_source",
                    "No image given: send multipart/form-data with image_file",
                ))
            }
        };
        let (kind, opts, small) = validate(&form)?;
        work(ctx, &form, kind, opts, small).await
    }
    .await;
    Ok(with_budget(out.unwrap_or_else(|e| e), &budget))
}

async fn work(
    ctx: &mut Ctx,
    form: &Form,
    kind: Kind,
    opts: Options,
    small: bool,
) -> Result<Response, Response> {
    let input = form.get("image_file").expect("validated").data.clone();
    let price = if small { 0.25 } else { 1.0 };
    let (credits, free) = ctx
        .shared
        .cfg(|c| (c.peers.remove_bg_credits, c.peers.remove_bg_free_calls));
    if !(small && free > 0) && credits < price {
        ctx.note.fault = Some("quota".into());
        return Err(no_credits());
    }
    let work_in = input.clone();
    let out = tokio::task::spawn_blocking(move || imaging::rembg_cutout(&work_in, kind, &opts))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    let out = out.map_err(|e| {
        error(
            400,
            "failed_to_read_image",
            &format!("Failed to read image: {e}"),
        )
    })?;
    // Charge: a free call for preview sizes while there are any.
    let charged = ctx.shared.cfg(|c| {
        let p = &mut c.peers;
        if small && p.remove_bg_free_calls > 0 {
            p.remove_bg_free_calls -= 1;
            Some(0.0)
        } else if p.remove_bg_credits >= price {
            p.remove_bg_credits -= price;
            Some(price)
        } else {
            None
        }
    });
    let Some(charged) = charged else {
        ctx.note.fault = Some("quota".into());
        return Err(no_credits());
    };
    ctx.note.charged = true;
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, "image/png")], out).into_response();
    let h = resp.headers_mut();
    h.insert(
        "x-credits-charged",
        HeaderValue::from_str(&charged.to_string()).expect("number"),
    );
    h.insert("x-type", HeaderValue::from_static("product"));
    Ok(ctx.post_fault(resp, Some((input, kind))).await)
}

fn check_key(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Response> {
    let valid = ctx.shared.cfg(|c| c.remove_bg.key.clone());
    match headers.get("x-api-key") {
        None => Err(error(403, "api_key_missing", "Missing API Key")),
        Some(k) if k.as_bytes() == valid.as_bytes() => Ok(()),
        Some(_) => Err(error(403, "api_key_invalid", "API Key invalid")),
    }
}

fn pct(s: &str) -> bool {
    s.strip_suffix('%')
        .and_then(|n| n.parse::<f64>().ok())
        .is_some_and(|n| (0.0..=100.0).contains(&n))
}

fn px_or_pct(s: &str) -> bool {
    pct(s) || s.strip_suffix("px").unwrap_or(s).parse::<u32>().is_ok()
}

/// Validates like the API; returns the input type, the picture options
/// and whether the size is a preview size.
fn validate(form: &Form) -> Result<(Kind, Options, bool), Response> {
    for p in &form.parts {
        if !FIELDS.contains(&p.name.as_str()) {
            return Err(error(
                400,
                "unknown_parameter",
                &format!("Unknown parameter: {}", p.name),
            ));
        }
        if p.name != "image_file" && p.file_name.is_some() {
            return Err(error(
                400,
                &format!("invalid_{}", p.name),
                "Expected a text field",
            ));
        }
    }
    if let Some(d) = form.duplicate() {
        return Err(error(
            400,
            "multiple_values",
            &format!("Parameter given twice: {d}"),
        ));
    }
    let sources = ["image_file", "image_url", "image_file_b64"]
        .iter()
        .filter(|s| form.get(s).is_some())
        .count();
    if sources > 1 {
        return Err(error(
            400,
            "multiple_sources",
            "Multiple image sources given",
        ));
    }
    let Some(image) = form.get("image_file") else {
        return Err(error(400, "missing_source", "No image given"));
    };
    if image.file_name.as_deref().unwrap_or("").is_empty() || image.data.is_empty() {
        return Err(error(
            400,
            "missing_source",
            "image_file must be a non-empty file",
        ));
    }
    if image.data.len() > MAX_FILE {
        return Err(error(400, "file_too_large", "File too large (max 12 MB)"));
    }
    let kind = imaging::sniff(&image.data)
        .ok_or_else(|| error(400, "failed_to_read_image", "Failed to read image"))?;
    let (w, h) = imaging::dimensions(&image.data, kind)
        .map_err(|_| error(400, "failed_to_read_image", "Failed to read image"))?;
    if f64::from(w) * f64::from(h) / 1e6 > MAX_MEGAPIXELS {
        return Err(error(
            400,
            "resolution_too_high",
            "Input image has a too high resolution",
        ));
    }
    let (o, small) = check_values(form)?;
    Ok((kind, o, small))
}

/// The option values; returns the picture options and whether the size is
/// a preview size.
fn check_values(form: &Form) -> Result<(Options, bool), Response> {
    let word = |k: &str, allowed: &[&str]| -> Result<Option<String>, Response> {
        match form.text(k) {
            Some(v) if !allowed.contains(&v.as_str()) => Err(invalid(k, &v)),
            v => Ok(v),
        }
    };
    let size = word(
        "size",
        &[
            "auto", "preview", "small", "regular", "medium", "hd", "full", "4k",
        ],
    )?;
    word(
        "type",
        &[
            "auto",
            "person",
            "product",
            "car",
            "animal",
            "graphic",
            "transportation",
        ],
    )?;
    word("type_level", &["none", "1", "2", "latest"])?;
    let format = word("format", &["auto", "png", "jpg", "zip"])?;
    let channels = word("channels", &["rgba", "alpha"])?;
    for b in ["crop", "semitransparency", "add_shadow"] {
        word(b, &["true", "false"])?;
    }
    if let Some(v) = form.text("roi") {
        let parts: Vec<&str> = v.split(' ').collect();
        if parts.len() != 4 || !parts.iter().all(|p| px_or_pct(p)) {
            return Err(invalid("roi", &v));
        }
    }
    if let Some(v) = form.text("crop_margin") {
        if !px_or_pct(&v) {
            return Err(invalid("crop_margin", &v));
        }
    }
    if let Some(v) = form.text("scale") {
        if v != "original" && !pct(&v) {
            return Err(invalid("scale", &v));
        }
    }
    if let Some(v) = form.text("position") {
        if v != "original" && v != "center" && !v.split(' ').all(pct) {
            return Err(invalid("position", &v));
        }
    }
    let mut o = Options {
        format: OutFormat::Png,
        expand: false,
        ..Options::default()
    };
    if let Some(v) = form.text("bg_color") {
        let hexish = v.bytes().all(|b| b.is_ascii_hexdigit()) && matches!(v.len(), 3 | 4 | 6 | 8);
        let parsed = if hexish {
            imaging::parse_color(&format!("#{v}"))
        } else if v.starts_with('#') {
            None
        } else {
            imaging::parse_color(&v)
        };
        o.bg_color = Some(parsed.ok_or_else(|| invalid("bg_color", &v))?);
    }
    if matches!(format.as_deref(), Some("jpg" | "zip")) {
        return Err(error(
            400,
            "invalid_format",
            "This fake answers png only (format png or auto)",
        ));
    }
    o.mask = channels.as_deref() == Some("alpha");
    let small = matches!(size.as_deref(), Some("preview" | "small" | "regular"));
    Ok((o, small))
}

/// `GET /v1.0/account`
pub(crate) async fn account(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let mut ctx = Ctx::new(shared, Endpoint::RemoveBgAccount);
    let headers = req.headers().clone();
    let has_query = req.uri().query().is_some_and(|q| !q.is_empty());
    drop(req);
    let resp = async {
        ctx.admit().await?;
        ctx.pre_fault().await?;
        check_key(&ctx, &headers)?;
        if has_query {
            return Err(error(
                400,
                "unknown_parameter",
                "The account endpoint takes no parameters",
            ));
        }
        let (total, free) = ctx
            .shared
            .cfg(|c| (c.peers.remove_bg_credits, c.peers.remove_bg_free_calls));
        let body = json!({"data": {"attributes": {
            "credits": {"total": total, "subscription": total, "payg": 0, "enterprise": 0},
            "api": {"free_calls": free, "sizes": "all"}
        }}});
        let resp = Json(body).into_response();
        Ok(ctx.post_fault(resp, None).await)
    }
    .await
    .unwrap_or_else(|e: Response| e);
    ctx.finish(resp)
}
