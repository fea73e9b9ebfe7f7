//! Token checks at the edge and responses that say no more than needed, as an app, its
//! backend and an operator see them. Tokens are minted by PyJWT + cryptography (an independent
//! implementation) with keys made at test time.

use std::io::Write as _;
use std::process::{Command, Stdio};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};

use super::*;
use common::client::get;

/// Reads a JSON spec on stdin: RSA keys to make (`rsa_keys`: kids) and tokens to mint
/// (`tokens`: name → {claims, sign: rsa|hs|none|hs_with_public_pem, key, kid, secret}); times
/// in `exp`/`nbf`/`iat` are relative to now. Prints keys (JWK and PEM) and tokens.
const MINT_PY: &str = r#"
import base64, hashlib, hmac, json, sys, time
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

spec = json.load(sys.stdin)
now = int(time.time())
keys, out = {}, {"keys": {}, "tokens": {}}
for kid in spec.get("rsa_keys", []):
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys[kid] = k
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key()))
    jwk.update(kid=kid, alg="RS256", use="sig")
    pem = k.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    out["keys"][kid] = {"jwk": jwk, "pem": pem.decode()}

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

for name, t in spec["tokens"].items():
    claims = {k: (now + v if k in ("exp", "nbf", "iat") else v) for k, v in t["claims"].items()}
    if "pay_of" in t:
        claims["pay"] = base64.b64encode(hashlib.sha256(t["pay_of"].encode()).digest()).decode()
    sign, kid = t["sign"], t.get("kid")
    headers = {"kid": kid} if kid else None
    if sign == "rsa":
        tok = jwt.encode(claims, keys[t["key"]], algorithm="RS256", headers=headers)
    elif sign == "hs":
        tok = jwt.encode(claims, base64.b64decode(t["secret"]), algorithm="HS256", headers=headers)
    elif sign == "none":
        tok = jwt.encode(claims, None, algorithm="none", headers=headers)
    elif sign == "hs_with_public_pem":
        # The classic confusion attack: HMAC keyed with the RSA public key the verifier holds.
        head = {"alg": "HS256", "typ": "JWT", "kid": kid}
        signing = b64url(json.dumps(head).encode()) + "." + b64url(json.dumps(claims).encode())
        secret = out["keys"][t["key"]]["pem"].encode()
        tok = signing + "." + b64url(hmac.new(secret, signing.encode(), hashlib.sha256).digest())
    out["tokens"][name] = tok
print(json.dumps(out))
"#;

/// Runs the minter; `None` (test skipped) when python3 is missing outside CI.
fn mint(spec: Value) -> Option<Value> {
    if !have_tool("python3") {
        return None;
    }
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(MINT_PY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(spec.to_string().as_bytes())
        .expect("spec written");
    let out = child.wait_with_output().expect("minter finishes");
    assert!(
        out.status.success(),
        "minting failed (PyJWT and cryptography installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("minter prints JSON"))
}

fn jwks(minted: &Value, kids: &[&str]) -> String {
    let keys: Vec<Value> = kids
        .iter()
        .map(|k| minted["keys"][k]["jwk"].clone())
        .collect();
    json!({ "keys": keys }).to_string()
}

fn token<'a>(minted: &'a Value, name: &str) -> &'a str {
    minted["tokens"][name].as_str().expect("token minted")
}

/// One GET on a new connection with extra request headers.
async fn send(client: &Client, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req: Request<Full<Bytes>> = get("localhost", path, client.h2);
    for (k, v) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            http::HeaderValue::from_str(v).expect("value"),
        );
    }
    let mut conn = client.connect().await.expect("connect");
    conn.send(req).await.expect("request")
}

async fn auth_count(r: &Running, policy: &str, result: &str) -> f64 {
    scrape(
        r.admin,
        "pinproxy_auth_checks_total",
        &[("policy", policy), ("result", result)],
    )
    .await
}

