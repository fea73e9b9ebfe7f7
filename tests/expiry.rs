//! Expiry monitoring as an operator's Prometheus and `/status` see it: every served and
//! upstream-verified certificate with its notAfter and pins, pin-set expiry dates, the configured
//! thresholds, and series that go away when what they describe does.
//!
//! Oracles are independent of the code under test: notAfter and serial from parsing the DER
//! rcgen minted, pins from rcgen's SPKI bytes, dates from `date -u -d DATE +%s`.

mod common;

use std::time::{Duration, Instant};

use common::prom::{self, Sample};
use common::*;
use pinproxy::expiry::{Reason, Sweeper};
use pinproxy::run::Running;
use serde_json::Value;

const NOT_AFTER: &str = "pinproxy_certificate_not_after_timestamp_seconds";
const PINNED: &str = "pinproxy_certificate_pinned";
const PIN_SET_EXPIRY: &str = "pinproxy_pin_set_expiry_timestamp_seconds";
const THRESHOLD: &str = "pinproxy_expiry_threshold_seconds";
const GENERATION: &str = "pinproxy_config_generation";

/// `date -u -d 2099-01-01 +%s`, `date -u -d 2020-01-01 +%s`.
const Y2099: f64 = 4_070_908_800.0;
const Y2020: f64 = 1_577_836_800.0;

/// What the metrics must say about one certificate, read from its DER.
struct Expect {
    position: &'static str,
    subject: String,
    serial: String,
    pin: String,
    not_after: i64,
}

impl Expect {
    fn of(position: &'static str, der: &[u8], pin: &str) -> Self {
        let (_, x) = x509_parser::parse_x509_certificate(der).expect("test cert parses");
        let serial: Vec<String> = x.raw_serial().iter().map(|b| format!("{b:02x}")).collect();
        Expect {
            position,
            subject: x.subject().to_string(),
            serial: serial.join(":"),
            pin: format!("sha256/{pin}"),
            not_after: x.validity().not_after.timestamp(),
        }
    }

    fn labels<'a>(&'a self, scope: &'a str, name: &'a str) -> [(&'a str, &'a str); 6] {
        [
            ("scope", scope),
            ("name", name),
            ("position", self.position),
            ("subject", &self.subject),
            ("serial", &self.serial),
            ("pin", &self.pin),
        ]
    }

    fn pinned_labels<'a>(
        &'a self,
        scope: &'a str,
        name: &'a str,
        pin_set: &'a str,
    ) -> [(&'a str, &'a str); 5] {
        [
            ("scope", scope),
            ("name", name),
            ("pin_set", pin_set),
            ("position", self.position),
            ("pin", &self.pin),
        ]
    }
}

fn intermediate(pki: &Pki) -> Expect {
    Expect::of(
        "intermediate",
        pki.intermediate
            .as_ref()
            .expect("pki has an intermediate")
            .der(),
        pki.intermediate_pin.as_deref().expect("intermediate pin"),
    )
}

fn anchor(pki: &Pki) -> Expect {
    Expect::of("anchor", pki.root.der(), &pki.root_pin)
}

async fn samples(r: &Running) -> Vec<Sample> {
    let (status, text) = admin_get(r.admin, "/metrics").await;
    assert_eq!(status, 200);
    prom::parse(&text)
}

async fn status(r: &Running) -> Value {
    let (code, body) = admin_get(r.admin, "/status").await;
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
}

/// Scrapes until `f` holds, for at most 10 s (the sweep follows a start, swap or handshake
/// within milliseconds; `check_every` in these tests is far longer unless stated).
async fn until(r: &Running, what: &str, f: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = samples(r).await;
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "within 10s: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_generation(r: &Running, generation: f64) {
    until(r, &format!("config generation {generation}"), |s| {
        prom::exact(s, GENERATION, &[]) == Some(generation)
    })
    .await;
}

