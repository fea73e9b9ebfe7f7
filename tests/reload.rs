//! Hot reload as an operator sees it: edits, atomic renames, Kubernetes `..data` swaps and
//! certbot renewals are picked up; SIGHUP and polling work where the watcher sees nothing;
//! every rejected reload keeps the old state serving and says why in the metrics; upstream pin
//! changes reach open connections; TLS sessions survive reloads that keep the certificates; and
//! reloads under load fail no request.
//!
//! Every test waits on the generation (`/readyz`), the reload metrics or `/status`, never on a
//! fixed sleep.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::bin::Proc;
use common::reload::*;
use common::*;
use pinproxy::run::Running;
use rcgen::KeyPair;

/// A proxy on one listener "mobile" serving a leaf for localhost pinned by pin set "app"
/// (leaf key, the next key `next`, and a backup), routing `/v1` to a plain echo upstream: a
/// [`TestProxy`] (`dir`, `pki`, `leaf`, `start`) with the next key and the upstream.
struct Setup {
    proxy: TestProxy,
    /// A leaf on a key that "app" already ships as the next key.
    next: Issued,
    up: TestUpstream,
}

impl std::ops::Deref for Setup {
    type Target = TestProxy;
    fn deref(&self) -> &TestProxy {
        &self.proxy
    }
}

impl Setup {
    async fn new(extra: &str) -> Self {
        let up = TestUpstream::plain(UpstreamMode::Echo).await;
        let pki = Pki::new("reload");
        let leaf = pki.leaf(&["localhost"]);
        let next = pki.leaf(&["localhost"]);
        let proxy = TestProxy::builder()
            .pin_file(app_pins(&leaf, &next, 1))
            .serve(pki, leaf)
            .config(&format!("{}{extra}", route(up.addr, "/v1")))
            .build();
        Setup { proxy, next, up }
    }

    fn config(&self, prefix: &str, extra: &str) -> String {
        basic_config(
            "api",
            &["app"],
            &format!("{}{extra}", route(self.up.addr, prefix)),
        )
    }

    fn client(&self, r: &Running) -> Client {
        self.client_at(r.listener("mobile").expect("listener"))
    }

    fn client_at(&self, addr: SocketAddr) -> Client {
        Client::new(addr, &self.pki.root_pem()).pin(&[&self.leaf.pin, &self.next.pin])
    }
}

/// Pin set "app": the served key, the next key, and an offline backup.
fn app_pins(leaf: &Issued, next: &Issued, backup_seed: u8) -> String {
    pin_set_text(
        "2099-01-01",
        &[
            (&leaf.pin, "current", "key"),
            (&next.pin, "next", "key"),
            (&backup_pin(backup_seed), "backup", "key"),
        ],
    )
}

fn route(up: SocketAddr, prefix: &str) -> String {
    format!(
        "[[route]]\nname = \"main\"\npath_prefix = \"{prefix}\"\nupstream = \"backend\"\n\n\
         [upstream.backend]\nurl = \"http://{up}\"\n"
    )
}

async fn status_of(c: &Client, path: &str) -> u16 {
    c.get("localhost", path).await.expect("request").status
}

async fn served_pin(c: &Client) -> String {
    c.handshake().await.expect("handshake").1.leaf_pin
}

/// The old state answers: the old route, the old certificate, the old generation.
async fn assert_old_state_serves(s: &Setup, r: &Running, gen_before: u64) {
    let c = s.client(r);
    assert_eq!(status_of(&c, "/v1/x").await, 200, "old route still answers");
    assert_eq!(
        served_pin(&c).await,
        s.leaf.pin,
        "old certificate still served"
    );
    assert_eq!(
        generation(r.admin).await,
        gen_before,
        "generation unchanged"
    );
    assert_eq!(last_reload_successful(r.admin).await, 0.0);
}

// ---- triggers ------------------------------------------------------------------------------

#[tokio::test]
async fn in_place_edits_of_pins_and_routes_are_swapped_in_and_a_touch_is_not_a_reload() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let c = s.client(&r);
    let g0 = generation(r.admin).await;
    assert_eq!(status_of(&c, "/v2/x").await, 404);

    // A pin file edited in place: one more backup pin.
    let mut pins = app_pins(&s.leaf, &s.next, 1);
    pins.push_str(&format!(
        "[[pin]]\nsha256 = \"{}\"\nlabel = \"backup 2\"\n",
        backup_pin(2)
    ));
    std::fs::write(s.dir.path().join("pins/app.toml"), &pins).expect("edit pins");
    wait_generation(r.admin, g0 + 1).await;
    assert_eq!(reloads(r.admin, "success", None).await, 1.0);

    // A route edited in place.
    std::fs::write(s.config_path(), s.config("/v2", "")).expect("edit config");
    wait_generation(r.admin, g0 + 2).await;
    assert_eq!(status_of(&c, "/v2/x").await, 200, "new route served");
    assert_eq!(status_of(&c, "/v1/x").await, 404, "old route gone");
    assert_eq!(reloads(r.admin, "success", None).await, 2.0);

    // Same content written again: an event, an attempt, but no reload.
    let before = attempts(r.admin).await;
    std::fs::write(s.config_path(), s.config("/v2", "")).expect("touch config");
    std::fs::write(s.dir.path().join("pins/app.toml"), &pins).expect("touch pins");
    wait_attempts_after(r.admin, before).await;
    assert_eq!(generation(r.admin).await, g0 + 2);
    assert_eq!(reloads(r.admin, "success", None).await, 2.0);
    assert_eq!(failures(r.admin).await, 0.0);
    assert_eq!(reload_status(r.admin).await["last_outcome"], "unchanged");
}

