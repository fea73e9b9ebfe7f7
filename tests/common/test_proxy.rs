//! A proxy started in-process for a test, ready when `start` returns: one listener "mobile"
//! serving a fresh leaf for localhost and 127.0.0.1 under pin set "app" (its key and a
//! backup), admin on 127.0.0.1:0, plus whatever config the test adds. `start` returns once
//! `/readyz` answers 200, so no test races the listeners.

use std::net::SocketAddr;
use std::time::Duration;

use pinproxy::run::Running;

use super::{Client, Issued, Pki, TestDir, admin_get, basic_config, eventually};

pub struct TestProxy {
    pub dir: TestDir,
    pub pki: Pki,
    pub leaf: Issued,
    pub running: Running,
}

#[derive(Default)]
pub struct TestProxyBuilder {
    extra: String,
}

impl TestProxy {
    pub fn builder() -> TestProxyBuilder {
        TestProxyBuilder::default()
    }

    /// The listener's bound address.
    pub fn addr(&self) -> SocketAddr {
        self.running.listener("mobile").expect("listener mobile")
    }

    pub fn admin(&self) -> SocketAddr {
        self.running.admin
    }

    /// A client that trusts the test root (HTTP/1.1; `.h2()` and `.pin()` as usual).
    pub fn client(&self) -> Client {
        Client::new(self.addr(), &self.pki.root_pem())
    }
}

impl TestProxyBuilder {
    /// Config appended after the listener: `[limits]`, routes, upstreams.
    pub fn config(mut self, extra: &str) -> Self {
        self.extra.push_str(extra);
        self.extra.push('\n');
        self
    }

    /// Routes every path to a plain-HTTP upstream "backend" at `addr`.
    pub fn route_to(self, addr: SocketAddr) -> Self {
        self.config(&format!(
            "[[route]]\npath_prefix = \"/\"\nupstream = \"backend\"\n\n[upstream.backend]\nurl = \"http://{addr}\"\n"
        ))
    }

    pub async fn start(self) -> TestProxy {
        let dir = TestDir::new();
        let pki = Pki::new("proxy");
        let leaf = pki.leaf(&["localhost", "127.0.0.1"]);
        dir.write_pinned("api", &leaf);
        dir.write("config.toml", basic_config("api", &["app"], &self.extra));
        let running = pinproxy::run::start(&dir.config_path())
            .await
            .expect("proxy starts");
        let admin = running.admin;
        eventually(Duration::from_secs(10), || async {
            (admin_get(admin, "/readyz").await.0 == 200).then_some(())
        })
        .await;
        TestProxy {
            dir,
            pki,
            leaf,
            running,
        }
    }
}
