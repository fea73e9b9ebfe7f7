//! Upstream pinning: pins are checked after normal verification and only against the verified
//! path, in enforce or report mode, by leaf or by chain.

use super::*;

/// A proxy whose upstream "pay" is `up`, verified by `ca_pem`, pinned by pin set "psp".
async fn pinned_proxy(
    up: &TestUpstream,
    ca_pem: &str,
    pins: &[&str],
    mode: &str,
    pin_match: &str,
) -> (TestProxy, Running) {
    let extra = format!(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"pay\"\n\n[upstream.pay]\nurl = \"https://{}\"\nca = \"certs/psp-ca.pem\"\n\
         server_name = \"pay.test\"\npin_set = \"psp\"\npin_match = \"{pin_match}\"\n",
        up.addr
    );
    let s = TestProxy::new(&extra);
    s.dir.write("certs/psp-ca.pem", ca_pem);
    let entries: Vec<(&str, &str, &str)> = pins.iter().map(|p| (*p, "psp key", "key")).collect();
    s.dir.write_pin_set("psp", "2099-01-01", mode, &entries);
    let r = s.start().await;
    (s, r)
}

async fn status_of(s: &TestProxy, r: &Running) -> u16 {
    s.client(r)
        .get("localhost", "/pay")
        .await
        .expect("request")
        .status
}

#[tokio::test]
async fn enforce_lets_a_pinned_upstream_leaf_through_and_refuses_another_with_502() {
    let psp = Pki::with_intermediate("psp");
    let leaf = psp.leaf(&["pay.test"]);
    let up = TestUpstream::tls(&leaf, UpstreamMode::Echo).await;
    let (s, r) = pinned_proxy(&up, &psp.root_pem(), &[&leaf.pin], "enforce", "leaf").await;
    assert_eq!(status_of(&s, &r).await, 200);

    let other = TestUpstream::tls(&psp.leaf(&["pay.test"]), UpstreamMode::Echo).await;
    let (s2, r2) = pinned_proxy(&other, &psp.root_pem(), &[&leaf.pin], "enforce", "leaf").await;
    assert_eq!(status_of(&s2, &r2).await, 502);
    assert_eq!(other.hits(), 0, "nothing reached the unpinned upstream");
    assert_eq!(
        scrape(
            r2.admin,
            "pinproxy_upstream_errors_total",
            &[("upstream", "pay"), ("kind", "pin")]
        )
        .await,
        1.0
    );
    assert_eq!(
        scrape(
            r2.admin,
            "pinproxy_upstream_pin_mismatches_total",
            &[("upstream", "pay"), ("mode", "enforce")]
        )
        .await,
        1.0
    );
    let (_, m) = admin_get(r.admin, "/metrics").await;
    assert_eq!(
        metric(
            &m,
            "pinproxy_upstream_pin_mismatches_total",
            &[("upstream", "pay")]
        ),
        Some(0.0),
        "series exists at 0: {m}"
    );
}

#[tokio::test]
async fn chain_matching_accepts_a_pinned_intermediate_or_root_and_leaf_matching_does_not() {
    let psp = Pki::with_intermediate("psp");
    let leaf = psp.leaf(&["pay.test"]);
    let up = TestUpstream::tls(&leaf, UpstreamMode::Echo).await;
    let inter = psp.intermediate_pin.clone().expect("intermediate");
    let (s, r) = pinned_proxy(&up, &psp.root_pem(), &[&inter], "enforce", "chain").await;
    assert_eq!(
        status_of(&s, &r).await,
        200,
        "intermediate on the verified path"
    );
    let (s, r) = pinned_proxy(&up, &psp.root_pem(), &[&psp.root_pin], "enforce", "chain").await;
    assert_eq!(
        status_of(&s, &r).await,
        200,
        "the trust anchor's key, re-wrapped as a full SPKI"
    );
    let (s, r) = pinned_proxy(&up, &psp.root_pem(), &[&inter], "enforce", "leaf").await;
    assert_eq!(
        status_of(&s, &r).await,
        502,
        "leaf matching ignores the intermediate"
    );
}