fn jwt_route(addr: std::net::SocketAddr, policy: &str) -> String {
    format!(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"backend\"\nauth = \"{policy}\"\n\n\
         [upstream.backend]\nurl = \"http://{addr}\"\n\n"
    )
}

#[tokio::test]
async fn each_bad_token_is_refused_with_a_bearer_challenge_and_counted_by_result_over_h1_and_h2() {
    let good =
        json!({"iss": "https://issuer.test", "aud": ["api-b", "x"], "sub": "app-1", "exp": 300});
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    let Some(m) = mint(json!({
        "rsa_keys": ["k1", "k2"],
        "tokens": {
            "valid": {"claims": good, "sign": "rsa", "key": "k1", "kid": "k1"},
            "expired": {"claims": with(json!({"exp": -600})), "sign": "rsa", "key": "k1", "kid": "k1"},
            "not_yet": {"claims": with(json!({"nbf": 600, "exp": 900})), "sign": "rsa", "key": "k1", "kid": "k1"},
            "wrong_aud": {"claims": with(json!({"aud": "someone-else"})), "sign": "rsa", "key": "k1", "kid": "k1"},
            "wrong_iss": {"claims": with(json!({"iss": "https://evil.test"})), "sign": "rsa", "key": "k1", "kid": "k1"},
            "alg_none": {"claims": good, "sign": "none", "kid": "k1"},
            "hs_confusion": {"claims": good, "sign": "hs_with_public_pem", "key": "k1", "kid": "k1"},
            "unknown_kid": {"claims": good, "sign": "rsa", "key": "k2", "kid": "k2"},
        }
    })) else {
        return;
    };
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "{}[auth.app]\nkind = \"jwt\"\njwks = \"keys/jwks.json\"\nalgorithms = [\"RS256\"]\n\
         issuer = \"https://issuer.test\"\naudience = [\"api-a\", \"api-b\"]\nclaims_to_headers = {{ sub = \"X-App-Id\" }}\n",
        jwt_route(up.addr, "app")
    ));
    s.dir.write("keys/jwks.json", jwks(&m, &["k1"]));
    let r = s.start().await;

    let cases = [
        ("expired", "expired"),
        ("not_yet", "bad_claim"),
        ("wrong_aud", "bad_claim"),
        ("wrong_iss", "bad_claim"),
        ("alg_none", "bad_signature"),
        ("hs_confusion", "bad_signature"),
        ("unknown_kid", "unknown_key"),
    ];
    for client in [s.client(&r), s.client(&r).h2()] {
        let bearer = format!("Bearer {}", token(&m, "valid"));
        let ok = send(
            &client,
            "/orders",
            &[("authorization", &bearer), ("x-app-id", "spoofed")],
        )
        .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        let seen: Value = serde_json::from_str(&ok.body).expect("echo");
        assert_eq!(
            seen["headers"]["x-app-id"],
            json!(["app-1"]),
            "verified sub, not the client's copy"
        );
        assert!(
            seen["headers"].get("authorization").is_none(),
            "the token is not forwarded"
        );

        for (name, _) in cases {
            let bearer = format!("Bearer {}", token(&m, name));
            let reply = send(&client, "/orders", &[("authorization", &bearer)]).await;
            assert_eq!(reply.status, 401, "{name}");
            assert_eq!(
                reply.headers.get("www-authenticate").map(|v| v.as_bytes()),
                Some(&b"Bearer error=\"invalid_token\""[..]),
                "{name}"
            );
            assert_eq!(
                reply.body, "unauthorized\n",
                "{name}: the reason stays in the log"
            );
        }
        let missing = send(&client, "/orders", &[]).await;
        assert_eq!(missing.status, 401);
        assert_eq!(
            missing
                .headers
                .get("www-authenticate")
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..]),
            "no error code when no credentials came (RFC 6750 §3.1)"
        );
    }
    assert_eq!(up.hits(), 2, "only the valid token went upstream");
    assert_eq!(auth_count(&r, "app", "ok").await, 2.0);
    assert_eq!(auth_count(&r, "app", "missing").await, 2.0);
    assert_eq!(auth_count(&r, "app", "expired").await, 2.0);
    assert_eq!(auth_count(&r, "app", "bad_claim").await, 6.0);
    assert_eq!(auth_count(&r, "app", "bad_signature").await, 4.0);
    assert_eq!(auth_count(&r, "app", "unknown_key").await, 2.0);
    assert_eq!(
        auth_count(&r, "app", "binding").await,
        0.0,
        "series exist from the start"
    );
}