fn scoped<'a>(s: &'a [Sample], name: &str, scope: &str) -> Vec<&'a Sample> {
    prom::select(s, name, &[("scope", scope)])
}

/// A route for configs whose upstream is never called.
const IDLE_ROUTE: &str = "[[route]]\npath_prefix = \"/\"\nupstream = \"idle\"\n\n[upstream.idle]\nurl = \"http://127.0.0.1:9\"\n\n";

/// `[[listener]] mobile` on 127.0.0.1:0 serving certs/api.pem, optionally with an anchor.
fn listener(pin_sets: &[&str], anchor: Option<&str>) -> String {
    let sets: Vec<String> = pin_sets.iter().map(|s| format!("\"{s}\"")).collect();
    let anchor = anchor.map_or(String::new(), |a| format!("anchor = \"{a}\"\n"));
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listener]]\nname = \"mobile\"\nlisten = \"127.0.0.1:0\"\npin_sets = [{}]\n\
         [[listener.cert]]\nserver_names = [\"localhost\"]\nchain = \"certs/api.pem\"\nkey = \"certs/api.key\"\n{anchor}\n",
        sets.join(", ")
    )
}

fn https_upstream(name: &str, addr: std::net::SocketAddr, pin_set: Option<&str>) -> String {
    let pins = pin_set.map_or(String::new(), |p| format!("pin_set = \"{p}\"\n"));
    format!(
        "[upstream.{name}]\nurl = \"https://{addr}\"\nca = \"certs/{name}-ca.pem\"\nserver_name = \"localhost\"\n{pins}\n"
    )
}

fn route(prefix: &str, upstream: &str) -> String {
    format!("[[route]]\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\n\n")
}

/// A proxy whose listener "mobile" serves a leaf of an intermediate (pinned by "app") and
/// routes `/` to an HTTPS upstream "payments" behind its own CA with an intermediate, pinned
/// by the upstream pin set "payments" on that intermediate.
struct UpstreamSetup {
    /// The listener's side.
    proxy: TestProxy,
    up_pki: Pki,
    up_leaf: Issued,
    upstream: TestUpstream,
}

impl UpstreamSetup {
    async fn new(expiry: &str) -> Self {
        let pki = Pki::new("proxy");
        let leaf = pki.leaf(&["localhost"]);
        let proxy = TestProxy::builder().serve(pki, leaf).build();
        let dir = &proxy.dir;
        let up_pki = Pki::with_intermediate("payments");
        let up_leaf = up_pki.leaf_valid_days(&["localhost", "127.0.0.1"], 20);
        let upstream = TestUpstream::tls(&up_leaf, UpstreamMode::Echo).await;
        dir.write("certs/payments-ca.pem", up_pki.root_pem());
        let ca_pin = up_pki.intermediate_pin.clone().expect("intermediate pin");
        dir.write_pin_set(
            "payments",
            "2099-01-01",
            "enforce",
            &[(&ca_pin, "payments CA", "ca")],
        );
        let s = UpstreamSetup {
            proxy,
            up_pki,
            up_leaf,
            upstream,
        };
        s.write_config(expiry, true);
        s
    }

    /// With `payments`, `/` goes to it; without, the upstream is gone from the config and `/`
    /// goes to a plain upstream that is never called.
    fn write_config(&self, expiry: &str, payments: bool) {
        let mut cfg = format!("{}{expiry}\n\n", listener(&["app"], None));
        if payments {
            cfg += &route("/", "payments");
            cfg += &https_upstream("payments", self.upstream.addr, Some("payments"));
        } else {
            cfg += IDLE_ROUTE;
        }
        self.proxy.dir.write("config.toml", cfg);
    }

    fn expected_path(&self) -> [Expect; 3] {
        [
            Expect::of("leaf", &self.up_leaf.cert_der, &self.up_leaf.pin),
            intermediate(&self.up_pki),
            anchor(&self.up_pki),
        ]
    }
}