#[tokio::test]
async fn a_trusted_but_unpinned_leaf_that_appends_the_pinned_intermediate_is_refused() {
    // CVE-2016-2402: the attacker holds a certificate from another trusted CA and appends the
    // public, pinned intermediate to its chain. Only the verified path may count.
    let psp = Pki::with_intermediate("psp");
    let other_ca = Pki::new("other-trusted-ca");
    let mut forged = other_ca.leaf(&["pay.test"]);
    forged.chain_rest_pem = psp.intermediate.as_ref().expect("intermediate").pem();
    let attacker = TestUpstream::tls(&forged, UpstreamMode::Echo).await;
    let both_roots = format!("{}{}", psp.root_pem(), other_ca.root_pem());
    let inter = psp.intermediate_pin.clone().expect("intermediate");
    let (s, r) = pinned_proxy(&attacker, &both_roots, &[&inter], "enforce", "chain").await;
    assert_eq!(status_of(&s, &r).await, 502);
    assert_eq!(attacker.hits(), 0);
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_upstream_errors_total",
            &[("upstream", "pay"), ("kind", "pin")]
        )
        .await,
        1.0
    );

    let honest = TestUpstream::tls(&psp.leaf(&["pay.test"]), UpstreamMode::Echo).await;
    let (s, r) = pinned_proxy(&honest, &both_roots, &[&inter], "enforce", "chain").await;
    assert_eq!(
        status_of(&s, &r).await,
        200,
        "the real chain through the pinned intermediate passes"
    );
}

#[tokio::test]
async fn a_pinned_but_untrusted_upstream_is_refused() {
    let psp = Pki::new("psp");
    let rogue = Pki::new("rogue");
    let leaf = rogue.leaf(&["pay.test"]);
    let up = TestUpstream::tls(&leaf, UpstreamMode::Echo).await;
    let (s, r) = pinned_proxy(&up, &psp.root_pem(), &[&leaf.pin], "enforce", "leaf").await;
    assert_eq!(
        status_of(&s, &r).await,
        502,
        "a pin never replaces verification"
    );
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_upstream_errors_total",
            &[("upstream", "pay"), ("kind", "tls")]
        )
        .await,
        1.0
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn report_mode_lets_requests_through_and_counts_every_mismatched_handshake() {
    let psp = Pki::new("psp");
    let up = TestUpstream::tls(&psp.leaf(&["pay.test"]), UpstreamMode::Close).await;
    let (s, r) = pinned_proxy(&up, &psp.root_pem(), &[&backup_pin(5)], "report", "chain").await;
    for _ in 0..3 {
        assert_eq!(status_of(&s, &r).await, 200);
    }
    assert_eq!(up.hits(), 3);
    // Each request needed a new handshake; the warning is rate-limited, the counter is not.
    let labels = [("upstream", "pay"), ("mode", "report")];
    assert_eq!(
        scrape(r.admin, "pinproxy_upstream_pin_mismatches_total", &labels).await,
        3.0
    );
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_upstream_errors_total",
            &[("upstream", "pay"), ("kind", "pin")]
        )
        .await,
        0.0
    );
}

#[tokio::test]
async fn a_new_upstream_key_is_counted_as_a_key_change_but_not_the_first_sighting() {
    let psp = Pki::new("psp");
    let first = TestUpstream::tls(&psp.leaf(&["pay.test"]), UpstreamMode::Echo).await;
    let second = TestUpstream::tls(&psp.leaf(&["pay.test"]), UpstreamMode::Echo).await;
    let extra = |addr: std::net::SocketAddr| {
        format!(
            "[[route]]\npath_prefix = \"/\"\nupstream = \"pay\"\n\n[upstream.pay]\nurl = \"https://{addr}\"\nca = \"certs/psp-ca.pem\"\nserver_name = \"pay.test\"\n"
        )
    };
    let s = TestProxy::new(&extra(first.addr));
    s.dir.write("certs/psp-ca.pem", psp.root_pem());
    let r = s.start().await;
    assert_eq!(status_of(&s, &r).await, 200);
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_upstream_key_changes_total",
            &[("upstream", "pay")]
        )
        .await,
        0.0
    );
    s.dir.write(
        "config.toml",
        basic_config("api", &["app"], &extra(second.addr)),
    );
    r.reload();
    eventually(Duration::from_secs(10), || async {
        (scrape(r.admin, "pinproxy_config_generation", &[]).await >= 2.0).then_some(())
    })
    .await;
    assert_eq!(status_of(&s, &r).await, 200);
    assert_eq!(second.hits(), 1);
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_upstream_key_changes_total",
            &[("upstream", "pay")]
        )
        .await,
        1.0
    );
}
