//! h2spec-style negative cases with python's `h2` (it sends what hyper's client refuses to):
//! malformed requests are reset or answered 4xx, never forwarded; an oversize head is 431,
//! not a REFUSED_STREAM that invites a retry.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http2_requests_are_refused_and_never_reach_the_upstream() {
    if !have_tool("python3") {
        return;
    }
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let p = TestProxy::new(&route_to(up.addr));
    let r = p.start().await;
    let port = r.listener("mobile").expect("listener").port();
    let root = p.dir.write("certs/root.pem", p.pki.root_pem());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/proxy/h2_negative.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&root)
            .output()
    })
    .await
    .expect("join")
    .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the script ran (python3 needs the h2 package): {stderr}"
    );
    let results: std::collections::HashMap<String, serde_json::Value> =
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v = json(l);
                (v["case"].as_str().expect("case").to_string(), v)
            })
            .collect();

    eprintln!("h2 negative cases: {results:?}");
    let refused = |case: &str, statuses: &[u64]| {
        let v = &results[case];
        let ok = v["reset"] == "PROTOCOL_ERROR"
            || v["goaway"] == "PROTOCOL_ERROR"
            || v["status"].as_u64().is_some_and(|s| statuses.contains(&s));
        assert!(ok, "{case}: {v}");
    };
    assert_eq!(
        results["oversize_head"]["status"], 431,
        "{}",
        results["oversize_head"]
    );
    assert_eq!(results["trace"]["status"], 405);
    assert_eq!(results["no_authority"]["status"], 400);
    refused("uppercase_name", &[400]);
    refused("connection_header", &[400]);
    refused("te_not_trailers", &[400]);
    refused("userinfo_authority", &[400]);
    refused("content_length_mismatch", &[400]);
    assert_eq!(
        up.hits(),
        1,
        "only the two-cookie request was forwarded: {results:?}"
    );
    let cookies = json(results["two_cookies"]["body"].as_str().expect("body"));
    assert_eq!(
        cookies["headers"]["cookie"],
        serde_json::json!(["a=1; b=2"])
    );
}
