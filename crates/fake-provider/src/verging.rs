//! The fake verging.ai API: `GET /api/v1/auth/me`, `POST
//! /api/v1/background-removal/create-job` (one credit per job), `GET
//! /api/v1/background-removal/jobs`, the presigned-upload flow (`POST
//! /api/v1/upload-video`, `PUT /upload/<token>`), and its storage
//! (`GET /files/...`: results, inputs, uploads).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::to_bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::json;

use crate::config::Endpoint;
use crate::http::{
    iso8601, out_of_credits, read_form, sha256_hex, verging_error, Ctx, Form, FormError,
};
use crate::imaging::{self, Kind};
use crate::state::{Job, JobOutcome, Shared, Upload};

const MAX_FILE: usize = 10 * 1024 * 1024;
const MAX_PUT: usize = 64 * 1024 * 1024;
const JOB_TYPE: &str = "background-removal";

fn ok_message() -> serde_json::Value {
    json!({"en": "ok", "zh": "ok"})
}

fn check_key(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Response> {
    let valid = ctx.shared.cfg(|c| c.verging.key.clone());
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Err(verging_error(
            401,
            "Missing Authorization header. Use 'Authorization: ApiKey <key>'.",
        ));
    };
    match v.as_bytes().strip_prefix(b"ApiKey ") {
        Some(k) if k == valid.as_bytes() => Ok(()),
        Some(_) => Err(verging_error(401, "Invalid API key")),
        None => Err(verging_error(
            401,
            "Invalid Authorization header. Use 'Authorization: ApiKey <key>'.",
        )),
    }
}

/// `GET /api/v1/auth/me`
pub(crate) async fn me(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let mut ctx = Ctx::new(shared, Endpoint::VergingMe);
    let resp = me_inner(&mut ctx, req).await.unwrap_or_else(|e| e);
    ctx.finish(resp)
}

async fn me_inner(ctx: &mut Ctx, req: Request) -> Result<Response, Response> {
    ctx.admit().await?;
    ctx.pre_fault().await?;
    check_key(ctx, req.headers())?;
    let body = ctx.shared.cfg(
        |c| json!({"email": c.verging_email, "name": c.verging_name, "credits": c.verging_credits}),
    );
    Ok(ctx.post_fault(Json(body).into_response(), None).await)
}

fn form_error(e: FormError) -> Response {
    match e {
        FormError::NotMultipart => verging_error(400, "Request must be multipart/form-data"),
        FormError::TooLarge => verging_error(400, "Image too large (max 10 MB)"),
        FormError::Malformed(m) => verging_error(400, &format!("Malformed multipart body: {m}")),
    }
}

fn check_fields(form: &Form, allowed: &[&str]) -> Result<(), Response> {
    for p in &form.parts {
        if !allowed.contains(&p.name.as_str()) {
            return Err(verging_error(
                400,
                &format!(
                    "Unknown form field '{}'. Allowed: {}",
                    p.name,
                    allowed.join(", ")
                ),
            ));
        }
    }
    if let Some(d) = form.duplicate() {
        return Err(verging_error(
            400,
            &format!("Form field '{d}' was sent more than once"),
        ));
    }
    for p in &form.parts {
        if p.name != "image" && p.file_name.is_some() {
            return Err(verging_error(
                400,
                &format!("Form field '{}' must be a text field", p.name),
            ));
        }
    }
    match form.text("job_type") {
        None => Err(verging_error(400, "job_type is required")),
        Some(t) if t == JOB_TYPE => Ok(()),
        Some(t) => Err(verging_error(
            400,
            &format!("Unsupported job_type '{t}'; expected '{JOB_TYPE}'"),
        )),
    }
}

/// `POST /api/v1/background-removal/create-job`
pub(crate) async fn create_job(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let mut ctx = Ctx::new(shared, Endpoint::VergingCreateJob);
    let resp = create_job_inner(&mut ctx, req).await.unwrap_or_else(|e| e);
    ctx.finish(resp)
}

