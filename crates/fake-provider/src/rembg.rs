//! The fake rembg.com API: `POST /rmbg` (strict multipart validation, a real
//! cut-out in WebP/PNG, one credit per picture) and
//! `GET /api/membership-usage` (credits, with `expand=billing_cycle`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::config::Endpoint;
use crate::http::{
    out_of_credits, read_form, rembg_error, rembg_field_error, sha256_hex, Ctx, Form, FormError,
};
use crate::imaging::{self, Kind, Options, OutFormat};
use crate::state::Shared;

const MAX_FILE: usize = 50 * 1024 * 1024;
const MAX_SIDE: u32 = 10_000;
const FIELDS: &[&str] = &[
    "image",
    "format",
    "w",
    "h",
    "exact_resize",
    "mask",
    "bg_color",
    "angle",
    "expand",
];

/// `POST /rmbg`
pub(crate) async fn remove(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let mut ctx = Ctx::new(shared, Endpoint::RembgRemove);
    let resp = remove_inner(&mut ctx, req).await.unwrap_or_else(|e| e);
    ctx.finish(resp)
}

async fn remove_inner(ctx: &mut Ctx, req: Request) -> Result<Response, Response> {
    ctx.admit().await?;
    let headers = req.headers().clone();
    let form = read_form(req).await;
    if let Ok(f) = &form {
        if let Some(p) = f.get("image") {
            ctx.note.file_name = p.file_name.clone();
            if !p.data.is_empty() {
                ctx.note.sha256 = Some(sha256_hex(&p.data));
            }
        }
    }
    ctx.pre_fault().await?;
    check_key(ctx, &headers)?;
    let form = match form {
        Ok(f) => f,
        Err(FormError::TooLarge) => {
            return Err(rembg_error(
                400,
                "File size exceeds the maximum allowed size of 50 MB.",
            ))
        }
        Err(FormError::NotMultipart) => return Err(rembg_error(
            400,
            "No image file provided. Send the picture as multipart/form-data in the part 'image'.",
        )),
        Err(FormError::Malformed(m)) => {
            return Err(rembg_error(400, &format!("Malformed multipart body: {m}")))
        }
    };
    let (kind, opts) = validate(&form)?;
    let input = form.get("image").expect("validated").data.clone();
    if ctx.shared.rembg_available() == 0 {
        ctx.note.fault = Some("quota".into());
        return Err(out_of_credits(ctx.api));
    }
    let work_in = input.clone();
    let work_opts = opts.clone();
    let out =
        tokio::task::spawn_blocking(move || imaging::rembg_cutout(&work_in, kind, &work_opts))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
    let out = match out {
        Ok(b) => b,
        Err(e) => {
            return Err(rembg_error(
                400,
                &format!("The uploaded image could not be processed: {e}"),
            ))
        }
    };
    if !ctx.shared.charge_rembg() {
        ctx.note.fault = Some("quota".into());
        return Err(out_of_credits(ctx.api));
    }
    ctx.note.charged = true;
    let resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, opts.format.mime())],
        out,
    )
        .into_response();
    Ok(ctx.post_fault(resp, Some((input, kind))).await)
}

fn check_key(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Response> {
    let key = headers.get("x-api-key");
    if key.is_some() && headers.contains_key(header::AUTHORIZATION) {
        return Err(rembg_error(
            400,
            "Send either an API key (x-api-key) or a user token (Authorization), not both.",
        ));
    }
    let valid = ctx.shared.cfg(|c| c.rembg.key.clone());
    match key {
        Some(k) if k.as_bytes() == valid.as_bytes() => Ok(()),
        _ => Err(rembg_error(401, "invalid api key")),
    }
}

fn mb(n: usize) -> String {
    format!("{:.1} MB", n as f64 / (1024.0 * 1024.0))
}

fn parse_bool(field: &str, v: &str) -> Result<bool, Response> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(rembg_field_error(
            field,
            &format!("'{field}' must be 'true' or 'false', got '{v}'."),
        )),
    }
}

