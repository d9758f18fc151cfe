//! The picture upload the synchronous vendors share (rembg.com, remove.bg,
//! rembg's own server): the size check against the vendor's limit, the
//! multipart form (the picture as one named file part under a clean name
//! that carries its real type, plus the vendor's text fields).
//!
//! Owns: what leaves the building of the customer's file name, and the
//! form's shape. Must not: know a vendor's field names or limits (they are
//! handed in), or send anything.

use reqwest::multipart::{Form, Part};

use super::{ProviderError, Request};
use crate::job::Code;
use crate::validate::ImageKind;

/// Refuse a picture larger than the vendor accepts (`limit` bytes, said as
/// `limit_text`, e.g. "12 MB") before anything is sent.
pub fn check_size(
    req: &Request<'_>,
    limit: usize,
    vendor: &str,
    limit_text: &str,
) -> Result<(), ProviderError> {
    let len = req.input.bytes.len();
    if len > limit {
        return Err(ProviderError::Permanent {
            code: Code::ProviderInputTooLarge,
            message: format!("the picture is {len} bytes; {vendor} accepts at most {limit_text}"),
        });
    }
    Ok(())
}

/// The multipart form: the picture as the part `file_part`, then `fields`.
pub fn form(
    req: &Request<'_>,
    file_part: &'static str,
    fields: Vec<(&'static str, String)>,
) -> Result<Form, ProviderError> {
    let kind = req.input.kind;
    let image = Part::stream_with_length(req.input.bytes.clone(), req.input.bytes.len() as u64)
        .file_name(upload_name(req.file_name, kind))
        .mime_str(kind.mime())
        .map_err(|e| ProviderError::Permanent {
            code: Code::InternalError,
            message: format!("cannot build the upload: {e}"),
        })?;
    let mut form = Form::new().part(file_part, image);
    for (k, v) in fields {
        form = form.text(k, v);
    }
    Ok(form)
}

/// `<stem>.<ext of the sniffed type>`: rembg checks that the extension
/// matches the file's signature, and the customer's file name need not
/// leave the building in full.
pub(crate) fn upload_name(file_name: &str, kind: ImageKind) -> String {
    let stem = std::path::Path::new(file_name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    if clean.trim_matches('_').is_empty() {
        clean = "image".into();
    }
    let ext = match kind {
        ImageKind::Jpeg => "jpg",
        ImageKind::Png => "png",
        ImageKind::Webp => "webp",
    };
    format!("{clean}.{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_carry_the_real_type() {
        assert_eq!(upload_name("Shoe 1.JPG", ImageKind::Png), "Shoe_1.png");
        assert_eq!(upload_name("ä.jpeg", ImageKind::Jpeg), "image.jpg");
    }
}