async fn create_job_inner(ctx: &mut Ctx, req: Request) -> Result<Response, Response> {
    ctx.admit().await?;
    let headers = req.headers().clone();
    let form = read_form(req).await;
    if let Ok(f) = &form {
        ctx.note.file_name = f
            .text("file_name")
            .or_else(|| f.get("image").and_then(|p| p.file_name.clone()));
        if let Some(p) = f.get("image") {
            if !p.data.is_empty() {
                ctx.note.sha256 = Some(sha256_hex(&p.data));
            }
        }
    }
    ctx.pre_fault().await?;
    check_key(ctx, &headers)?;
    let form = form.map_err(form_error)?;
    // The documented form: the file part `image` (always, also after a
    // presigned upload), `file_name`, `job_type`. Nothing else.
    let Some(image) = form.get("image") else {
        return Err(verging_error(400, "File part 'image' is required"));
    };
    check_fields(&form, &["image", "file_name", "job_type"])?;
    let file_name = match form.text("file_name") {
        Some(n) if !n.trim().is_empty() => n,
        _ => return Err(verging_error(400, "file_name is required")),
    };
    if image.file_name.as_deref().unwrap_or("").is_empty() {
        return Err(verging_error(
            400,
            "'image' must be a file part with a filename",
        ));
    }
    let input = image.data.clone();
    if input.is_empty() {
        return Err(verging_error(400, "image is empty"));
    }
    if input.len() > MAX_FILE {
        return Err(verging_error(
            400,
            &format!(
                "Image too large: {:.1} MB (max 10 MB)",
                input.len() as f64 / 1048576.0
            ),
        ));
    }
    let kind = match imaging::sniff(&input) {
        Some(k @ (Kind::Png | Kind::Jpeg | Kind::Webp)) => k,
        _ => {
            return Err(verging_error(
                400,
                "Unsupported image type: use JPG, JPEG, PNG or WebP",
            ))
        }
    };
    if ctx.shared.cfg(|c| c.verging_credits) < 1 {
        ctx.note.fault = Some("quota".into());
        return Err(out_of_credits(ctx.api));
    }
    let work = input.clone();
    let result = tokio::task::spawn_blocking(move || imaging::verging_cutout(&work, kind))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|e| verging_error(400, &format!("Could not read the image: {e}")))?;
    if !ctx.shared.charge_verging() {
        ctx.note.fault = Some("quota".into());
        return Err(out_of_credits(ctx.api));
    }
    ctx.note.charged = true;
    let outcome = match ctx.job_fault() {
        Some(crate::Fault::JobFails) => JobOutcome::Fails,
        Some(crate::Fault::JobNeverFinishes) => JobOutcome::Never,
        _ => JobOutcome::Completes,
    };
    let id = ctx
        .shared
        .next_job
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let image_url = format!("{}/files/input-{id}.{}", ctx.shared.base, kind.ext());
    let job = Job {
        id,
        file_name,
        created: Instant::now(),
        created_sys: SystemTime::now(),
        processing: ctx.shared.cfg(|c| c.job_processing),
        outcome,
        input,
        input_kind: kind,
        image_url,
        result: Bytes::from(result),
    };
    ctx.shared.jobs.lock().unwrap().insert(id, job);
    ctx.note.job_id = Some(id);
    let body = json!({
        "code": 10000,
        "result": {"job_id": id.to_string()},
        "message": ok_message(),
    });
    Ok(ctx.post_fault(Json(body).into_response(), None).await)
}

fn job_json(shared: &Shared, job: &Job, now: Instant) -> serde_json::Value {
    let v = job.view(now);
    let result_url =
        (v.status == "COMPLETED").then(|| format!("{}/files/{}.png", shared.base, job.id));
    json!({
        "id": job.id,
        "status": v.status,
        "progress": v.progress,
        "result_url": result_url,
        "image_url": job.image_url,
        "created_at": iso8601(job.created_sys),
        "updated_at": iso8601(v.updated),
    })
}