#[tokio::test]
async fn report_mode_forwards_failures_and_counts_them() {
    let Some(m) = mint(json!({
        "rsa_keys": ["k1"],
        "tokens": {"expired": {"claims": {"exp": -600}, "sign": "rsa", "key": "k1", "kid": "k1"}}
    })) else {
        return;
    };
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "{}[auth.watch]\nkind = \"jwt\"\nmode = \"report\"\nkey = \"keys/pub.pem\"\nalgorithms = [\"RS256\"]\nforward_token = true\n",
        jwt_route(up.addr, "watch")
    ));
    s.dir.write(
        "keys/pub.pem",
        m["keys"]["k1"]["pem"].as_str().expect("pem"),
    );
    let r = s.start().await;
    for client in [s.client(&r), s.client(&r).h2()] {
        assert_eq!(send(&client, "/", &[]).await.status, 200);
        let bearer = format!("Bearer {}", token(&m, "expired"));
        let reply = send(&client, "/", &[("authorization", &bearer)]).await;
        assert_eq!(reply.status, 200);
        let seen: Value = serde_json::from_str(&reply.body).expect("echo");
        assert_eq!(
            seen["headers"]["authorization"],
            json!([bearer]),
            "forward_token = true"
        );
    }
    assert_eq!(up.hits(), 4);
    assert_eq!(auth_count(&r, "watch", "missing").await, 2.0);
    assert_eq!(auth_count(&r, "watch", "expired").await, 2.0);
}

#[tokio::test]
async fn a_key_rotated_by_swapping_the_jwks_file_is_used_without_a_restart() {
    let claims = json!({"exp": 300});
    let Some(m) = mint(json!({
        "rsa_keys": ["old", "new"],
        "tokens": {
            "by_old": {"claims": claims, "sign": "rsa", "key": "old", "kid": "old"},
            "by_new": {"claims": claims, "sign": "rsa", "key": "new", "kid": "new"},
        }
    })) else {
        return;
    };
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "{}[auth.app]\nkind = \"jwt\"\njwks = \"keys/jwks.json\"\nalgorithms = [\"RS256\"]\n",
        jwt_route(up.addr, "app")
    ));
    s.dir.write("keys/jwks.json", jwks(&m, &["old"]));
    let r = s.start().await;
    let bearer = |name: &str| format!("Bearer {}", token(&m, name));
    let h1 = s.client(&r);
    // One HTTP/2 connection held open across the swap: its next request sees the new keys.
    let mut h2 = s.client(&r).h2().connect().await.expect("h2 connection");
    let mut on_h2 = async |name: &str| {
        let mut req: Request<Full<Bytes>> = get("localhost", "/", true);
        req.headers_mut().insert(
            "authorization",
            http::HeaderValue::from_str(&bearer(name)).expect("value"),
        );
        h2.send(req).await.expect("h2 request").status
    };
    assert_eq!(on_h2("by_old").await, 200);
    assert_eq!(on_h2("by_new").await, 401);
    let on_h1 = async |name: &str| {
        send(&h1, "/", &[("authorization", &bearer(name))])
            .await
            .status
    };
    assert_eq!(on_h1("by_new").await, 401);

    let g = common::reload::generation(r.admin).await;
    // What a sidecar does: write aside, rename over.
    s.dir.write("keys/jwks.json.tmp", jwks(&m, &["new"]));
    std::fs::rename(
        s.dir.path().join("keys/jwks.json.tmp"),
        s.dir.path().join("keys/jwks.json"),
    )
    .expect("rename");
    common::reload::wait_generation(r.admin, g + 1).await;

    assert_eq!(on_h2("by_new").await, 200, "same connection, new keys");
    assert_eq!(on_h2("by_old").await, 401);
    assert_eq!(on_h1("by_new").await, 200);
    assert_eq!(on_h1("by_old").await, 401);
    assert_eq!(auth_count(&r, "app", "unknown_key").await, 4.0);
    assert_eq!(auth_count(&r, "app", "ok").await, 3.0);
}

