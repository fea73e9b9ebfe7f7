//! The one way the tests run the proxy in-process. [`TestProxy`] writes a temp dir: one listener
//! "mobile" serving a fresh leaf (for localhost and 127.0.0.1 unless told otherwise) under pin
//! set "app" (its key and a backup), admin on 127.0.0.1:0, plus whatever config the test adds.
//! The test may edit the files, then [`TestProxy::start`] starts it. Tests with a layout of
//! their own (several certificates, Kubernetes symlinks) call [`start_proxy`] on their config.
//! Either way the proxy is ready when the call returns: `/readyz` has answered 200, so no test
//! races the listeners.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pinproxy::run::{RunError, Running};

use super::{Client, Issued, Pki, TestDir, admin_get, basic_config, eventually};

/// `pinproxy::run::start`, then (if it started) a wait until `/readyz` answers 200.
pub async fn start_proxy(config: &Path) -> Result<Running, RunError> {
    let running = pinproxy::run::start(config).await?;
    let admin = running.admin;
    eventually(Duration::from_secs(10), || async {
        (admin_get(admin, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    Ok(running)
}

/// A proxy's files in a temp dir: config.toml, pins/ and certs/ (see the module).
pub struct TestProxy {
    pub dir: TestDir,
    pub pki: Pki,
    /// The served leaf, certs/api.pem and certs/api.key.
    pub leaf: Issued,
}

#[derive(Default)]
pub struct TestProxyBuilder {
    pki: Option<(Pki, Issued)>,
    pins: Option<String>,
    json_log: bool,
    extra: String,
}

impl TestProxy {
    pub fn builder() -> TestProxyBuilder {
        TestProxyBuilder::default()
    }

    /// The default proxy with `extra` config (routes, upstreams, limits).
    pub fn new(extra: &str) -> Self {
        Self::builder().config(extra).build()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.config_path()
    }

    /// Starts the proxy on the files as they are now; ready when this returns.
    pub async fn start(&self) -> Running {
        start_proxy(&self.config_path())
            .await
            .expect("proxy starts")
    }

    /// A client for listener "mobile" that trusts the test root (HTTP/1.1; `.h2()` and
    /// `.pin()` as usual).
    pub fn client(&self, r: &Running) -> Client {
        Client::new(
            r.listener("mobile").expect("listener"),
            &self.pki.root_pem(),
        )
    }
}

impl TestProxyBuilder {
    /// Serve `leaf` of `pki` instead of a fresh leaf of a PKI "proxy".
    pub fn serve(mut self, pki: Pki, leaf: Issued) -> Self {
        self.pki = Some((pki, leaf));
        self
    }

    /// pins/app.toml as given instead of the leaf's key and a backup.
    pub fn pin_file(mut self, text: String) -> Self {
        self.pins = Some(text);
        self
    }

    /// `[log] format = "json"`, for a test that reads the binary's log.
    pub fn json_log(mut self) -> Self {
        self.json_log = true;
        self
    }

    /// Config appended after the listener as is: `[limits]`, routes, upstreams.
    pub fn config(mut self, extra: &str) -> Self {
        if !self.extra.is_empty() && !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self.extra.push_str(extra);
        self
    }

    /// Writes the files; the proxy is not started.
    pub fn build(self) -> TestProxy {
        let dir = TestDir::new();
        let (pki, leaf) = self.pki.unwrap_or_else(|| {
            let pki = Pki::new("proxy");
            let leaf = pki.leaf(&["localhost", "127.0.0.1"]);
            (pki, leaf)
        });
        match self.pins {
            Some(pins) => {
                dir.write_cert("api", &leaf);
                dir.write("pins/app.toml", pins);
            }
            None => dir.write_pinned("api", &leaf),
        }
        let mut config = basic_config("api", &["app"], &self.extra);
        if self.json_log {
            config = config.replace("[log]\n", "[log]\nformat = \"json\"\n");
        }
        dir.write("config.toml", config);
        TestProxy { dir, pki, leaf }
    }
}