#[tokio::test]
async fn served_leaf_intermediate_and_anchor_show_their_not_after_and_which_pin_sets_pin_them() {
    let dir = TestDir::new();
    let pki = Pki::with_intermediate("proxy");
    let leaf = pki.leaf_valid_days(&["localhost"], 60);
    dir.write_cert("api", &leaf);
    dir.write("certs/root.pem", pki.root_pem());
    let int_pin = pki.intermediate_pin.clone().expect("intermediate pin");
    dir.write_pin_set(
        "app",
        "2099-01-01",
        "enforce",
        &[
            (&leaf.pin, "current", "key"),
            (&backup_pin(1), "backup", "key"),
        ],
    );
    dir.write_pin_set(
        "app-ca",
        "2099-01-01",
        "enforce",
        &[
            (&int_pin, "issuing CA", "ca"),
            (&backup_pin(2), "backup CA", "ca"),
        ],
    );
    let expiry = "[expiry]\nwarn_before = \"30d\"\ncritical_before = \"10d\"\n\
                  pin_set_warn_before = \"90d\"\npin_set_critical_before = \"45d\"\n";
    dir.write(
        "config.toml",
        format!(
            "{}{IDLE_ROUTE}{expiry}",
            listener(&["app", "app-ca"], Some("certs/root.pem"))
        ),
    );
    let r = start_proxy(&dir.config_path()).await.expect("proxy starts");

    let path = [
        Expect::of("leaf", &leaf.cert_der, &leaf.pin),
        intermediate(&pki),
        anchor(&pki),
    ];
    let s = until(&r, "served certificates are swept", |s| {
        scoped(s, NOT_AFTER, "listener").len() == 3
    })
    .await;
    for c in &path {
        assert_eq!(
            prom::exact(&s, NOT_AFTER, &c.labels("listener", "mobile")),
            Some(c.not_after as f64),
            "{} notAfter",
            c.position
        );
    }
    assert!(
        (path[0].not_after - (time::OffsetDateTime::now_utc().unix_timestamp() + 60 * 86_400))
            .abs()
            < 120,
        "the leaf's notAfter is the rcgen parameter, 60 days ahead"
    );
    // pinned: "app" pins the leaf key only, "app-ca" the intermediate only.
    for (c, app, app_ca) in [
        (&path[0], 1.0, 0.0),
        (&path[1], 0.0, 1.0),
        (&path[2], 0.0, 0.0),
    ] {
        let got = |set| prom::exact(&s, PINNED, &c.pinned_labels("listener", "mobile", set));
        assert_eq!(got("app"), Some(app), "{} in app", c.position);
        assert_eq!(got("app-ca"), Some(app_ca), "{} in app-ca", c.position);
    }
    assert_eq!(
        prom::select(&s, PINNED, &[]).len(),
        6,
        "3 certs x 2 pin sets"
    );

    assert_eq!(
        prom::exact(&s, PIN_SET_EXPIRY, &[("pin_set", "app")]),
        Some(Y2099)
    );
    assert_eq!(
        prom::exact(&s, PIN_SET_EXPIRY, &[("pin_set", "app-ca")]),
        Some(Y2099)
    );
    for (kind, severity, days) in [
        ("certificate", "warning", 30.0),
        ("certificate", "critical", 10.0),
        ("pin_set", "warning", 90.0),
        ("pin_set", "critical", 45.0),
    ] {
        assert_eq!(
            prom::exact(&s, THRESHOLD, &[("kind", kind), ("severity", severity)]),
            Some(days * 86_400.0),
            "{kind} {severity}"
        );
    }
    assert_eq!(prom::select(&s, THRESHOLD, &[]).len(), 4);

    // /status: days left for every certificate and pin set, in the same windows.
    let st = status(&r).await;
    let served = &st["listeners"][0]["certs"][0]["path"];
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (i, c) in path.iter().enumerate() {
        let entry = &served[i];
        assert_eq!(entry["position"], c.position);
        assert_eq!(entry["pin"], c.pin.as_str());
        assert_eq!(entry["serial"], c.serial.as_str());
        let days = entry["days_left"].as_f64().expect("days_left is a number");
        let want = (c.not_after - now) as f64 / 86_400.0;
        assert!(
            (days - want).abs() < 0.02,
            "{}: {days} vs {want}",
            c.position
        );
    }
    assert_eq!(served[0]["urgency"], "ok", "60 days left, warning at 30");
    for set in st["pin_sets"].as_array().expect("pin_sets") {
        let days = set["days_left"].as_f64().expect("pin set days_left");
        assert!((days - (Y2099 - now as f64) / 86_400.0).abs() < 0.02);
        assert_eq!(set["urgency"], "ok");
    }
    assert_eq!(st["expiry"]["warn_before"], "30d");
}

