//! One path for routing, token checks and forwarding: spellings of a protected path that an
//! upstream would read as the same resource never reach an unauthenticated route, and a route
//! without auth is forwarded the normalised path.

use super::*;

/// Four spellings of `/jwt/x` an upstream may serve as `/jwt/x`.
const SPELLINGS: [&str; 4] = ["//jwt/x", "/%6Awt/x", "/jwt%2Fx", "/jwt;p/x"];

/// A `/jwt` route behind a JWT policy (key minted here) and an open `/` route.
fn protected_and_open(jwt: std::net::SocketAddr, open: std::net::SocketAddr) -> TestProxy {
    let key = rcgen::KeyPair::generate().expect("P-256 key");
    let s = TestProxy::new(&format!(
        "[[route]]\npath_prefix = \"/jwt\"\nupstream = \"jwt\"\nauth = \"app\"\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"open\"\n\n\
         [upstream.jwt]\nurl = \"http://{jwt}\"\n[upstream.open]\nurl = \"http://{open}\"\n\n\
         [auth.app]\nkind = \"jwt\"\nkey = \"keys/pub.pem\"\nalgorithms = [\"ES256\"]\n"
    ));
    s.dir.write("keys/pub.pem", key.public_key_pem());
    s
}

#[tokio::test]
async fn other_spellings_of_a_protected_path_get_401_or_400_over_http1_and_http2_never_the_open_route()
 {
    let jwt = TestUpstream::plain(UpstreamMode::Echo).await;
    let open = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = protected_and_open(jwt.addr, open.addr);
    let r = s.start().await;
    for h2 in [false, true] {
        let mut c = s.client(&r);
        if h2 {
            c = c.h2();
        }
        for path in SPELLINGS {
            let got = c.get("localhost", path).await.expect("an answer");
            assert!(
                [400, 401, 403].contains(&got.status),
                "h2={h2} {path}: {} {}",
                got.status,
                got.body
            );
        }
    }
    assert_eq!(open.hits(), 0, "the open route's upstream saw none of them");
    assert_eq!(
        jwt.hits(),
        0,
        "no token, so none reached the protected upstream"
    );
}

#[tokio::test]
async fn a_route_without_auth_serves_merged_slashes_and_the_upstream_sees_the_normalised_path() {
    let jwt = TestUpstream::plain(UpstreamMode::Echo).await;
    let open = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = protected_and_open(jwt.addr, open.addr);
    let r = s.start().await;
    for h2 in [false, true] {
        let mut c = s.client(&r);
        if h2 {
            c = c.h2();
        }
        for (sent, seen) in [
            ("//x", "/x"),
            ("/a//b/%7e%41?q=1", "/a/b/~A"),
            ("/c%2fd", "/c%2Fd"),
        ] {
            let got = c.get("localhost", sent).await.expect("an answer");
            assert_eq!(got.status, 200, "h2={h2} {sent}: {}", got.body);
            assert_eq!(json(&got.body)["path"], seen, "h2={h2} {sent}");
        }
    }
    assert_eq!(open.hits(), 6);
}

#[tokio::test]
async fn a_path_prefix_not_in_normal_form_is_refused_by_check() {
    for prefix in ["/a//b", "/%6Awt", "/a;b", "/a%2fb"] {
        let s = TestProxy::new(&format!(
            "[[route]]\npath_prefix = \"{prefix}\"\nupstream = \"backend\"\n\n\
             [upstream.backend]\nurl = \"http://127.0.0.1:1\"\n"
        ));
        let err = match pinproxy::run::start(&s.config_path()).await {
            Ok(_) => panic!("{prefix}: started"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains("route[0].path_prefix") && err.contains("normal form"),
            "{prefix}: {err}"
        );
    }
}
