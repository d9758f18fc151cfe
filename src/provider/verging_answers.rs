//! Reading verging.ai's answers, tolerant of their inconsistencies: ids
//! as strings or numbers, objects bare or wrapped in `result`/`data`, job
//! lists as bare arrays or wrapped, credits as numbers or text.
//!
//! Owns: the shapes of the answers (create-job, job list, presigned
//! upload, `auth/me`). Must not: send requests or decide what an answer
//! means for the job (`verging.rs` does).

use serde_json::Value;

use super::hosted::Credits;

/// A job as the job list shows it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct JobState {
    pub status: String,
    pub result_url: Option<String>,
}

/// An id as text, whether the JSON has it as a string or a number.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The job id in a create-job answer (`result.job_id`, bare `job_id`, or
/// `id`, string or number).
pub(super) fn created_job_id(v: &Value) -> Option<String> {
    let inner = v.get("result").filter(|r| r.is_object()).unwrap_or(v);
    ["job_id", "id", "jobId"]
        .iter()
        .find_map(|k| inner.get(*k).and_then(id_text))
        .or_else(|| {
            ["job_id", "id", "jobId"]
                .iter()
                .find_map(|k| v.get(*k).and_then(id_text))
        })
}

/// Find job `id` in a job-list answer (a bare array, or wrapped).
pub(super) fn find_job(v: &Value, id: &str) -> Option<JobState> {
    let list: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) => match ["result", "data", "jobs"].iter().find_map(|k| o.get(*k)) {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(obj @ Value::Object(_)) => vec![obj],
            _ => vec![v],
        },
        _ => vec![],
    };
    list.into_iter()
        .find(|j| {
            ["id", "job_id"]
                .iter()
                .any(|k| j.get(*k).and_then(id_text).as_deref() == Some(id))
        })
        .map(|j| JobState {
            status: j
                .get("status")
                .and_then(|s| s.as_str())
                .unwrap_or("")
                .trim()
                .to_ascii_uppercase(),
            result_url: j
                .get("result_url")
                .and_then(|u| u.as_str())
                .filter(|u| !u.trim().is_empty())
                .map(str::to_string),
        })
}

/// The PUT `url` of `{"result": {"url", "public_url"}}` (or bare).
pub(super) fn presigned(v: &Value) -> Option<String> {
    let inner = v.get("result").filter(|r| r.is_object()).unwrap_or(v);
    Some(inner.get("url")?.as_str()?.to_string())
}

/// `{"credits": n, …}` (or wrapped in `result`/`data`).
pub(super) fn parse_me(v: &Value) -> Credits {
    let inner = ["result", "data", "user"]
        .iter()
        .find_map(|k| v.get(*k).filter(|r| r.is_object()))
        .unwrap_or(v);
    let credits = inner.get("credits").and_then(|c| {
        c.as_f64()
            .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
    });
    match credits {
        Some(c) => Credits::Known {
            left: Some(c),
            detail: format!("{c} credits left"),
        },
        None => Credits::Known {
            left: None,
            detail: "the account answer does not say how many credits are left".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Value {
        serde_json::from_str(s).expect("json")
    }

    #[test]
    fn job_ids_as_strings_or_numbers() {
        let v = json(r#"{"code":10000,"result":{"job_id":"456"},"message":{"en":"ok"}}"#);
        assert_eq!(created_job_id(&v).as_deref(), Some("456"));
        assert_eq!(
            created_job_id(&json(r#"{"job_id":457}"#)).as_deref(),
            Some("457")
        );
        assert_eq!(created_job_id(&json(r#"{"code":100000}"#)), None);
    }

    #[test]
    fn job_list_is_matched_by_id_text() {
        let v = json(
            r#"[{"id":455,"status":"PROCESSING"},{"id":456,"status":"completed","result_url":"https://x/y.png"}]"#,
        );
        assert_eq!(
            find_job(&v, "456"),
            Some(JobState {
                status: "COMPLETED".into(),
                result_url: Some("https://x/y.png".into())
            })
        );
        assert_eq!(find_job(&v, "9"), None);
        let wrapped = json(r#"{"result":[{"id":"7","status":"FAILED","result_url":null}]}"#);
        assert_eq!(
            find_job(&wrapped, "7").map(|j| j.status),
            Some("FAILED".into())
        );
        assert_eq!(find_job(&json("[]"), "7"), None);
    }

    #[test]
    fn me_and_presigned_shapes() {
        match parse_me(&json(r#"{"email":"a","credits":42}"#)) {
            Credits::Known { left, .. } => assert_eq!(left, Some(42.0)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            presigned(&json(
                r#"{"result":{"url":"https://u","public_url":"https://p"}}"#
            )),
            Some("https://u".into())
        );
    }
}