/// 64 bytes, base64 as `approov secret -get base64` prints it.
const APPROOV_SECRET: &str =
    "c2VjcmV0LWZvci10aGUtYXBwcm9vdi10ZXN0LTY0LWJ5dGVzLWxvbmctLS0tLS0tLS0tLS0tLS0tLS0tLS0tLQ==";

#[tokio::test]
async fn approov_tokens_must_bind_to_the_authorization_header() {
    let claims = json!({"exp": 300, "did": "device-1"});
    let Some(m) = mint(json!({
        "tokens": {
            "bound": {"claims": claims, "sign": "hs", "secret": APPROOV_SECRET, "pay_of": "Bearer user-42"},
            "other": {"claims": claims, "sign": "hs", "secret": APPROOV_SECRET, "pay_of": "Bearer user-43"},
        }
    })) else {
        return;
    };
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "{}[auth.approov]\npreset = \"approov\"\nkey = \"keys/approov.b64\"\nbind_header = \"Authorization\"\n",
        jwt_route(up.addr, "approov")
    ));
    s.dir
        .write("keys/approov.b64", format!("{APPROOV_SECRET}\n"));
    let r = s.start().await;
    for client in [s.client(&r), s.client(&r).h2()] {
        let ok = send(
            &client,
            "/",
            &[
                ("approov-token", token(&m, "bound")),
                ("authorization", "Bearer user-42"),
            ],
        )
        .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        let seen: Value = serde_json::from_str(&ok.body).expect("echo");
        assert!(seen["headers"].get("approov-token").is_none());
        assert_eq!(
            seen["headers"]["authorization"],
            json!(["Bearer user-42"]),
            "the user's own token goes on"
        );

        let stolen = send(
            &client,
            "/",
            &[
                ("approov-token", token(&m, "other")),
                ("authorization", "Bearer user-42"),
            ],
        )
        .await;
        assert_eq!(stolen.status, 403);
        assert!(stolen.headers.get("www-authenticate").is_none());
        assert_eq!(stolen.body, "forbidden\n");
        assert_eq!(
            send(&client, "/", &[("authorization", "Bearer user-42")])
                .await
                .status,
            403
        );
    }
    assert_eq!(auth_count(&r, "approov", "ok").await, 2.0);
    assert_eq!(auth_count(&r, "approov", "binding").await, 2.0);
    assert_eq!(auth_count(&r, "approov", "missing").await, 2.0);
}