#[tokio::test]
async fn config_renamed_over_the_old_file_is_picked_up() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    write_atomic(&s.config_path(), s.config("/v2", ""));
    wait_generation(r.admin, g0 + 1).await;
    assert_eq!(status_of(&s.client(&r), "/v2/x").await, 200);
    // The watcher follows the new inode too.
    write_atomic(&s.config_path(), s.config("/v3", ""));
    wait_generation(r.admin, g0 + 2).await;
    assert_eq!(status_of(&s.client(&r), "/v3/x").await, 200);
    assert_eq!(reloads(r.admin, "success", None).await, 2.0);
}

/// One version of a Kubernetes ConfigMap/Secret volume: `..NAME/` with config, pins, certs.
fn write_k8s_version(root: &Path, name: &str, config: &str, pins: &str, cert: &Issued) {
    let v = root.join(name);
    std::fs::create_dir_all(v.join("pins")).expect("pins");
    std::fs::create_dir_all(v.join("certs")).expect("certs");
    std::fs::write(v.join("config.toml"), config).expect("config");
    std::fs::write(v.join("pins/app.toml"), pins).expect("pins");
    std::fs::write(v.join("certs/api.pem"), cert.chain_pem()).expect("chain");
    std::fs::write(v.join("certs/api.key"), &cert.key_pem).expect("key");
}

/// What the kubelet does: point `..data_tmp` at the new version, rename it over `..data`,
/// delete the old version.
fn k8s_swap(root: &Path, new: &str, old: &str) {
    std::os::unix::fs::symlink(new, root.join("..data_tmp")).expect("..data_tmp");
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap ..data");
    std::fs::remove_dir_all(root.join(old)).expect("remove old version");
}

#[tokio::test]
async fn kubernetes_data_symlink_swaps_are_picked_up_with_pins_behind_the_symlink() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let pki = Pki::new("k8s");
    let a = pki.leaf(&["localhost"]);
    let b = pki.leaf(&["localhost"]);
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let config = |prefix: &str| basic_config("api", &["app"], &route(up.addr, prefix));
    let pins_a = pin_set_text(
        "2099-01-01",
        &[(&a.pin, "a", "key"), (&backup_pin(1), "backup", "key")],
    );
    // Version y rotates to key b, which only y's pin set holds: the reload passes only if the
    // pins are read through the `pins` symlink of the new version.
    let pins_b = pin_set_text(
        "2099-01-01",
        &[(&b.pin, "b", "key"), (&backup_pin(2), "backup", "key")],
    );
    write_k8s_version(root, "..2026_x", &config("/v1"), &pins_a, &a);
    std::os::unix::fs::symlink("..2026_x", root.join("..data")).expect("..data");
    for name in ["config.toml", "pins", "certs"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), root.join(name)).expect("link");
    }
    let r = start_proxy(&root.join("config.toml"))
        .await
        .expect("proxy starts");
    let c = Client::new(r.listener("mobile").expect("listener"), &pki.root_pem());
    assert_eq!(served_pin(&c).await, a.pin);
    let g0 = generation(r.admin).await;

    write_k8s_version(root, "..2026_y", &config("/v2"), &pins_b, &b);
    k8s_swap(root, "..2026_y", "..2026_x");
    wait_generation(r.admin, g0 + 1).await;
    assert_eq!(served_pin(&c).await, b.pin, "new key served");
    assert_eq!(status_of(&c, "/v2/x").await, 200, "new route served");

    // The watcher was re-armed on the new version after the old one was deleted.
    write_k8s_version(root, "..2026_z", &config("/v3"), &pins_b, &b);
    k8s_swap(root, "..2026_z", "..2026_y");
    wait_generation(r.admin, g0 + 2).await;
    assert_eq!(status_of(&c, "/v3/x").await, 200);
    assert_eq!(failures(r.admin).await, 0.0);
    assert_eq!(reloads(r.admin, "success", None).await, 2.0);
}

#[tokio::test]
async fn certbot_renewal_re_pointing_live_symlinks_serves_the_new_certificate_on_the_same_key() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let dir = TestDir::new();
    let pki = Pki::new("certbot");
    let key = KeyPair::generate().expect("key");
    let key_pem = key.serialize_pem();
    let first = pki.leaf_with_key(&["localhost"], key, 90);
    let renewed = pki.leaf_with_key(
        &["localhost"],
        KeyPair::from_pem(&key_pem).expect("same key"),
        80,
    );
    assert_eq!(first.pin, renewed.pin, "a renewal keeps the key");
    assert_ne!(first.cert_der, renewed.cert_der);

    dir.write("archive/site/fullchain1.pem", first.chain_pem());
    dir.write("archive/site/privkey1.pem", &first.key_pem);
    std::fs::create_dir_all(dir.path().join("live/site")).expect("live dir");
    let live = dir.path().join("live/site");
    std::os::unix::fs::symlink(
        "../../archive/site/fullchain1.pem",
        live.join("fullchain.pem"),
    )
    .expect("link");
    std::os::unix::fs::symlink("../../archive/site/privkey1.pem", live.join("privkey.pem"))
        .expect("link");
    dir.write_pin_set(
        "app",
        "2099-01-01",
        "enforce",
        &[
            (&first.pin, "site", "key"),
            (&backup_pin(1), "backup", "key"),
        ],
    );
    let config = basic_config("api", &["app"], &route(up.addr, "/"))
        .replace("certs/api.pem", "live/site/fullchain.pem")
        .replace("certs/api.key", "live/site/privkey.pem");
    dir.write("config.toml", config);
    let r = start_proxy(&dir.config_path()).await.expect("proxy starts");
    let cfg = resuming_client_config(&pki.root_pem());
    let addr = r.listener("mobile").expect("listener");
    let (_, leaf, _) = get_with(&cfg, addr, "/").await;
    assert_eq!(leaf, first.cert_der);
    let g0 = generation(r.admin).await;

    // What certbot renew --reuse-key does: new archive files, then each live link re-pointed.
    dir.write("archive/site/fullchain2.pem", renewed.chain_pem());
    dir.write("archive/site/privkey2.pem", &renewed.key_pem);
    for (link, target) in [
        ("fullchain.pem", "../../archive/site/fullchain2.pem"),
        ("privkey.pem", "../../archive/site/privkey2.pem"),
    ] {
        std::fs::remove_file(live.join(link)).expect("unlink");
        std::os::unix::fs::symlink(target, live.join(link)).expect("relink");
    }
    wait_generation(r.admin, g0 + 1).await;
    // The app's pin on the key still holds; the certificate served is the renewed one.
    let pinned = Client::new(addr, &pki.root_pem()).pin(&[&first.pin]);
    let (tls, hs) = pinned.handshake().await.expect("pinned handshake");
    assert_eq!(hs.leaf_pin, first.pin);
    let served = tls.get_ref().1.peer_certificates().expect("certs")[0].to_vec();
    assert_eq!(
        served, renewed.cert_der,
        "the renewed certificate is served"
    );
    assert_eq!(generation(r.admin).await, g0 + 1);
    assert_eq!(reloads(r.admin, "success", None).await, 1.0);
}