fn parse_side(field: &str, v: &str) -> Result<u32, Response> {
    let ok = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    match v.parse::<u32>() {
        Ok(n) if ok && (1..=MAX_SIDE).contains(&n) => Ok(n),
        _ => Err(rembg_field_error(
            field,
            &format!("'{field}' must be an integer between 1 and {MAX_SIDE}, got '{v}'."),
        )),
    }
}

/// Validates the form like rembg.com does; returns the input type and options.
fn validate(form: &Form) -> Result<(Kind, Options), Response> {
    for p in &form.parts {
        if !FIELDS.contains(&p.name.as_str()) {
            return Err(rembg_field_error(
                &p.name,
                &format!(
                    "Unknown field '{}'. Allowed fields: {}.",
                    p.name,
                    FIELDS.join(", ")
                ),
            ));
        }
    }
    if let Some(d) = form.duplicate() {
        return Err(rembg_field_error(
            d,
            &format!("Field '{d}' was sent more than once."),
        ));
    }
    let Some(image) = form.get("image") else {
        return Err(rembg_error(
            400,
            "No image file provided. Send the picture in the multipart part 'image'.",
        ));
    };
    let file_name = match image.file_name.as_deref() {
        Some(n) if !n.is_empty() => n,
        _ => {
            return Err(rembg_error(
                400,
                "No file selected: the 'image' part must be a file with a filename.",
            ))
        }
    };
    if image.content_type.as_deref().unwrap_or("").is_empty() {
        return Err(rembg_error(400, "The 'image' part has no content type."));
    }
    if image.data.is_empty() {
        return Err(rembg_error(400, "Uploaded file is empty (0 bytes)."));
    }
    for p in &form.parts {
        if p.name != "image" && p.file_name.is_some() {
            return Err(rembg_field_error(
                &p.name,
                &format!("'{}' must be a text field, not a file.", p.name),
            ));
        }
    }
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let claimed = match ext.as_str() {
        "webp" => Kind::Webp,
        "bmp" => Kind::Bmp,
        "png" => Kind::Png,
        "jpg" | "jpeg" => Kind::Jpeg,
        _ => {
            return Err(rembg_error(
                400,
                &format!(
                "File type '.{ext}' is not supported. Supported types: webp, bmp, png, jpg, jpeg."
            ),
            ))
        }
    };
    if image.data.len() > MAX_FILE {
        return Err(rembg_error(
            400,
            &format!(
                "File size ({}) exceeds the maximum allowed size of 50 MB.",
                mb(image.data.len())
            ),
        ));
    }
    if imaging::sniff(&image.data) != Some(claimed) {
        return Err(rembg_error(
            400,
            &format!("The uploaded file is not a valid .{ext} image (invalid file signature)."),
        ));
    }

    let mut o = Options::default();
    if let Some(v) = form.text("format") {
        o.format = match v.as_str() {
            "webp" => OutFormat::Webp,
            "png" => OutFormat::Png,
            _ => {
                return Err(rembg_field_error(
                    "format",
                    &format!("Invalid format '{v}'. Supported formats: webp, png."),
                ))
            }
        };
    }
    if let Some(v) = form.text("w") {
        o.w = Some(parse_side("w", &v)?);
    }
    if let Some(v) = form.text("h") {
        o.h = Some(parse_side("h", &v)?);
    }
    if let Some(v) = form.text("exact_resize") {
        o.exact_resize = parse_bool("exact_resize", &v)?;
    }
    if let Some(v) = form.text("mask") {
        o.mask = parse_bool("mask", &v)?;
    }
    if let Some(v) = form.text("expand") {
        o.expand = parse_bool("expand", &v)?;
    }
    if let Some(v) = form.text("angle") {
        match v.trim().parse::<f64>() {
            Ok(a) if a.is_finite() && (-360.0..=360.0).contains(&a) && v.trim() == v => o.angle = a,
            _ => {
                return Err(rembg_field_error(
                    "angle",
                    &format!("'angle' must be a number between -360 and 360, got '{v}'."),
                ))
            }
        }
    }
    if let Some(v) = form.text("bg_color") {
        match imaging::parse_color(&v) {
            Some(c) => o.bg_color = Some(c),
            None => {
                return Err(rembg_field_error(
                    "bg_color",
                    &format!(
                    "Invalid bg_color '{v}'. Use #RGB, #RGBA, #RRGGBB, #RRGGBBAA or a colour name."
                ),
                ))
            }
        }
    }
    if o.mask && o.bg_color.is_some() {
        return Err(rembg_field_error(
            "bg_color",
            "Cannot use 'mask=true' together with 'bg_color'. Choose one.",
        ));
    }
    let (w, h) = imaging::dimensions(&image.data, claimed).map_err(|e| {
        rembg_error(
            400,
            &format!("The uploaded file is not a valid .{ext} image: {e}"),
        )
    })?;
    if w > MAX_SIDE {
        return Err(rembg_error(
            400,
            &format!("Image width ({w}px) exceeds the maximum allowed width of {MAX_SIDE}px."),
        ));
    }
    if h > MAX_SIDE {
        return Err(rembg_error(
            400,
            &format!("Image height ({h}px) exceeds the maximum allowed height of {MAX_SIDE}px."),
        ));
    }
    Ok((claimed, o))
}