#[tokio::test]
async fn firebase_app_check_preset_accepts_its_project_and_warns_about_a_stale_jwks() {
    let claims = json!({
        "iss": "https://firebaseappcheck.googleapis.com/123456",
        "aud": ["projects/123456", "projects/my-shop"],
        "sub": "1:123456:android:abc", "exp": 300,
    });
    let mut other = claims.clone();
    other["iss"] = json!("https://firebaseappcheck.googleapis.com/999");
    other["aud"] = json!(["projects/999", "projects/other"]);
    let Some(m) = mint(json!({
        "rsa_keys": ["fb"],
        "tokens": {
            "ours": {"claims": claims, "sign": "rsa", "key": "fb", "kid": "fb"},
            "theirs": {"claims": other, "sign": "rsa", "key": "fb", "kid": "fb"},
        }
    })) else {
        return;
    };
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "{}[auth.appcheck]\npreset = \"firebase_app_check\"\nproject_number = \"123456\"\nproject_id = \"my-shop\"\n\
         jwks = \"keys/appcheck.json\"\nclaims_to_headers = {{ sub = \"X-App-Id\" }}\n",
        jwt_route(up.addr, "appcheck")
    ));
    let file = s.dir.write("keys/appcheck.json", jwks(&m, &["fb"]));
    let r = s.start().await;
    for client in [s.client(&r), s.client(&r).h2()] {
        let ok = send(&client, "/", &[("x-firebase-appcheck", token(&m, "ours"))]).await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        let seen: Value = serde_json::from_str(&ok.body).expect("echo");
        assert_eq!(seen["headers"]["x-app-id"], json!(["1:123456:android:abc"]));
        let theirs = send(
            &client,
            "/",
            &[("x-firebase-appcheck", token(&m, "theirs"))],
        )
        .await;
        assert_eq!(theirs.status, 403);
    }
    assert_eq!(auth_count(&r, "appcheck", "bad_claim").await, 2.0);

    assert!(
        !pinproxy::check::check(&s.dir.config_path(), false)
            .await
            .text
            .contains("max_key_age"),
        "a fresh JWKS is fine"
    );
    let status = Command::new("touch")
        .args(["-d", "7 hours ago"])
        .arg(&file)
        .status()
        .expect("touch");
    assert!(status.success());
    let report = pinproxy::check::check(&s.dir.config_path(), false).await;
    assert!(report.ok, "{}", report.text);
    assert!(
        report.text.contains("warning:")
            && report.text.contains("`auth.appcheck.jwks`")
            && report.text.contains("longer than max_key_age (6h)"),
        "{}",
        report.text
    );
}

#[tokio::test]
async fn api_keys_are_checked_against_their_sha256_and_not_forwarded() {
    use sha2::Digest as _;
    let digest: String = sha2::Sha256::digest(b"app-key-1")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "{}[auth.appkey]\nkind = \"api_key\"\nheader = \"X-Api-Key\"\nsha256 = [\"{digest}\"]\n",
        jwt_route(up.addr, "appkey")
    ));
    let r = s.start().await;
    for client in [s.client(&r), s.client(&r).h2()] {
        let ok = send(&client, "/", &[("x-api-key", "app-key-1")]).await;
        assert_eq!(ok.status, 200);
        let seen: Value = serde_json::from_str(&ok.body).expect("echo");
        assert!(seen["headers"].get("x-api-key").is_none());
        assert_eq!(
            send(&client, "/", &[("x-api-key", "app-key-2")])
                .await
                .status,
            403
        );
        assert_eq!(send(&client, "/", &[]).await.status, 403);
    }
    assert_eq!(auth_count(&r, "appkey", "ok").await, 2.0);
    assert_eq!(auth_count(&r, "appkey", "unknown_key").await, 2.0);
    assert_eq!(auth_count(&r, "appkey", "missing").await, 2.0);
}