/// The binary with its text log at info, stderr collected line by line.
fn binary(config: &Path, env: &[(&str, &str)]) -> Proc {
    Proc::spawn(config, &[&[("RUST_LOG", "info")], env].concat())
}

#[tokio::test]
async fn sighup_to_the_binary_reloads_a_change_the_watcher_cannot_see() {
    let s = Setup::new("").await;
    let link = hidden_link(s.dir.path(), &s.config_path());
    let mut bin = binary(&s.config_path(), &[]);
    let admin = bin.addr("admin listening");
    let listener = bin.addr("listener=mobile");
    let c = Client::new(listener, &s.pki.root_pem());
    assert_eq!(status_of(&c, "/v2/x").await, 404);
    let g0 = generation(admin).await;

    // Written through the hidden second name: the watcher gets no event.
    std::fs::write(&link, s.config("/v2", "")).expect("write through the link");
    bin.signal("HUP");
    wait_generation(admin, g0 + 1).await;
    assert_eq!(status_of(&c, "/v2/x").await, 200);
    let reloaded = eventually(RELOAD_WAIT, || async {
        bin.find(|l| l.contains("config reloaded"))
    })
    .await;
    assert!(
        reloaded.contains("trigger=\"sighup\"") || reloaded.contains("trigger=sighup"),
        "the swap was triggered by the signal: {reloaded}"
    );
    assert_eq!(reload_status(admin).await["last_trigger"], "sighup");
    assert_eq!(bin.stop(), Some(0), "SIGTERM exits 0");
}

#[tokio::test]
async fn polling_picks_up_a_change_the_watcher_cannot_see() {
    let s = Setup::new("\n[reload]\npoll_interval = \"200ms\"\n").await;
    let link = hidden_link(s.dir.path(), &s.config_path());
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    std::fs::write(
        &link,
        s.config("/v2", "\n[reload]\npoll_interval = \"200ms\"\n"),
    )
    .expect("write through the link");
    wait_generation(r.admin, g0 + 1).await;
    assert_eq!(status_of(&s.client(&r), "/v2/x").await, 200);
    assert_eq!(reload_status(r.admin).await["last_trigger"], "poll");
    // Polling an unchanged config is not a reload.
    let before = attempts(r.admin).await;
    wait_attempts_after(r.admin, before + 2).await;
    assert_eq!(generation(r.admin).await, g0 + 1);
    assert_eq!(reloads(r.admin, "success", None).await, 1.0);
}

// ---- rejected reloads ------------------------------------------------------------------------

#[tokio::test]
async fn a_reload_that_panics_is_counted_as_failed_the_old_state_serves_and_the_next_reload_applies()
 {
    let s = Setup::new("").await;
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    let mut done = r.reload_status.subscribe();
    // Armed, every reload of this proxy panics after reading its inputs.
    r.reload_status.panic_on_reload(true);
    std::fs::write(s.config_path(), s.config("/v2", "")).expect("edit config");
    tokio::time::timeout(
        RELOAD_WAIT,
        done.wait_for(|f| f.outcome == Some(pinproxy::reload::Outcome::Failed)),
    )
    .await
    .expect("a reload finished in time")
    .expect("the reload task is running");
    assert_old_state_serves(&s, &r, g0).await;
    assert_eq!(
        status_of(&s.client(&r), "/v2/x").await,
        404,
        "edit not applied"
    );
    let status = reload_status(r.admin).await;
    assert_eq!(status["last_outcome"], "failed");
    assert_eq!(status["last_successful"], false);
    let err = status["last_error"].to_string();
    assert!(err.contains("internal error"), "{err}");
    assert!(reloads(r.admin, "failure", Some("internal")).await >= 1.0);

    // The reload task outlived the panic: disarmed, the next reload applies the edit.
    r.reload_status.panic_on_reload(false);
    r.reload();
    wait_generation(r.admin, g0 + 1).await;
    assert_eq!(status_of(&s.client(&r), "/v2/x").await, 200, "edit applied");
    assert_eq!(last_reload_successful(r.admin).await, 1.0);
}