/// `GET /api/v1/background-removal/jobs[?job_ids=1,2]`
pub(crate) async fn jobs(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let mut ctx = Ctx::new(shared, Endpoint::VergingJobs);
    let resp = jobs_inner(&mut ctx, req).await.unwrap_or_else(|e| e);
    ctx.finish(resp)
}

fn parse_ids(params: &[(String, String)]) -> Result<Option<Vec<u64>>, String> {
    let mut ids: Option<Vec<u64>> = None;
    for (k, v) in params {
        if k != "job_ids" {
            return Err(format!("Unknown query parameter '{k}'"));
        }
        for s in v.split(',') {
            let id = s
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("Invalid job id '{s}' in job_ids"))?;
            ids.get_or_insert_with(Vec::new).push(id);
        }
    }
    Ok(ids)
}

async fn jobs_inner(ctx: &mut Ctx, req: Request) -> Result<Response, Response> {
    ctx.admit().await?;
    let params = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .map_err(|_| verging_error(400, "Malformed query string"));
    let ids = params.as_ref().ok().map(|p| parse_ids(p));
    if let Some(Ok(Some(ids))) = &ids {
        if let [one] = ids.as_slice() {
            ctx.note.job_id = Some(*one);
            ctx.note.file_name = ctx
                .shared
                .jobs
                .lock()
                .unwrap()
                .get(one)
                .map(|j| j.file_name.clone());
        }
    }
    ctx.pre_fault().await?;
    check_key(ctx, req.headers())?;
    params?;
    let ids = ids
        .expect("params parsed")
        .map_err(|m| verging_error(400, &m))?;
    let now = Instant::now();
    let list: Vec<serde_json::Value> = {
        let jobs = ctx.shared.jobs.lock().unwrap();
        match ids {
            None => jobs
                .values()
                .map(|j| job_json(&ctx.shared, j, now))
                .collect(),
            Some(ids) => ids
                .iter()
                .filter_map(|id| jobs.get(id))
                .map(|j| job_json(&ctx.shared, j, now))
                .collect(),
        }
    };
    Ok(ctx
        .post_fault(Json(serde_json::Value::Array(list)).into_response(), None)
        .await)
}

/// `POST /api/v1/upload-video` (presigned upload URL)
pub(crate) async fn upload_url(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let mut ctx = Ctx::new(shared, Endpoint::VergingUploadUrl);
    let resp = upload_url_inner(&mut ctx, req).await.unwrap_or_else(|e| e);
    ctx.finish(resp)
}

async fn upload_url_inner(ctx: &mut Ctx, req: Request) -> Result<Response, Response> {
    ctx.admit().await?;
    let headers = req.headers().clone();
    let form = read_form(req).await;
    if let Ok(f) = &form {
        ctx.note.file_name = f.text("video_file_name");
    }
    ctx.pre_fault().await?;
    check_key(ctx, &headers)?;
    let form = form.map_err(form_error)?;
    check_fields(&form, &["video_file_name", "job_type"])?;
    let file_name = match form.text("video_file_name") {
        Some(n) if !n.trim().is_empty() => n,
        _ => return Err(verging_error(400, "video_file_name is required")),
    };
    let token: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(32)
        .collect();
    ctx.shared.uploads.lock().unwrap().insert(
        token.clone(),
        Upload {
            file_name,
            data: None,
        },
    );
    let body = json!({
        "code": 10000,
        "result": {
            "url": format!("{}/upload/{token}", ctx.shared.base),
            "public_url": format!("{}/files/uploads/{token}", ctx.shared.base),
        },
        "message": ok_message(),
    });
    Ok(ctx.post_fault(Json(body).into_response(), None).await)
}

