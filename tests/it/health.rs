//! `/healthz` and `/readyz` for load balancers: cheap, open to anyone, no cookie handed out.

use crate::common;

use common::TestApp;
use serde_json::Value;

#[tokio::test]
async fn probes_answer_without_credentials_and_hand_out_no_cookie() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::new();
    for (path, body) in [("/healthz", r#"{"status":"ok"}"#), ("/readyz", r#"{"status":"ready","store":"memory"}"#)] {
        let response = client.get(app.url(path)).send().await.expect("request");
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers().get("set-cookie").is_none(), "{path} hands out no owner cookie");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let got: Value = response.json().await.expect("json");
        assert_eq!(got, serde_json::from_str::<Value>(body).expect("json"), "{path}");
    }
}

#[tokio::test]
async fn a_stopping_server_is_not_ready() {
    use tower::ServiceExt;
    let app = TestApp::spawn().await;
    let state = sse_progress::server::AppState::new(
        leptos::config::LeptosOptions::builder().output_name("sse-progress").build(),
        app.engine.clone(),
        Default::default(),
    );
    app.engine.shutdown(std::time::Duration::ZERO).await;
    let request = axum::http::Request::get("/readyz").body(axum::body::Body::empty()).expect("request");
    let response = sse_progress::server::router(state).oneshot(request).await.expect("answered");
    assert_eq!(response.status(), 503);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
    let body: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(body["reason"], "the server is shutting down");
}
