//! The service manager's view. systemd's notify protocol, with a real datagram socket passed
//! as NOTIFY_SOCKET to the real binary as systemd does for `Type=notify`: READY=1 comes only
//! once the listener accepts TLS, RELOADING=1 (with MONOTONIC_USEC) and READY=1 frame a SIGHUP
//! reload with the swap done in between, and STOPPING=1 comes on SIGTERM. And the container
//! health probe, `pinproxy healthcheck`.

use tokio::net::UnixDatagram;

use super::*;

/// The next datagram, within 30 s.
async fn next(sock: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(RELOAD_WAIT, sock.recv(&mut buf))
        .await
        .expect("a notification within the wait")
        .expect("recv");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_socket_gets_ready_after_bind_reloading_around_sighup_and_stopping() {
    let s = Setup::new("").await;
    let sock_path = s.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    let mut bin = binary(
        &s.config_path(),
        &[(
            "NOTIFY_SOCKET",
            sock_path.to_str().expect("UTF-8 temp path"),
        )],
    );

    assert_eq!(next(&sock).await, "READY=1\n", "the first notification");
    // At READY=1 the listener is already bound, and a handshake completes at once. Its log line
    // may trail READY=1 by a moment: the log goes through a non-blocking writer thread.
    let addr: SocketAddr = bin.addr("listener=mobile");
    let reply = s
        .client_at(addr)
        .get("localhost", "/v1/x")
        .await
        .expect("served right after READY=1");
    assert_eq!(reply.status, 200);
    let admin = bin.addr("admin listening");
    let g0 = generation(admin).await;

    // Written through a name the watcher does not see: only the signal reloads it.
    let link = hidden_link(s.dir.path(), &s.config_path());
    std::fs::write(&link, s.config("/v2", "")).expect("route change");
    bin.signal("HUP");
    let reloading = next(&sock).await;
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading}");
    let usec: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("MONOTONIC_USEC after RELOADING=1: {reloading}"));
    assert!(usec > 0);
    assert_eq!(
        next(&sock).await,
        "READY=1\n",
        "READY=1 once the reload is done"
    );
    // The file watcher may have swapped first; either way the change is live at READY=1.
    assert!(
        generation(admin).await > g0,
        "the swap happened before READY=1"
    );
    assert_eq!(
        s.client_at(addr)
            .get("localhost", "/v2/x")
            .await
            .expect("v2")
            .status,
        200
    );

    assert_eq!(bin.stop(), Some(0), "SIGTERM exits 0");
    assert_eq!(next(&sock).await, "STOPPING=1\n", "sent on SIGTERM");
}

/// What a container runtime's HEALTHCHECK runs (the runtime image has no curl).
fn healthcheck(addr: SocketAddr) -> (Option<i32>, String) {
    let out = bin::pinproxy(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &["healthcheck", "--addr", &addr.to_string()],
    );
    (Some(out.code), out.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_exits_0_on_a_live_admin_and_1_when_nothing_answers() {
    let s = Setup::new("").await;
    let r = s.start().await;
    let admin = r.admin;
    let (code, text) = tokio::task::spawn_blocking(move || healthcheck(admin))
        .await
        .expect("join");
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(text.trim(), "/healthz 200");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port nobody listens on");
    let (code, text) = tokio::task::spawn_blocking(move || healthcheck(closed))
        .await
        .expect("join");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
}