/// `GET /api/membership-usage`
pub(crate) async fn usage(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let mut ctx = Ctx::new(shared, Endpoint::RembgUsage);
    let resp = usage_inner(&mut ctx, req).await.unwrap_or_else(|e| e);
    ctx.finish(resp)
}

async fn usage_inner(ctx: &mut Ctx, req: Request) -> Result<Response, Response> {
    ctx.admit().await?;
    ctx.pre_fault().await?;
    check_key(ctx, req.headers())?;
    let Ok(Query(params)) = Query::<Vec<(String, String)>>::try_from_uri(req.uri()) else {
        return Err(rembg_error(400, "Malformed query string."));
    };
    let mut billing = false;
    let mut has_year_month = false;
    let mut has_period = false;
    for (k, v) in &params {
        match k.as_str() {
            "expand" => {
                for item in v.split(',') {
                    if item == "billing_cycle" {
                        billing = true;
                    } else {
                        return Err(rembg_field_error(
                            "expand",
                            &format!("Invalid expand value '{item}'. Supported: billing_cycle."),
                        ));
                    }
                }
            }
            "year" | "month" => {
                has_year_month = true;
                let ok = match (k.as_str(), v.parse::<u32>()) {
                    ("year", Ok(y)) => (2000..=2100).contains(&y),
                    ("month", Ok(m)) => (1..=12).contains(&m),
                    _ => false,
                };
                if !ok {
                    return Err(rembg_field_error(k, &format!("Invalid {k} '{v}'.")));
                }
            }
            "periodStartUnix" | "periodEndUnix" => {
                has_period = true;
                if v.parse::<u64>().is_err() {
                    return Err(rembg_field_error(
                        k,
                        &format!("'{k}' must be a unix timestamp."),
                    ));
                }
            }
            other => {
                return Err(rembg_field_error(
                    other,
                    &format!("Unknown query parameter '{other}'."),
                ))
            }
        }
    }
    if has_year_month && has_period {
        return Err(rembg_error(
            400,
            "Use either periodStartUnix/periodEndUnix or year/month, not both.",
        ));
    }
    let (cr, membership) = ctx
        .shared
        .cfg(|c| (c.rembg_credits, c.rembg_membership.clone()));
    let api_usage = ctx.shared.rembg_used.load(Ordering::Relaxed);
    let start = ctx
        .shared
        .started_sys
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let start = start - start % 86_400 - 10 * 86_400;
    let end = start + Duration::from_secs(30 * 86_400).as_secs();
    let mut body = json!({
        "membership": membership,
        "credits": cr.included,
        "prepaidCredits": cr.prepaid,
        "app_usage": 0,
        "api_usage": api_usage,
    });
    if billing {
        body["billingCycle"] = json!({
            "remainingIncludedCredits": cr.remaining_included,
            "usedIncludedCredits": cr.included.saturating_sub(cr.remaining_included),
            "includedCredits": cr.included,
            "prepaidCredits": cr.prepaid,
            "periodStartUnix": start,
            "periodEndUnix": end,
            "stripeBillingSynced": true,
        });
    }
    let resp = Json(body).into_response();
    Ok(ctx.post_fault(resp, None).await)
}