#[tokio::test]
async fn an_expired_pin_set_keeps_its_series_and_the_proxy_still_starts() {
    let dir = TestDir::new();
    let pki = Pki::new("proxy");
    let leaf = pki.leaf(&["localhost"]);
    dir.write_pinned("api", &leaf);
    // An app generation long retired, whose pins match nothing served any more.
    dir.write_pin_set(
        "app-1",
        "2020-01-01",
        "enforce",
        &[
            (&backup_pin(7), "old key", "key"),
            (&backup_pin(8), "old backup", "key"),
        ],
    );
    dir.write(
        "config.toml",
        listener(&["app", "app-1"], None) + IDLE_ROUTE,
    );
    let r = start_proxy(&dir.config_path())
        .await
        .expect("an expired pin set is a warning, not a refusal to start");

    let leaf_exp = Expect::of("leaf", &leaf.cert_der, &leaf.pin);
    let s = until(&r, "pin sets are swept", |s| {
        prom::select(s, PIN_SET_EXPIRY, &[]).len() == 2
    })
    .await;
    assert_eq!(
        prom::exact(&s, PIN_SET_EXPIRY, &[("pin_set", "app-1")]),
        Some(Y2020)
    );
    assert_eq!(
        prom::exact(
            &s,
            PINNED,
            &leaf_exp.pinned_labels("listener", "mobile", "app-1")
        ),
        Some(0.0),
        "the listener still names it, and it does not pin the leaf"
    );
    assert_eq!(
        prom::exact(
            &s,
            PINNED,
            &leaf_exp.pinned_labels("listener", "mobile", "app")
        ),
        Some(1.0)
    );

    let st = status(&r).await;
    let old = st["pin_sets"]
        .as_array()
        .expect("pin_sets")
        .iter()
        .find(|p| p["name"] == "app-1")
        .expect("app-1 in /status");
    assert!(old["days_left"].as_f64().expect("days_left") < -300.0);
    assert_eq!(old["urgency"], "expired");
    assert_eq!(old["live"], false);
    let client = Client::new(r.listener("mobile").expect("listener"), &pki.root_pem());
    client
        .pin(&[&leaf.pin])
        .handshake()
        .await
        .expect("apps of the live generation still connect");
}

