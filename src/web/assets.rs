//! Static assets embedded in the binary (stylesheet, script, vendored htmx), served under
//! content-hashed names so browsers may keep them for a year: a new build changes the name.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
    /// `app.3f2a1b9c0d1e.css`
    hashed_name: String,
}

const FILES: &[(&str, &[u8], &str)] = &[
    (
        "app.css",
        include_bytes!("../../static/app.css"),
        "text/css; charset=utf-8",
    ),
    (
        "app.js",
        include_bytes!("../../static/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "favicon.svg",
        include_bytes!("../../static/favicon.svg"),
        "image/svg+xml",
    ),
    (
        "htmx.min.js",
        include_bytes!("../../static/htmx.min.js"),
        "text/javascript; charset=utf-8",
    ),
];

static ASSETS: LazyLock<Vec<(&'static str, Asset)>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, bytes, content_type)| {
            let digest = hex::encode(Sha256::digest(bytes));
            let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
            let hashed_name = format!("{stem}.{}.{extension}", &digest[..12]);
            (
                *name,
                Asset {
                    bytes,
                    content_type,
                    hashed_name,
                },
            )
        })
        .collect()
});

static BY_HASHED_NAME: LazyLock<HashMap<&'static str, &'static Asset>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|(_, asset)| (asset.hashed_name.as_str(), asset))
        .collect()
});

/// The URL of an embedded asset by its plain name, e.g. `/static/app.3f2a1b9c0d1e.css`.
pub fn url(name: &str) -> &'static str {
    static URLS: LazyLock<HashMap<&'static str, String>> = LazyLock::new(|| {
        ASSETS
            .iter()
            .map(|(name, asset)| (*name, format!("/static/{}", asset.hashed_name)))
            .collect()
    });
    URLS.get(name)
        .map(String::as_str)
        .unwrap_or("/static/missing")
}

pub async fn serve(Path(file): Path<String>) -> Response {
    match BY_HASHED_NAME.get(file.as_str()) {
        Some(asset) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(asset.content_type),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            asset.bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_urls_carry_a_content_hash() {
        let css = url("app.css");
        assert!(
            css.starts_with("/static/app.") && css.ends_with(".css"),
            "{css}"
        );
        assert_eq!(css.len(), "/static/app..css".len() + 12);
        assert!(BY_HASHED_NAME.contains_key(&css["/static/".len()..]));
        assert_eq!(url("nope.css"), "/static/missing");
    }
}
