//! Advisory data from `https://` URLs, for `serve`'s refresh: one GET with a timeout and a
//! size cap, conditional on the validators of the last good response (`If-None-Match`,
//! `If-Modified-Since`), so an unchanged feed costs a 304 and is never re-imported.
//!
//! Only `https://` is fetched (advisory data decides what is reported as fixed: it must come
//! from the server named), redirects too; extra trust roots (a private mirror's CA) come
//! from the operator (`serve --advisory-ca`), never from the fleet repo. Knows nothing of the
//! store: the caller imports what was fetched and records the check.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// How `serve` fetches advisory URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// The whole request, body included, must finish within this.
    pub timeout: Duration,
    /// Responses larger than this many bytes are refused.
    pub max_bytes: u64,
    /// PEM files of certificate authorities trusted besides the system's.
    pub ca: Vec<PathBuf>,
}

/// The default size cap: 512 MiB (the Debian tracker dump is ~70 MB, OSV's Debian `all.zip`
/// ~50 MB in 2026).
pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            timeout: Duration::from_secs(300),
            max_bytes: DEFAULT_MAX_BYTES,
            ca: Vec::new(),
        }
    }
}

/// What a fetch got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// 304: the data did not change since the validators sent.
    NotModified,
    /// 200 with the body and the validators to send next time.
    Body {
        /// The body.
        bytes: Vec<u8>,
        /// `ETag`.
        etag: Option<String>,
        /// `Last-Modified` as sent.
        last_modified: Option<String>,
    },
}

/// Why a fetch failed (the URL is shown with any user info redacted).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A `--advisory-ca` file cannot be read.
    #[error("cannot read the CA file `{}`: {source}", path.display())]
    CaRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A `--advisory-ca` file holds no usable certificate.
    #[error("the CA file `{}` holds no PEM certificate: {message}", path.display())]
    CaPem {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The HTTP client cannot be built.
    #[error("cannot make an HTTP client: {0}")]
    Client(String),
    /// Not an `https://` URL.
    #[error("{0}")]
    Url(String),
    /// No response (connection, TLS, timeout), or the body could not be read.
    #[error("GET {url}: {message}")]
    Request {
        /// The URL.
        url: String,
        /// What failed, with its causes.
        message: String,
    },
    /// The server answered with an error status.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// Status code and reason.
        status: String,
    },
    /// The body is larger than the cap.
    #[error("GET {url}: the response is larger than {max} bytes (the size cap)")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        max: u64,
    },
}

/// Whether `source` names a URL rather than a path (`scheme://`).
pub fn is_url(source: &str) -> bool {
    source.contains("://")
}

/// Checks that `source` is an `https://` URL with a host (pure; `validate` and `serve` use
/// it); the error says what is wrong in a user's terms.
pub fn check_url(source: &str) -> Result<url::Url, String> {
    let shown = crate::redact::text(source);
    let url = url::Url::parse(source)
        .map_err(|e| format!("advisory source `{shown}` is not a valid URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            return Err(format!(
                "advisory source `{shown}` uses plain http: advisory data decides what is reported fixed, so only `https://` URLs are fetched"
            ))
        }
        other => {
            return Err(format!(
                "advisory source `{shown}` has the scheme `{other}`: only `https://` URLs and paths inside the fleet repo are read"
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("advisory source `{shown}` names no host"));
    }
    Ok(url)
}

/// An HTTPS client for advisory URLs.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::blocking::Client,
    max_bytes: u64,
}

/// An error and its causes, `: `-separated (reqwest's own text omits the cause, e.g. the
/// certificate problem).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

impl Fetcher {
    /// A client with `options` (blocking: call it from a plain thread, not an async task).
    pub fn new(options: &FetchOptions) -> Result<Fetcher, FetchError> {
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(30)))
            .https_only(true)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("patchkeeper/", env!("CARGO_PKG_VERSION")));
        for path in &options.ca {
            let pem = std::fs::read(path).map_err(|source| FetchError::CaRead {
                path: path.clone(),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| FetchError::CaPem {
                    path: path.clone(),
                    message: chain(&e),
                })?;
            if certs.is_empty() {
                return Err(FetchError::CaPem {
                    path: path.clone(),
                    message: "no `-----BEGIN CERTIFICATE-----` block".into(),
                });
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build().map_err(|e| FetchError::Client(chain(&e)))?;
        Ok(Fetcher {
            client,
            max_bytes: options.max_bytes,
        })
    }

    /// GETs `url`, conditional on `etag` / `last_modified` from the last good response.
    pub fn fetch(
        &self,
        url: &str,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Result<Fetched, FetchError> {
        check_url(url).map_err(FetchError::Url)?;
        let shown = crate::redact::text(url).into_owned();
        let request_error = |e: &dyn std::error::Error| FetchError::Request {
            url: shown.clone(),
            message: crate::redact::text(&chain(e)).into_owned(),
        };
        let mut req = self.client.get(url);
        if let Some(e) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        if let Some(m) = last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, m);
        }
        let resp = req.send().map_err(|e| request_error(&e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url: shown,
                status: status.to_string(),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: shown.clone(),
            max: self.max_bytes,
        };
        if resp.content_length().is_some_and(|n| n > self.max_bytes) {
            return Err(too_large());
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let mut bytes = Vec::new();
        // One byte past the cap tells a body of exactly the cap from a larger one.
        resp.take(self.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| request_error(&e))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(too_large());
        }
        Ok(Fetched::Body {
            bytes,
            etag,
            last_modified,
        })
    }
}

/// An HTTP date (`Last-Modified`) as RFC 3339, when it parses.
pub fn http_date(value: &str) -> Option<String> {
    jiff::fmt::rfc2822::parse(value)
        .ok()
        .map(|z| z.timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_with_a_host_pass() {
        assert!(check_url("https://security-tracker.debian.org/tracker/data/json").is_ok());
        let http = check_url("http://mirror.example/osv/all.zip").unwrap_err();
        assert!(http.contains("plain http"), "{http}");
        let ftp = check_url("ftp://mirror.example/x.json").unwrap_err();
        assert!(ftp.contains("`ftp`"), "{ftp}");
        let secret = check_url("http://user:tok@mirror.example/x").unwrap_err();
        assert!(!secret.contains("tok"), "{secret}");
        assert!(check_url("https://:443/x.json").is_err());
        assert!(is_url("https://x/y") && !is_url("advisories/tracker.json"));
    }

    #[test]
    fn http_dates_become_rfc3339() {
        assert_eq!(
            http_date("Tue, 01 Dec 2026 00:43:50 GMT").as_deref(),
            Some("2026-12-01T00:43:50Z")
        );
        assert_eq!(http_date("yesterday"), None);
    }
}