fn s3_error(status: StatusCode, code: &str, msg: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{msg}</Message></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// `PUT /upload/<token>` (presigned; no `Authorization` allowed)
pub(crate) async fn upload_put(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    req: Request,
) -> Response {
    let mut ctx = Ctx::new(shared, Endpoint::VergingUploadPut);
    let resp = upload_put_inner(&mut ctx, token, req)
        .await
        .unwrap_or_else(|e| e);
    ctx.finish(resp)
}

async fn upload_put_inner(
    ctx: &mut Ctx,
    token: String,
    req: Request,
) -> Result<Response, Response> {
    ctx.admit().await?;
    let known = ctx
        .shared
        .uploads
        .lock()
        .unwrap()
        .get(&token)
        .map(|u| u.file_name.clone());
    ctx.note.file_name = known.clone();
    ctx.pre_fault().await?;
    if req.headers().contains_key(header::AUTHORIZATION) {
        return Err(s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
             Signature query string parameter or the Authorization header should be specified",
        ));
    }
    if known.is_none() {
        return Err(s3_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Request has expired or the signature does not match",
        ));
    }
    let data = to_bytes(req.into_body(), MAX_PUT).await.map_err(|_| {
        s3_error(
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size",
        )
    })?;
    let sha = sha256_hex(&data);
    ctx.note.sha256 = Some(sha.clone());
    if let Some(u) = ctx.shared.uploads.lock().unwrap().get_mut(&token) {
        u.data = Some(data);
    }
    let resp = (
        StatusCode::OK,
        [(header::ETAG, format!("\"{}\"", &sha[..32]))],
    )
        .into_response();
    Ok(ctx.post_fault(resp, None).await)
}

/// `GET /files/<name>`: `<id>.png` (result), `input-<id>.<ext>` (input),
/// `uploads/<token>` (presigned upload). No auth.
pub(crate) async fn file(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let mut ctx = Ctx::new(shared, Endpoint::VergingFile);
    let resp = file_inner(&mut ctx, name).await.unwrap_or_else(|e| e);
    ctx.finish(resp)
}

/// A file to serve: bytes, content type, and the input picture when the
/// file is a result (for the image faults).
type Found = (Bytes, &'static str, Option<(Bytes, Kind)>);

enum FileRef {
    Result(u64),
    Input(u64),
    Upload(String),
}

fn parse_file(name: &str) -> Option<FileRef> {
    if let Some(t) = name.strip_prefix("uploads/") {
        return Some(FileRef::Upload(t.to_string()));
    }
    if let Some(rest) = name.strip_prefix("input-") {
        let (id, _) = rest.split_once('.')?;
        return id.parse().ok().map(FileRef::Input);
    }
    name.strip_suffix(".png")?.parse().ok().map(FileRef::Result)
}

async fn file_inner(ctx: &mut Ctx, name: String) -> Result<Response, Response> {
    ctx.admit().await?;
    let now = Instant::now();
    let not_found = || verging_error(404, "File not found");
    // (bytes, content type, input for image faults)
    let found: Option<Found> = match parse_file(&name) {
        Some(FileRef::Result(id)) => {
            ctx.note.job_id = Some(id);
            let jobs = ctx.shared.jobs.lock().unwrap();
            jobs.get(&id).and_then(|j| {
                ctx.note.file_name = Some(j.file_name.clone());
                j.is_completed(now).then(|| {
                    (
                        j.result.clone(),
                        "image/png",
                        Some((j.input.clone(), j.input_kind)),
                    )
                })
            })
        }
        Some(FileRef::Input(id)) => {
            ctx.note.job_id = Some(id);
            let jobs = ctx.shared.jobs.lock().unwrap();
            jobs.get(&id).map(|j| {
                ctx.note.file_name = Some(j.file_name.clone());
                (j.input.clone(), j.input_kind.mime(), None)
            })
        }
        Some(FileRef::Upload(token)) => {
            let uploads = ctx.shared.uploads.lock().unwrap();
            uploads.get(&token).and_then(|u| {
                ctx.note.file_name = Some(u.file_name.clone());
                u.data.clone().map(|d| {
                    let ct = imaging::sniff(&d).map_or("application/octet-stream", Kind::mime);
                    (d, ct, None)
                })
            })
        }
        None => None,
    };
    ctx.pre_fault().await?;
    let Some((bytes, ct, input)) = found else {
        return Err(not_found());
    };
    let resp = (StatusCode::OK, [(header::CONTENT_TYPE, ct)], bytes).into_response();
    Ok(ctx.post_fault(resp, input).await)
}