#[tokio::test]
async fn invalid_toml_is_rejected_once_the_old_config_serves_and_reverting_recovers() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    let good = std::fs::read_to_string(s.config_path()).expect("config");
    std::fs::write(s.config_path(), format!("{good}\n[[route]\npath_prefix = ")).expect("break");
    wait_failures(r.admin, "parse", 1.0).await;
    assert_old_state_serves(&s, &r, g0).await;
    let err = reload_status(r.admin).await["last_error"].to_string();
    assert!(
        err.contains("config.toml"),
        "the error names the file: {err}"
    );

    // The same bad file seen again is not counted again.
    let before = attempts(r.admin).await;
    std::fs::write(s.config_path(), format!("{good}\n[[route]\npath_prefix = ")).expect("again");
    wait_attempts_after(r.admin, before).await;
    assert_eq!(reloads(r.admin, "failure", Some("parse")).await, 1.0);

    // Reverting to what runs recovers without counting a reload.
    std::fs::write(s.config_path(), &good).expect("revert");
    eventually(RELOAD_WAIT, || async {
        (last_reload_successful(r.admin).await == 1.0).then_some(())
    })
    .await;
    assert_eq!(generation(r.admin).await, g0);
    assert_eq!(reloads(r.admin, "success", None).await, 0.0);
    assert_eq!(
        reload_status(r.admin).await["last_error"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn route_to_an_unknown_upstream_is_rejected_as_validation() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    let bad = s
        .config("/v2", "")
        .replace("upstream = \"backend\"", "upstream = \"nope\"");
    std::fs::write(s.config_path(), bad).expect("edit");
    wait_failures(r.admin, "validation", 1.0).await;
    assert_old_state_serves(&s, &r, g0).await;
    assert_eq!(failures(r.admin).await, 1.0);
}

#[tokio::test]
async fn missing_referenced_file_is_rejected_and_creating_it_later_applies_the_config() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    // A directory that does not exist yet: nothing watched it when the config was loaded.
    let moved = s.config("/v2", "").replace("certs/api.", "certs-2027/api.");
    std::fs::write(s.config_path(), moved).expect("edit");
    wait_failures(r.admin, "file", 1.0).await;
    assert_old_state_serves(&s, &r, g0).await;
    assert_eq!(failures(r.admin).await, 1.0);

    // The directory appears first (an event in the config directory); the files come after
    // that attempt, seen only because the watcher now follows what the rejected config names.
    let before = attempts(r.admin).await;
    std::fs::create_dir(s.dir.path().join("certs-2027")).expect("mkdir");
    wait_attempts_after(r.admin, before).await;
    s.dir.write("certs-2027/api.pem", s.leaf.chain_pem());
    s.dir.write("certs-2027/api.key", &s.leaf.key_pem);
    wait_generation(r.admin, g0 + 1).await;
    assert_eq!(status_of(&s.client(&r), "/v2/x").await, 200);
    assert_eq!(last_reload_successful(r.admin).await, 1.0);
}

#[tokio::test]
async fn certificate_for_a_key_no_pin_set_holds_is_rejected_as_pin_rules() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    let stranger = s.pki.leaf(&["localhost"]);
    s.dir.write_cert("stranger", &stranger);
    std::fs::write(
        s.config_path(),
        s.config("/v1", "").replace("certs/api.", "certs/stranger."),
    )
    .expect("edit");
    wait_failures(r.admin, "pin_rules", 1.0).await;
    assert_old_state_serves(&s, &r, g0).await;
    assert_eq!(failures(r.admin).await, 1.0);
}

#[tokio::test]
async fn pin_edit_that_unpins_the_served_key_is_rejected_as_pin_rules() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    let unpinning = pin_set_text(
        "2099-01-01",
        &[
            (&s.next.pin, "next", "key"),
            (&backup_pin(1), "backup", "key"),
        ],
    );
    std::fs::write(s.dir.path().join("pins/app.toml"), unpinning).expect("edit pins");
    wait_failures(r.admin, "pin_rules", 1.0).await;
    assert_old_state_serves(&s, &r, g0).await;
    assert_eq!(failures(r.admin).await, 1.0);
}

#[tokio::test]
async fn certificate_written_before_its_key_is_never_served_mismatched() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    // Rotation to the shipped next key, written in two steps.
    s.dir.write("certs/api.pem", s.next.chain_pem());
    wait_failures(r.admin, "tls", 1.0).await;
    assert_old_state_serves(&s, &r, g0).await;
    let err = reload_status(r.admin).await["last_error"].to_string();
    assert!(err.contains("api.key"), "the error names the key: {err}");

    s.dir.write("certs/api.key", &s.next.key_pem);
    wait_generation(r.admin, g0 + 1).await;
    let c = s.client(&r);
    assert_eq!(served_pin(&c).await, s.next.pin, "the new pair is served");
    assert_eq!(status_of(&c, "/v1/x").await, 200);
    assert_eq!(last_reload_successful(r.admin).await, 1.0);
    assert_eq!(reloads(r.admin, "success", None).await, 1.0);
    assert_eq!(failures(r.admin).await, 1.0);
}

#[tokio::test]
async fn a_certificate_and_key_rewritten_in_place_one_after_the_other_settle_without_a_failure() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    // The natural in-place rotation: the certificate, then (a moment later) its key.
    s.dir.write("certs/api.pem", s.next.chain_pem());
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.dir.write("certs/api.key", &s.next.key_pem);
    wait_generation(r.admin, g0 + 1).await;
    assert_eq!(served_pin(&s.client(&r)).await, s.next.pin);
    assert_eq!(failures(r.admin).await, 0.0, "no failed reload was counted");
    assert_eq!(last_reload_successful(r.admin).await, 1.0);
}

// ---- what a reload reaches ---------------------------------------------------------------