#[tokio::test]
async fn an_upstreams_verified_path_appears_after_the_first_request_and_goes_when_a_reload_removes_it()
 {
    let expiry = "[expiry]\ncheck_every = \"1h\"";
    let u = UpstreamSetup::new(expiry).await;
    let r = u.proxy.start().await;
    until(&r, "listener swept", |s| {
        !scoped(s, NOT_AFTER, "listener").is_empty()
    })
    .await;
    assert!(
        scoped(&samples(&r).await, NOT_AFTER, "upstream").is_empty(),
        "nothing is known of the upstream before a request"
    );
    let st = status(&r).await;
    assert!(st["upstreams"][0]["last_verified_path"].is_null());

    let reply = u
        .proxy
        .client(&r)
        .get("localhost", "/pay")
        .await
        .expect("request");
    assert_eq!(reply.status, 200);
    assert_eq!(u.upstream.hits(), 1);

    let path = u.expected_path();
    let s = until(&r, "the upstream's verified path is swept", |s| {
        scoped(s, NOT_AFTER, "upstream").len() == 3
    })
    .await;
    for (c, pinned) in path.iter().zip([0.0, 1.0, 0.0]) {
        assert_eq!(
            prom::exact(&s, NOT_AFTER, &c.labels("upstream", "payments")),
            Some(c.not_after as f64),
            "{} notAfter",
            c.position
        );
        assert_eq!(
            prom::exact(
                &s,
                PINNED,
                &c.pinned_labels("upstream", "payments", "payments")
            ),
            Some(pinned),
            "{} pinned by the payments CA pin",
            c.position
        );
    }

    let st = status(&r).await;
    let up = &st["upstreams"][0];
    assert_eq!(up["name"], "payments");
    assert_eq!(up["stale"], false);
    let seen = up["last_verified_path"].as_array().expect("verified path");
    assert_eq!(seen.len(), 3, "{seen:?}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (entry, c) in seen.iter().zip(&path) {
        assert_eq!(entry["position"], c.position);
        assert_eq!(entry["pin"], c.pin.as_str());
        assert_eq!(entry["subject"], c.subject.as_str());
        let days = entry["days_left"].as_f64().expect("days_left");
        assert!((days - (c.not_after - now) as f64 / 86_400.0).abs() < 0.02);
    }
    assert_eq!(seen[0]["urgency"], "warning", "20 days left, warning at 28");

    u.write_config(expiry, false);
    r.reload();
    wait_generation(&r, 2.0).await;
    let s = until(&r, "the removed upstream's series are gone", |s| {
        scoped(s, NOT_AFTER, "upstream").is_empty() && scoped(s, PINNED, "upstream").is_empty()
    })
    .await;
    assert_eq!(
        scoped(&s, NOT_AFTER, "listener").len(),
        1,
        "the served leaf stays"
    );
}