#[tokio::test]
async fn check_names_file_and_field_of_a_policy_that_would_confuse_keys_or_accept_none() {
    let Some(m) = mint(json!({"rsa_keys": ["k1"], "tokens": {}})) else {
        return;
    };
    let routes = "[[route]]\npath_prefix = \"/\"\nupstream = \"backend\"\nauth = \"hs\"\n\n\
         [upstream.backend]\nurl = \"http://127.0.0.1:1\"\n\n";
    // Config-file mistakes first: the file's own checks run before any key file is read.
    let s = TestProxy::new(&format!(
        "{routes}[[route]]\npath_prefix = \"/b\"\nupstream = \"backend\"\nauth = \"nobody\"\n\n\
         [auth.hs]\nkind = \"jwt\"\nkey = \"keys/pub.pem\"\nalgorithms = [\"none\"]\n"
    ));
    let report = pinproxy::check::check(&s.dir.config_path(), false).await;
    assert!(!report.ok, "{}", report.text);
    for expected in [
        "config.toml: `auth.hs.algorithms[0]`: unsigned tokens (\"none\") are never accepted",
        "config.toml: `route[1].auth`: no [auth.nobody] section",
        "2 error(s)",
    ] {
        assert!(
            report.text.contains(expected),
            "{expected:?} in:\n{}",
            report.text
        );
    }
    // Then the key file: an RSA public key offered as an HS256 secret.
    let hs = "[auth.hs]\nkind = \"jwt\"\nkey = \"keys/pub.pem\"\nalgorithms = [\"HS256\"]\n";
    s.dir.write(
        "config.toml",
        basic_config("api", &["app"], &format!("{routes}{hs}")),
    );
    s.dir.write(
        "keys/pub.pem",
        m["keys"]["k1"]["pem"].as_str().expect("pem"),
    );
    let report = pinproxy::check::check(&s.dir.config_path(), false).await;
    assert!(!report.ok, "{}", report.text);
    assert!(
        report.text.contains("config.toml: `auth.hs.key`: ")
            && report.text.contains(
                "keys/pub.pem: HS* algorithms with a PEM key: a public key must never be used as an HMAC secret"
            ),
        "{}",
        report.text
    );
    // A policy no route names is a warning, not silence.
    let spare = format!(
        "[auth.spare]\nkind = \"api_key\"\nsha256 = [\"{}\"]\n",
        "0f".repeat(32)
    );
    s.dir.write(
        "config.toml",
        basic_config(
            "api",
            &["app"],
            &format!("[[route]]\npath_prefix = \"/\"\nupstream = \"backend\"\n\n[upstream.backend]\nurl = \"http://127.0.0.1:1\"\n\n{spare}"),
        ),
    );
    let report = pinproxy::check::check(&s.dir.config_path(), false).await;
    assert!(report.ok, "{}", report.text);
    assert!(
        report.text.contains("warning: ")
            && report
                .text
                .contains("`auth.spare`: no route names this policy"),
        "{}",
        report.text
    );
}

#[tokio::test]
async fn a_jwks_with_a_one_byte_rsa_modulus_is_refused_on_reload_and_valid_tokens_keep_passing() {
    let claims = json!({"exp": 300});
    let Some(m) = mint(json!({
        "rsa_keys": ["old"],
        "tokens": {"by_old": {"claims": claims, "sign": "rsa", "key": "old", "kid": "old"}}
    })) else {
        return;
    };
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "{}[auth.app]\nkind = \"jwt\"\njwks = \"keys/jwks.json\"\nalgorithms = [\"RS256\"]\n",
        jwt_route(up.addr, "app")
    ));
    s.dir.write("keys/jwks.json", jwks(&m, &["old"]));
    let r = s.start().await;
    let bearer = format!("Bearer {}", token(&m, "by_old"));
    let client = s.client(&r);
    assert_eq!(
        send(&client, "/", &[("authorization", &bearer)])
            .await
            .status,
        200
    );

    let tiny = json!({"keys": [{"kty": "RSA", "kid": "tiny", "n": "sQ", "e": "AQAB"}]});
    common::reload::write_atomic(&s.dir.path().join("keys/jwks.json"), tiny.to_string());
    r.reload();
    common::eventually(common::reload::RELOAD_WAIT, || async {
        (common::reload::failures(r.admin).await >= 1.0).then_some(())
    })
    .await;
    let status = common::reload::reload_status(r.admin).await.to_string();
    assert!(
        status.contains("keys/jwks.json")
            && status.contains("key tiny: the RSA modulus `n` is 8 bits"),
        "{status}"
    );
    assert_eq!(
        send(&client, "/", &[("authorization", &bearer)])
            .await
            .status,
        200,
        "the old keys keep serving"
    );
}