#[tokio::test]
async fn upstream_pin_removed_on_reload_applies_to_an_open_http2_connection() {
    let upki = Pki::new("upstream");
    let uleaf = upki.leaf(&["localhost"]);
    let up = TestUpstream::tls(&uleaf, UpstreamMode::Echo).await;
    let s = Setup::new("").await;
    s.dir.write("certs/upstream-ca.pem", upki.root_pem());
    let origin = |pins: &[(&str, &str, &str)]| {
        s.dir
            .write("pins/origin.toml", pin_set_text("2099-01-01", pins));
    };
    origin(&[
        (&uleaf.pin, "upstream leaf", "key"),
        (&backup_pin(5), "spare", "key"),
    ]);
    let config = basic_config(
        "api",
        &["app"],
        &format!(
            "[[route]]\npath_prefix = \"/\"\nupstream = \"origin\"\n\n[upstream.origin]\n\
             url = \"https://127.0.0.1:{}\"\nca = \"certs/upstream-ca.pem\"\nserver_name = \"localhost\"\n\
             pin_set = \"origin\"\n",
            up.addr.port()
        ),
    );
    s.dir.write("config.toml", config);
    let r = s.start().await;
    let g0 = generation(r.admin).await;

    let client = s.client(&r).h2();
    let mut conn = client.connect().await.expect("h2 connection");
    let ok = conn
        .send(client::get("localhost", "/a", true))
        .await
        .expect("first request");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.version, http::Version::HTTP_2);

    origin(&[
        (&backup_pin(5), "spare", "key"),
        (&backup_pin(6), "spare 2", "key"),
    ]);
    wait_generation(r.admin, g0 + 1).await;
    let refused = conn
        .send(client::get("localhost", "/b", true))
        .await
        .expect("second request on the same connection");
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_upstream_errors_total",
            &[("upstream", "origin"), ("kind", "pin")]
        )
        .await,
        1.0
    );
    assert_eq!(up.hits(), 1, "the unpinned upstream got no request");
}

#[tokio::test]
async fn tls_sessions_survive_a_route_change_but_not_a_certificate_change() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let addr = r.listener("mobile").expect("listener");
    let cfg = resuming_client_config(&s.pki.root_pem());
    let g0 = generation(r.admin).await;

    let (kind, _, _) = get_with(&cfg, addr, "/v1/x").await;
    assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    let (kind, _, _) = get_with(&cfg, addr, "/v1/x").await;
    assert_eq!(
        kind,
        Some(rustls::HandshakeKind::Resumed),
        "resumption works"
    );

    std::fs::write(s.config_path(), s.config("/v2", "")).expect("route change");
    wait_generation(r.admin, g0 + 1).await;
    let (kind, _, status) = get_with(&cfg, addr, "/v2/x").await;
    assert_eq!(status, 200, "the new route answers");
    assert_eq!(
        kind,
        Some(rustls::HandshakeKind::Resumed),
        "a route change keeps the listener's TLS config and its tickets"
    );

    // A renewal on the same key is a certificate change: sessions start over.
    let key = KeyPair::from_pem(&s.leaf.key_pem).expect("key");
    let renewed = s.pki.leaf_with_key(&["localhost"], key, 60);
    write_atomic(&s.dir.path().join("certs/api.pem"), renewed.chain_pem());
    wait_generation(r.admin, g0 + 2).await;
    let (kind, leaf, _) = get_with(&cfg, addr, "/v2/x").await;
    assert_eq!(leaf, renewed.cert_der);
    assert_eq!(kind, Some(rustls::HandshakeKind::Full));
}

#[tokio::test]
async fn tls_sessions_survive_a_new_pin_set_and_upstream_pools_survive_a_shutdown_grace_edit() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let addr = r.listener("mobile").expect("listener");
    let cfg = resuming_client_config(&s.pki.root_pem());
    let g0 = generation(r.admin).await;
    let (kind, _, _) = get_with(&cfg, addr, "/v1/x").await;
    assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    assert_eq!(s.up.conns.load(Ordering::SeqCst), 1);

    // A new app release's pin set, and an edit of a limit no pool depends on.
    s.dir.write(
        "pins/app5.toml",
        pin_set_text(
            "2099-01-01",
            &[
                (&s.leaf.pin, "current", "key"),
                (&backup_pin(3), "backup", "key"),
            ],
        ),
    );
    let extra = format!(
        "{}[limits]\nshutdown_grace = \"45s\"\n",
        route(s.up.addr, "/v1")
    );
    std::fs::write(
        s.config_path(),
        basic_config("api", &["app", "app5"], &extra),
    )
    .expect("config edit");
    wait_generation(r.admin, g0 + 1).await;
    let (kind, _, status) = get_with(&cfg, addr, "/v1/x").await;
    assert_eq!(status, 200);
    assert_eq!(
        kind,
        Some(rustls::HandshakeKind::Resumed),
        "a new pin set keeps the listener's TLS config and its tickets"
    );
    assert_eq!(
        s.up.conns.load(Ordering::SeqCst),
        1,
        "the pooled upstream connection was reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_no_request() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let addr = r.listener("mobile").expect("listener");
    let g0 = generation(r.admin).await;
    // Two configs: the route's upstream base path and name differ (a new upstream client and
    // pool each time), and every fourth swap also renews the certificate on the same key (a new
    // listener TLS config under load).
    let configs = [
        s.config("/", "").replace("name = \"main\"", "name = \"a\""),
        s.config("/", "")
            .replace("name = \"main\"", "name = \"b\"")
            .replace(
                &format!("http://{}", s.up.addr),
                &format!("http://{}/b", s.up.addr),
            ),
    ];
    write_atomic(&s.config_path(), &configs[0]);
    let g1 = wait_generation(r.admin, g0 + 1).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for kind in ["h1", "h2", "h2", "new-connection"] {
        let client = Client::new(addr, &s.pki.root_pem()).pin(&[&s.leaf.pin]);
        let client = if kind == "h2" { client.h2() } else { client };
        let (stop, ok) = (stop.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = client.connect().await.expect("connect");
            let mut failed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if kind == "new-connection" {
                    match client.connect().await {
                        Ok(c) => conn = c,
                        Err(e) => {
                            failed.push(format!("{kind}: connect: {e}"));
                            continue;
                        }
                    }
                }
                match conn.send(client::get("localhost", "/x", client.h2)).await {
                    Ok(reply) if reply.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(reply) => failed.push(format!("{kind}: {} {}", reply.status, reply.body)),
                    Err(e) => failed.push(format!("{kind}: {e}")),
                }
            }
            failed
        }));
    }

    let key_pem = s.leaf.key_pem.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut g = g1;
    for i in 1..=RELOADS {
        write_atomic(&s.config_path(), &configs[i % 2]);
        if i % 4 == 0 {
            let key = KeyPair::from_pem(&key_pem).expect("key");
            let renewed = s.pki.leaf_with_key(&["localhost"], key, 30 + i as i64);
            write_atomic(&s.dir.path().join("certs/api.pem"), renewed.chain_pem());
        }
        g = wait_generation(r.admin, g + 1).await;
        assert!(tokio::time::Instant::now() < deadline, "reloads too slow");
    }
    stop.store(true, Ordering::Relaxed);
    let mut failed = Vec::new();
    for t in tasks {
        failed.extend(t.await.expect("client task"));
    }
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        g - g1 >= RELOADS as u64,
        "generation advanced by {}",
        g - g1
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert_eq!(failures(r.admin).await, 0.0);
}

