//! The browser UI: static files compiled into the binary, served with their content type,
//! a strict Content-Security-Policy (no inline script, no third-party origins) and
//! revalidation so a new build is picked up at once.

use crate::http::Response;

/// Scripts and styles only from this origin; sockets only back to it.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("style.css"),
    ),
    (
        "/admin",
        "text/html; charset=utf-8",
        include_bytes!("admin.html"),
    ),
    (
        "/admin.js",
        "text/javascript; charset=utf-8",
        include_bytes!("admin.js"),
    ),
    (
        "/admin.css",
        "text/css; charset=utf-8",
        include_bytes!("admin.css"),
    ),
];

/// The embedded file at `path`, as a response.
pub fn asset(path: &str) -> Option<Response> {
    let path = if path == "/index.html" { "/" } else { path };
    let (_, ctype, body) = FILES.iter().find(|(p, _, _)| *p == path)?;
    Some(
        Response::new(200, ctype, body.to_vec())
            .with_header("Cache-Control", "no-cache")
            .with_header("Content-Security-Policy", CSP)
            .with_header("X-Content-Type-Options", "nosniff")
            .with_header("Referrer-Policy", "no-referrer"),
    )
}
