//! The node's web dashboard: one page of HTML, CSS and JavaScript (no framework, no external
//! resources), embedded in the binary and served by the RPC port (`GET /` from a browser,
//! `GET /dashboard`). The page reads everything through the node's JSON-RPC methods; see
//! `docs/dashboard.md`.

use pouw_rpc::Asset;

/// The dashboard's files, for `RpcConfig::assets`.
pub static ASSETS: &[Asset] = &[
    ("/index.html", "text/html; charset=utf-8", include_bytes!("../assets/index.html")),
    ("/app.css", "text/css; charset=utf-8", include_bytes!("../assets/app.css")),
    ("/app.js", "text/javascript; charset=utf-8", include_bytes!("../assets/app.js")),
    ("/favicon.svg", "image/svg+xml", include_bytes!("../assets/favicon.svg")),
];

#[cfg(test)]
mod tests {
    use super::ASSETS;

    #[test]
    fn index_and_its_references_are_embedded() {
        let index = ASSETS.iter().find(|(p, _, _)| *p == "/index.html").expect("index.html");
        let html = std::str::from_utf8(index.2).expect("utf-8");
        for (path, _, bytes) in ASSETS {
            assert!(path.starts_with('/'), "{path}");
            assert!(!bytes.is_empty(), "{path} is empty");
            if *path != "/index.html" {
                assert!(html.contains(&format!("\"{path}\"")), "index.html never loads {path}");
            }
        }
        // Works offline: nothing is fetched from elsewhere.
        for (path, _, bytes) in ASSETS {
            let text = String::from_utf8_lossy(bytes).replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://") && !text.contains("https://"), "{path} links out");
        }
        let total: usize = ASSETS.iter().map(|(_, _, b)| b.len()).sum();
        assert!(total < 60 * 1024, "dashboard is {total} bytes");
    }
}