const RELOADS: usize = 20;

#[tokio::test]
async fn listener_and_admin_changes_need_a_restart_and_the_rest_applies() {
    let second = "[[listener]]\nname = \"second\"\nlisten = \"127.0.0.1:0\"\npin_sets = [\"app\"]\n\
                  [[listener.cert]]\nserver_names = [\"localhost\"]\nchain = \"certs/api.pem\"\nkey = \"certs/api.key\"\n\n";
    let s = Setup::new("").await;
    let with_second = |prefix: &str| {
        basic_config(
            "api",
            &["app"],
            &format!("{second}{}", route(s.up.addr, prefix)),
        )
    };
    s.dir.write("config.toml", with_second("/v1"));
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    let second_addr = r.listener("second").expect("second listener");

    // A new route, and: the listener moved, [admin] moved, listener "second" removed.
    let changed = s
        .config("/v2", "")
        .replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"", 1)
        .replacen(
            "[[listener]]\nname = \"mobile\"\nlisten = \"127.0.0.1:0\"",
            "[[listener]]\nname = \"mobile\"\nlisten = \"127.0.0.2:0\"",
            1,
        );
    assert!(changed.contains("127.0.0.1:1") && changed.contains("127.0.0.2:0"));
    std::fs::write(s.config_path(), changed).expect("edit");
    wait_generation(r.admin, g0 + 1).await;

    let pending = reload_status(r.admin).await["needs_restart"].clone();
    let pending: Vec<String> = serde_json::from_value(pending).expect("needs_restart list");
    for item in [
        "listener \"mobile\" listen address",
        "[admin]",
        "listener \"second\" removed",
    ] {
        assert!(
            pending.iter().any(|p| p.starts_with(item)),
            "{item} needs a restart: {pending:?}"
        );
    }
    // The rest applies: the new route on the old address; the admin answers where it was; the
    // removed listener keeps serving its last certificate until restart.
    assert_eq!(status_of(&s.client(&r), "/v2/x").await, 200);
    let removed = Client::new(second_addr, &s.pki.root_pem()).pin(&[&s.leaf.pin]);
    assert_eq!(status_of(&removed, "/v2/x").await, 200);

    // Still pending after a later reload: the sockets were never rebound.
    let later = std::fs::read_to_string(s.config_path())
        .expect("config")
        .replace("path_prefix = \"/v2\"", "path_prefix = \"/v3\"");
    std::fs::write(s.config_path(), later).expect("edit");
    wait_generation(r.admin, g0 + 2).await;
    let pending = reload_status(r.admin).await["needs_restart"].clone();
    assert_eq!(pending.as_array().map(Vec::len), Some(3), "{pending}");
    assert_eq!(status_of(&s.client(&r), "/v3/x").await, 200);
}

#[tokio::test]
async fn editing_a_frozen_pin_set_is_rejected_on_reload_while_moving_its_expiry_only_warns() {
    let s = Setup::new("").await;
    // Freeze "app" as `export --freeze` would (the digest computed here, independently).
    let pins = [
        ("key", s.leaf.pin.as_str()),
        ("key", s.next.pin.as_str()),
        ("key", &backup_pin(1)),
    ];
    let mut lines: Vec<String> = pins.iter().map(|(k, p)| format!("{k} {p}\n")).collect();
    lines.sort();
    let digest: String = {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(lines.concat().as_bytes());
        format!(
            "sha256:{}",
            hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    };
    let frozen = format!("frozen = \"{digest}\"\n{}", app_pins(&s.leaf, &s.next, 1));
    s.dir.write("pins/app.toml", &frozen);
    let r = s.start().await;
    let g0 = generation(r.admin).await;

    // Another backup in place of the shipped one: valid by every other rule, but not shipped.
    let edited = frozen.replace(&backup_pin(1), &backup_pin(2));
    std::fs::write(s.dir.path().join("pins/app.toml"), &edited).expect("edit pins");
    wait_failures(r.admin, "pin_rules", 1.0).await;
    assert_old_state_serves(&s, &r, g0).await;
    let status = reload_status(r.admin).await;
    let err = status["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("`frozen`") && err.contains("a shipped set cannot change"),
        "{status}"
    );

    // Moving only the expiry is applied, with a warning that the apps keep their date.
    std::fs::write(
        s.dir.path().join("pins/app.toml"),
        frozen.replace("2099-01-01", "2099-03-01"),
    )
    .expect("move expiry");
    wait_generation(r.admin, g0 + 1).await;
    let (_, body) = admin_get(r.admin, "/status").await;
    let doc: serde_json::Value = serde_json::from_str(&body).expect("json");
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains("moved from 2099-01-01 to 2099-03-01 on frozen (shipped) pin set app"),
        "{warnings}"
    );
}

