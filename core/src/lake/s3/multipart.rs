//! Multipart uploads whose parts are uploaded or copied server-side from a byte range of
//! another object (`UploadPartCopy`), completed or aborted; and the incomplete ones listed.

use bytes::Bytes;
use object_store::path::Path;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};

use super::{Request, S3Client, encode_key, generic, xml_escape, xml_value};

/// One part of a multipart upload as S3 acknowledged it.
#[derive(Debug, Clone)]
pub struct UploadedPart {
    /// Its number, 1..=10000.
    pub number: u32,
    /// The ETag S3 returned for it.
    pub e_tag: String,
}

impl S3Client {
    /// `CreateMultipartUpload` of `key`; returns the upload id.
    ///
    /// # Errors
    /// The store error.
    pub async fn create_multipart(&self, key: &Path) -> Result<String, object_store::Error> {
        let r = self
            .send(Request {
                method: Method::POST,
                url: format!("{}?uploads=", self.url(key)),
                headers: self.create_headers.clone(),
                body: Bytes::new(),
                what: "CreateMultipartUpload",
                path: key.as_ref(),
            })
            .await?;
        xml_value(&String::from_utf8_lossy(&r.body), "UploadId").ok_or_else(|| {
            generic(
                "CreateMultipartUpload",
                format!("no UploadId in the answer for {key}"),
            )
        })
    }
    /// `UploadPart`: part `number` of upload `upload_id` of `key` holds `bytes`.
    ///
    /// # Errors
    /// The store error.
    pub async fn upload_part(
        &self,
        key: &Path,
        upload_id: &str,
        number: u32,
        bytes: Bytes,
    ) -> Result<UploadedPart, object_store::Error> {
        let r = self
            .send(Request {
                method: Method::PUT,
                url: self.part_url(key, upload_id, number),
                headers: Vec::new(),
                body: bytes,
                what: "UploadPart",
                path: key.as_ref(),
            })
            .await?;
        let e_tag = r
            .headers
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| generic("UploadPart", format!("no ETag for part {number} of {key}")))?;
        Ok(UploadedPart {
            number,
            e_tag: e_tag.to_string(),
        })
    }
    /// `UploadPartCopy`: part `number` of upload `upload_id` of `key` is bytes `range`
    /// (end exclusive) of object `source`, copied by S3 itself, and only while `source`'s
    /// ETag is `if_match`.
    ///
    /// # Errors
    /// [`object_store::Error::Precondition`] when `source` changed (`412`),
    /// [`object_store::Error::NotFound`] when it is gone, other store errors.
    pub async fn upload_part_copy(
        &self,
        key: &Path,
        upload_id: &str,
        number: u32,
        source: &Path,
        range: std::ops::Range<u64>,
        if_match: &str,
    ) -> Result<UploadedPart, object_store::Error> {
        let header = |v: String| {
            HeaderValue::from_str(&v).map_err(|e| generic("UploadPartCopy", e.to_string()))
        };
        let headers = vec![
            (
                HeaderName::from_static("x-amz-copy-source"),
                header(format!(
                    "/{}/{}",
                    encode_key(&self.bucket),
                    encode_key(source.as_ref())
                ))?,
            ),
            (
                HeaderName::from_static("x-amz-copy-source-range"),
                header(format!("bytes={}-{}", range.start, range.end - 1))?,
            ),
            (
                HeaderName::from_static("x-amz-copy-source-if-match"),
                header(if_match.to_string())?,
            ),
        ];
        let r = self
            .send(Request {
                method: Method::PUT,
                url: self.part_url(key, upload_id, number),
                headers,
                body: Bytes::new(),
                what: "UploadPartCopy",
                path: key.as_ref(),
            })
            .await?;
        let e_tag = xml_value(&String::from_utf8_lossy(&r.body), "ETag").ok_or_else(|| {
            generic(
                "UploadPartCopy",
                format!("no ETag for part {number} of {key}"),
            )
        })?;
        Ok(UploadedPart { number, e_tag })
    }
    /// `CompleteMultipartUpload` of `key` from `parts` (in order).
    ///
    /// # Errors
    /// The store error (also when S3 answers `200` with an error document).
    pub async fn complete(
        &self,
        key: &Path,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), object_store::Error> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for part in parts {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                part.number,
                xml_escape(&part.e_tag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        self.send(Request {
            method: Method::POST,
            url: format!("{}?uploadId={}", self.url(key), encode_key(upload_id)),
            headers: Vec::new(),
            body: Bytes::from(body),
            what: "CompleteMultipartUpload",
            path: key.as_ref(),
        })
        .await?;
        Ok(())
    }
    /// `AbortMultipartUpload`; an upload already gone is fine.
    ///
    /// # Errors
    /// The store error.
    pub async fn abort(&self, key: &Path, upload_id: &str) -> Result<(), object_store::Error> {
        match self
            .send(Request {
                method: Method::DELETE,
                url: format!("{}?uploadId={}", self.url(key), encode_key(upload_id)),
                headers: Vec::new(),
                body: Bytes::new(),
                what: "AbortMultipartUpload",
                path: key.as_ref(),
            })
            .await
        {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
    /// `ListMultipartUploads` under folder `prefix` (the whole bucket when empty): the keys of
    /// the incomplete multipart uploads, every page of the listing (S3 answers up to 1,000
    /// uploads a page, then `IsTruncated` with `NextKeyMarker` and `NextUploadIdMarker`).
    ///
    /// # Errors
    /// The store error.
    pub async fn incomplete_uploads(
        &self,
        prefix: &Path,
    ) -> Result<Vec<String>, object_store::Error> {
        let folder = match prefix.as_ref() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let query = |v: &str| encode_key(v).replace('/', "%2F");
        let mut keys = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let after = markers
                .as_ref()
                .map(|(key, id)| {
                    format!("key-marker={}&upload-id-marker={}&", query(key), query(id))
                })
                .unwrap_or_default();
            let r = self
                .send(Request {
                    method: Method::GET,
                    url: format!(
                        "{}?{after}prefix={}&uploads=",
                        self.bucket_endpoint,
                        query(&folder)
                    ),
                    headers: Vec::new(),
                    body: Bytes::new(),
                    what: "ListMultipartUploads",
                    path: prefix.as_ref(),
                })
                .await?;
            let (page, next) = uploads_page(&String::from_utf8_lossy(&r.body));
            keys.extend(page);
            match next {
                Some(next) if markers.as_ref() != Some(&next) => markers = Some(next),
                _ => return Ok(keys),
            }
        }
    }

    /// The URL of part `number` of upload `upload_id` of `key`.
    fn part_url(&self, key: &Path, upload_id: &str, number: u32) -> String {
        format!(
            "{}?partNumber={number}&uploadId={}",
            self.url(key),
            encode_key(upload_id)
        )
    }
}

/// One page of a `ListMultipartUploads` answer: the uploads' keys, and the markers of the
/// next page when the listing is truncated.
fn uploads_page(xml: &str) -> (Vec<String>, Option<(String, String)>) {
    let keys = xml
        .split("<Upload>")
        .skip(1)
        .filter_map(|upload| xml_value(upload, "Key"))
        .collect();
    let next = match (
        xml_value(xml, "IsTruncated").as_deref(),
        xml_value(xml, "NextKeyMarker"),
        xml_value(xml, "NextUploadIdMarker"),
    ) {
        (Some("true"), Some(key), Some(id)) => Some((key, id)),
        _ => None,
    };
    (keys, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer's shape as the S3 API reference shows it (ListMultipartUploads).
    #[test]
    fn a_truncated_listing_names_the_markers_of_its_next_page() {
        let page = "<ListMultipartUploadsResult><Bucket>b</Bucket><KeyMarker></KeyMarker>\
            <UploadIdMarker></UploadIdMarker><NextKeyMarker>lake/b.parquet</NextKeyMarker>\
            <NextUploadIdMarker>id-2</NextUploadIdMarker><MaxUploads>2</MaxUploads>\
            <IsTruncated>true</IsTruncated>\
            <Upload><Key>lake/a.parquet</Key><UploadId>id-1</UploadId></Upload>\
            <Upload><Key>lake/b.parquet</Key><UploadId>id-2</UploadId></Upload>\
            </ListMultipartUploadsResult>";
        let (keys, next) = uploads_page(page);
        assert_eq!(keys, ["lake/a.parquet", "lake/b.parquet"]);
        assert_eq!(next, Some(("lake/b.parquet".into(), "id-2".into())));
        let last = page.replace("<IsTruncated>true", "<IsTruncated>false");
        assert_eq!(uploads_page(&last).1, None);
        let empty = "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\
            </ListMultipartUploadsResult>";
        assert_eq!(uploads_page(empty), (Vec::new(), None));
    }
}