#[tokio::test]
async fn an_upstream_path_stays_while_requests_flow_and_goes_after_two_check_intervals_unseen() {
    let u = UpstreamSetup::new("[expiry]\ncheck_every = \"1s\"").await;
    let r = u.proxy.start().await;
    let client = u.proxy.client(&r);
    client.get("localhost", "/").await.expect("first request");
    until(&r, "the upstream's verified path is swept", |s| {
        scoped(s, NOT_AFTER, "upstream").len() == 3
    })
    .await;

    // Over the proxy's pooled (or resumed) upstream connection no new handshake happens; the
    // requests alone keep the path current, through more than 2 × check_every.
    let flowing = Instant::now();
    let mut last_request = Instant::now();
    while flowing.elapsed() < Duration::from_millis(4500) {
        let reply = client.get("localhost", "/").await.expect("request");
        assert_eq!(reply.status, 200);
        last_request = Instant::now();
        let s = samples(&r).await;
        assert_eq!(
            scoped(&s, NOT_AFTER, "upstream").len(),
            3,
            "series present while the upstream is in use ({:?} in)",
            flowing.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    until(&r, "the unseen upstream's series are gone", |s| {
        scoped(s, NOT_AFTER, "upstream").is_empty() && scoped(s, PINNED, "upstream").is_empty()
    })
    .await;
    let unseen = last_request.elapsed();
    // The proxy saw the last request a little before the client did.
    assert!(
        unseen >= Duration::from_millis(1800),
        "removed after {unseen:?}, before 2 × check_every"
    );
    let st = status(&r).await;
    assert_eq!(
        st["upstreams"][0]["stale"], true,
        "/status keeps the last path, marked stale"
    );
    assert_eq!(
        scoped(&samples(&r).await, NOT_AFTER, "listener").len(),
        1,
        "served certificates do not go stale"
    );
}

#[tokio::test]
async fn a_reload_that_replaces_the_served_certificate_removes_the_old_series_at_the_swap() {
    let dir = TestDir::new();
    let pki = Pki::new("proxy");
    let old = pki.leaf_valid_days(&["localhost"], 90);
    let next_key = rcgen::KeyPair::generate().expect("key");
    let next_pin = oracle_pin(&rcgen::PublicKeyData::subject_public_key_info(&next_key));
    dir.write_cert("api", &old);
    dir.write_pin_set(
        "app",
        "2099-01-01",
        "enforce",
        &[
            (&old.pin, "current", "key"),
            (&next_pin, "backup 1", "key"),
            (&backup_pin(3), "backup 2", "key"),
        ],
    );
    dir.write("config.toml", listener(&["app"], None) + IDLE_ROUTE);
    let r = start_proxy(&dir.config_path()).await.expect("proxy starts");
    let old_exp = Expect::of("leaf", &old.cert_der, &old.pin);
    until(&r, "the first leaf is swept", |s| {
        prom::exact(s, NOT_AFTER, &old_exp.labels("listener", "mobile")).is_some()
    })
    .await;

    // Rotation onto the shipped backup key, with a shorter validity.
    let next = pki.leaf_with_key(&["localhost"], next_key, 30);
    let next_exp = Expect::of("leaf", &next.cert_der, &next.pin);
    dir.write_cert("api", &next);
    r.reload();
    wait_generation(&r, 2.0).await;
    let swapped = Instant::now();
    let s = until(&r, "only the new leaf is reported", |s| {
        prom::exact(s, NOT_AFTER, &next_exp.labels("listener", "mobile")).is_some()
            && scoped(s, NOT_AFTER, "listener").len() == 1
    })
    .await;
    assert!(
        swapped.elapsed() < Duration::from_secs(10),
        "at the swap, not at the next check_every (1h)"
    );
    assert_eq!(
        prom::exact(&s, NOT_AFTER, &next_exp.labels("listener", "mobile")),
        Some(next_exp.not_after as f64)
    );
    assert_eq!(
        prom::exact(&s, NOT_AFTER, &old_exp.labels("listener", "mobile")),
        None
    );
    let pinned = prom::select(&s, PINNED, &[("scope", "listener")]);
    assert_eq!(pinned.len(), 1, "{pinned:?}");
    assert_eq!(pinned[0].label("pin"), next_exp.pin);
    assert_eq!(pinned[0].value, 1.0);
    let st = status(&r).await;
    assert_eq!(
        st["listeners"][0]["certs"][0]["path"][0]["serial"],
        next_exp.serial.as_str()
    );
}

/// A typical deployment: 2 listeners × 2 certificates (one shared intermediate per listener),
/// 3 pin sets, 2 HTTPS upstreams (one pinned). Prints the series count and the sweep time;
/// `cargo test --test expiry typical -- --nocapture` shows them.
#[tokio::test]
async fn a_typical_config_has_a_bounded_series_count_and_a_fast_sweep() {
    let dir = TestDir::new();
    let mut cfg = String::from("[admin]\nlisten = \"127.0.0.1:0\"\n\n");
    let mut roots = Vec::new();
    for (l, sets) in [
        ("mobile", ["app-4", "app-5"]),
        ("partner", ["app-5", "app-4"]),
    ] {
        let pki = Pki::with_intermediate(l);
        let a = pki.leaf(&["localhost"]);
        let b = pki.leaf(&[&format!("{l}.localhost")]);
        dir.write_cert(&format!("{l}-a"), &a);
        dir.write_cert(&format!("{l}-b"), &b);
        cfg += &format!(
            "[[listener]]\nname = \"{l}\"\nlisten = \"127.0.0.1:0\"\npin_sets = [\"{}\", \"{}\"]\n\
             [[listener.cert]]\nserver_names = [\"localhost\"]\nchain = \"certs/{l}-a.pem\"\nkey = \"certs/{l}-a.key\"\n\
             [[listener.cert]]\nserver_names = [\"{l}.localhost\"]\nchain = \"certs/{l}-b.pem\"\nkey = \"certs/{l}-b.key\"\n\n",
            sets[0], sets[1]
        );
        roots.push((pki.intermediate_pin.clone().expect("pin"), pki));
    }
    // Both app generations pin both issuing CAs.
    for (i, set) in ["app-4", "app-5"].iter().enumerate() {
        dir.write_pin_set(
            set,
            "2099-01-01",
            "enforce",
            &[
                (&roots[0].0, "mobile CA", "ca"),
                (&roots[1].0, "partner CA", "ca"),
                (&backup_pin(10 + i as u8), "backup", "key"),
            ],
        );
    }
    let mut upstreams = Vec::new();
    for (i, name) in ["payments", "search"].iter().enumerate() {
        let pki = Pki::with_intermediate(name);
        let leaf = pki.leaf(&["localhost"]);
        let up = TestUpstream::tls(&leaf, UpstreamMode::Echo).await;
        dir.write(&format!("certs/{name}-ca.pem"), pki.root_pem());
        let pin_set = (i == 0).then_some("payments");
        if let Some(set) = pin_set {
            let ca = pki.intermediate_pin.clone().expect("pin");
            dir.write_pin_set(set, "2099-01-01", "enforce", &[(&ca, "CA", "ca")]);
        }
        cfg += &route(&format!("/{name}/"), name);
        cfg += &https_upstream(name, up.addr, pin_set);
        upstreams.push(up);
    }
    dir.write("config.toml", cfg);
    let r = start_proxy(&dir.config_path()).await.expect("proxy starts");
    let client = Client::new(
        r.listener("mobile").expect("mobile"),
        &roots[0].1.root_pem(),
    );
    for name in ["payments", "search"] {
        let reply = client
            .get("localhost", &format!("/{name}/x"))
            .await
            .expect("request");
        assert_eq!(reply.status, 200, "{name}");
    }
    let s = until(&r, "both upstream paths are swept", |s| {
        scoped(s, NOT_AFTER, "upstream").len() == 6
    })
    .await;

    let count = |name| prom::select(&s, name, &[]).len();
    let (not_after, pinned, pin_sets, thresholds) = (
        count(NOT_AFTER),
        count(PINNED),
        count(PIN_SET_EXPIRY),
        count(THRESHOLD),
    );
    // Per listener: 2 leaves + the shared intermediate once; per upstream: leaf, intermediate,
    // anchor. Pinned: 3 certs × 2 pin sets × 2 listeners, plus 3 for the pinned upstream.
    assert_eq!(not_after, 2 * 3 + 2 * 3);
    assert_eq!(pinned, 2 * 3 * 2 + 3);
    assert_eq!((pin_sets, thresholds), (3, 4));
    let total = not_after + pinned + pin_sets + thresholds;
    let all = s.len();

    let sweeper = Sweeper::new();
    const RUNS: u32 = 200;
    let started = Instant::now();
    let mut summary = None;
    for _ in 0..RUNS {
        summary = Some(sweeper.sweep(&r.live, Reason::UpstreamSeen));
    }
    let per_sweep = started.elapsed() / RUNS;
    let summary = summary.expect("swept");
    assert_eq!(summary.series, total);
    assert_eq!(summary.certificates, 12);
    println!(
        "typical config: {total} expiry series ({not_after} not_after, {pinned} pinned, \
         {pin_sets} pin set, {thresholds} threshold) of {all} samples in /metrics; \
         sweep {per_sweep:?} (mean of {RUNS}, debug build)"
    );
    assert!(
        per_sweep < Duration::from_millis(50),
        "a sweep takes {per_sweep:?}"
    );
}