#[path = "reload/notify.rs"]
mod notify;
#[path = "reload/tickets.rs"]
mod tickets;

#[tokio::test]
async fn rotating_to_a_shipped_backup_lists_the_backups_left_and_warns_when_only_the_old_key_remains()
 {
    let s = Setup::new("").await;
    // "app" ships the served key, the next key and an offline backup; "app-lean" only the two keys.
    s.dir.write(
        "pins/app-lean.toml",
        pin_set_text(
            "2099-01-01",
            &[
                (&s.leaf.pin, "current", "key"),
                (&s.next.pin, "next", "key"),
            ],
        ),
    );
    s.dir.write(
        "config.toml",
        s.config("/v1", "")
            .replace("pin_sets = [\"app\"]", "pin_sets = [\"app\", \"app-lean\"]"),
    );
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    assert_eq!(
        reload_status(r.admin).await["last_rotation"],
        serde_json::json!([])
    );

    // Rotate: serve the key both sets shipped as "next".
    s.dir.write_cert("api", &s.next);
    wait_generation(r.admin, g0 + 1).await;
    let rotation = reload_status(r.admin).await["last_rotation"].clone();
    let first = &rotation[0];
    assert_eq!(
        first["from"],
        format!("sha256/{}", s.leaf.pin),
        "{rotation}"
    );
    assert_eq!(first["to"], format!("sha256/{}", s.next.pin), "{rotation}");
    let set = |name: &str| {
        first["pin_sets"]
            .as_array()
            .expect("pin_sets")
            .iter()
            .find(|p| p["pin_set"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {rotation}"))
    };
    let app = set("app");
    assert_eq!(
        app["backups"],
        serde_json::json!(["current", "backup"]),
        "{app}"
    );
    assert!(app["warning"].is_null(), "{app}");
    let lean = set("app-lean");
    assert_eq!(lean["backups"], serde_json::json!(["current"]), "{lean}");
    let warning = lean["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("the only backup left in pin set app-lean is \"current\", the key just rotated away from")
            && warning.contains("pinproxy keygen"),
        "{lean}"
    );
}

#[tokio::test]
async fn an_edit_of_the_app_file_a_pin_set_reads_is_reloaded_and_gated() {
    let s = Setup::new("").await;
    let out = bin::with_config(
        &s.dir,
        &[
            "export",
            "--pin-set",
            "app",
            "--format",
            "android",
            "--domain",
            "localhost",
        ],
    );
    assert!(out.code == 0, "{}", out.stderr);
    let nsc = out.stdout;
    s.dir.write("app/nsc.xml", &nsc);
    s.dir.write(
        "pins/app.toml",
        "from = \"app/nsc.xml\"\ndomain = \"localhost\"\n",
    );
    let r = s.start().await;
    let g0 = generation(r.admin).await;
    let pins_in_status = |body: String| {
        let doc: serde_json::Value = serde_json::from_str(&body).expect("json");
        doc["pin_sets"][0]["pins"]
            .as_array()
            .expect("pins")
            .iter()
            .map(|p| p["label"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pins_in_status(admin_get(r.admin, "/status").await.1),
        ["current", "next", "backup"]
    );

    // The app drops its offline backup: the proxy follows the app file.
    let backup = format!("<pin digest=\"SHA-256\">{}</pin>", backup_pin(1));
    assert!(nsc.contains(&backup), "{nsc}");
    std::fs::write(s.dir.path().join("app/nsc.xml"), nsc.replace(&backup, "")).expect("edit nsc");
    let g1 = wait_generation(r.admin, g0 + 1).await;
    assert_eq!(
        pins_in_status(admin_get(r.admin, "/status").await.1),
        ["current", "next"]
    );

    // An app file without the served key is refused like a TOML set; the old state serves.
    let current = format!("<pin digest=\"SHA-256\">{}</pin>", s.leaf.pin);
    std::fs::write(
        s.dir.path().join("app/nsc.xml"),
        nsc.replace(&backup, "").replace(&current, ""),
    )
    .expect("edit nsc");
    wait_failures(r.admin, "pin_rules", 1.0).await;
    assert_old_state_serves(&s, &r, g1).await;
}

/// Labels under `key` of each entry of `list` whose `by` field is `name`.
fn labels_of(list: &serde_json::Value, by: &str, name: &str, key: &str) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .find(|e| e[by] == name)
        .unwrap_or_else(|| panic!("{name} in {list}"))[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            v.as_str()
                .or_else(|| v["label"].as_str())
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

/// The backups `pinproxy check` prints under "adoption on listener NAME".
fn check_backups(text: &str, listener: &str) -> Vec<String> {
    let head = format!("adoption on listener {listener} ");
    text.lines()
        .skip_while(|l| !l.starts_with(&head))
        .skip(1)
        .take_while(|l| l.starts_with("  backup \""))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect()
}

/// Every reader's backups of pin set "app" for `listener`: `/status` (the listener's
/// `backups` and its adoption view) and `pinproxy check`, which must agree.
async fn backups_everywhere(s: &TestProxy, admin: SocketAddr, listener: &str) -> Vec<String> {
    let (_, body) = admin_get(admin, "/status").await;
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    let listeners = &status["listeners"];
    let l = listeners
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| l["name"] == listener)
        .expect("listener in /status");
    let from_status = labels_of(&l["backups"], "pin_set", "app", "backups");
    let adoption: Vec<String> = l["adoption"]["backups"]
        .as_array()
        .expect("adoption backups")
        .iter()
        .map(|b| b["label"].as_str().expect("label").to_string())
        .collect();
    assert_eq!(adoption, from_status, "adoption view of {listener}: {l}");
    // `check` reads the running proxy's figures from the admin address in its config.
    let config = std::fs::read_to_string(s.dir.config_path()).expect("config");
    let check_config = s.dir.write(
        "check.toml",
        config.replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{admin}\""),
            1,
        ),
    );
    let report = pinproxy::check::check(&check_config, false).await;
    assert!(report.ok, "{}", report.text);
    assert_eq!(
        check_backups(&report.text, listener),
        from_status,
        "check for {listener}: {}",
        report.text
    );
    from_status
}

#[tokio::test]
async fn a_pin_set_shared_by_two_listeners_names_the_same_backups_per_listener_in_status_adoption_check_and_the_rotation_record()
 {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let pki = Pki::new("shared");
    let mobile = pki.leaf(&["localhost"]);
    let web = pki.leaf(&["localhost"]);
    let next = pki.leaf(&["localhost"]);
    let pins = pin_set_text(
        "2099-01-01",
        &[
            (&mobile.pin, "mobile key", "key"),
            (&web.pin, "web key", "key"),
            (&next.pin, "next", "key"),
            (&backup_pin(1), "offline", "key"),
        ],
    );
    let listener = |name: &str| {
        format!(
            "[[listener]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\npin_sets = [\"app\"]\n\
             app_version = {{ header = \"X-App-Version\" }}\n\
             [[listener.cert]]\nserver_names = [\"localhost\"]\nchain = \"certs/{name}.pem\"\nkey = \"certs/{name}.key\"\n\n"
        )
    };
    let s = TestProxy::builder()
        .serve(pki, mobile.clone())
        .pin_file(format!("app_versions = \">=1\"\n{pins}"))
        .build();
    s.dir.write_cert("mobile", &mobile);
    s.dir.write_cert("web", &web);
    s.dir.write(
        "config.toml",
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[log]\naccess = true\n\n{}{}{}",
            listener("mobile"),
            listener("web"),
            route_to(up.addr)
        ),
    );
    let r = s.start().await;
    let g0 = generation(r.admin).await;

    // Each listener's backups are the set's pins its own chains do not use.
    assert_eq!(
        backups_everywhere(&s, r.admin, "mobile").await,
        ["web key", "next", "offline"]
    );
    assert_eq!(
        backups_everywhere(&s, r.admin, "web").await,
        ["mobile key", "next", "offline"]
    );
    let (_, body) = admin_get(r.admin, "/status").await;
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(
        labels_of(&status["pin_sets"], "name", "app", "backups"),
        ["next", "offline"],
        "the set's own entry: backups for both listeners at once"
    );

    // Rotate mobile to "next" through a reload: the record names mobile's backups as /status does.
    s.dir.write_cert("mobile", &next);
    wait_generation(r.admin, g0 + 1).await;
    let rotation = reload_status(r.admin).await["last_rotation"].clone();
    let rotated = rotation.as_array().expect("last_rotation");
    assert_eq!(rotated.len(), 1, "{rotation}");
    assert_eq!(rotated[0]["listener"], "mobile", "{rotation}");
    let recorded = labels_of(&rotated[0]["pin_sets"], "pin_set", "app", "backups");
    assert_eq!(recorded, ["mobile key", "web key", "offline"], "{rotation}");
    assert_eq!(backups_everywhere(&s, r.admin, "mobile").await, recorded);
    assert_eq!(
        backups_everywhere(&s, r.admin, "web").await,
        ["mobile key", "next", "offline"]
    );
}

#[tokio::test]
async fn swapping_two_listener_cert_blocks_in_a_reload_logs_no_rotation_and_no_renewal() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let pki = Pki::new("order");
    let api = pki.leaf(&["localhost"]);
    let other = pki.leaf(&["other.localhost"]);
    let s = TestProxy::builder()
        .serve(pki, api.clone())
        .pin_file(pin_set_text(
            "2099-01-01",
            &[
                (&api.pin, "api", "key"),
                (&other.pin, "other", "key"),
                (&backup_pin(1), "backup", "key"),
            ],
        ))
        .json_log()
        .config(&route(up.addr, "/"))
        .build();
    s.dir.write_cert("other", &other);
    let block = |name: &str, host: &str| {
        format!(
            "[[listener.cert]]\nserver_names = [\"{host}\"]\nchain = \"certs/{name}.pem\"\nkey = \"certs/{name}.key\"\n"
        )
    };
    let (first, second) = (block("api", "localhost"), block("other", "other.localhost"));
    let config = std::fs::read_to_string(s.config_path()).expect("config");
    assert!(config.contains(&first), "{config}");
    s.dir.write(
        "config.toml",
        config.replacen(&first, &format!("{first}{second}"), 1),
    );
    let mut bin = Proc::start(&s.dir);
    let admin = bin.wait_addr("admin listening");
    let g0 = generation(admin).await;

    // The same two certificates, listed the other way round.
    s.dir.write(
        "config.toml",
        config.replacen(&first, &format!("{second}{first}"), 1),
    );
    bin.signal("HUP");
    let reloaded = bin.wait_for("config reloaded");
    assert_eq!(
        reloaded["files"],
        serde_json::json!(["config.toml"]),
        "{reloaded}"
    );
    assert_eq!(
        reloaded["certificates"],
        serde_json::json!([]),
        "{reloaded}"
    );
    assert!(generation(admin).await > g0);
    assert_eq!(
        reload_status(admin).await["last_rotation"],
        serde_json::json!([])
    );
    assert_eq!(
        bin.find(|l| l.contains("served certificate changed") || l.contains("key rotated")),
        None,
        "no certificate reads as changed"
    );
    assert_eq!(bin.stop(), Some(0));
}
