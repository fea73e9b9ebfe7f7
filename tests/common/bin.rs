//! The `pinproxy` binary as the tests run it: one-shot commands with their output ([`pinproxy`]
//! → [`Run`]) and a long-running proxy whose JSON log is read line by line ([`Proc`]).
//! Shared by every test binary (the toolkit includes it through its support module).
#![allow(dead_code)]

use std::cell::RefCell;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_pinproxy");

/// A directory holding a config.toml (a `TestDir`).
pub trait ConfigDir {
    fn config_path(&self) -> PathBuf;
}

/// The result of one `pinproxy` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout, then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The `sha256/...` first tokens of stdout, in order.
    pub fn pins(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|t| t.starts_with("sha256/"))
            .map(|t| t.trim_start_matches("sha256/").to_string())
            .collect()
    }
}

/// Runs `pinproxy ARGS...` in `dir` to completion.
pub fn pinproxy(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("PINPROXY_CONFIG")
        .output()
        .expect("run the pinproxy binary");
    to_run(out)
}

/// Runs `pinproxy ARGS... -c CONFIG` for a test directory, in that directory.
pub fn with_config(dir: &impl ConfigDir, args: &[&str]) -> Run {
    let config = dir.config_path();
    let path = config.to_str().expect("UTF-8 config path");
    let cwd = config.parent().expect("config dir");
    pinproxy(cwd, &[args, &["-c", path]].concat())
}

fn to_run(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// How long a log line or an exit may take on a loaded 2-core machine (an upper bound only).
const WAIT: Duration = Duration::from_secs(30);

/// The proxy binary with stderr captured line by line.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    seen: RefCell<Vec<String>>,
    /// How many of `seen` [`Proc::wait_for`] has passed.
    next: usize,
}

impl Proc {
    /// `pinproxy -c CONFIG` for a test directory.
    pub fn start(dir: &impl ConfigDir) -> Self {
        Self::start_with_env(dir, &[])
    }

    /// As [`Proc::start`], with extra environment (`RUST_LOG` is cleared unless given here).
    pub fn start_with_env(dir: &impl ConfigDir, env: &[(&str, &str)]) -> Self {
        Self::spawn(&dir.config_path(), env)
    }

    /// `pinproxy -c CONFIG` for any config path.
    pub fn spawn(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = command(config, env).spawn().expect("spawn pinproxy");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: RefCell::new(Vec::new()),
            next: 0,
        }
    }

    /// Waits (bounded) for a JSON log line with this message after the one the last call
    /// returned, and returns it.
    pub fn wait_for(&mut self, message: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let found = self.seen.get_mut()[self.next..].iter().position(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .is_ok_and(|v| v["message"] == message)
            });
            if let Some(i) = found {
                self.next += i + 1;
                let line = &self.seen.get_mut()[self.next - 1];
                return serde_json::from_str(line).expect("JSON");
            }
            self.next = self.seen.get_mut().len();
            self.read_one(deadline, &format!("no {message:?} log line"));
        }
    }

    /// The `addr` of the next JSON log line with this message ([`Proc::wait_for`]).
    pub fn wait_addr(&mut self, message: &str) -> std::net::SocketAddr {
        self.wait_for(message)["addr"]
            .as_str()
            .expect("addr")
            .parse()
            .expect("addr")
    }

    /// The first line so far that satisfies `pred`, without waiting.
    pub fn find(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        let mut seen = self.seen.borrow_mut();
        seen.extend(self.lines.try_iter());
        seen.iter().find(|l| pred(l)).cloned()
    }

    /// The `addr=` of the first (text-format) log line containing `marker`, waiting (bounded)
    /// for it.
    pub fn addr(&self, marker: &str) -> std::net::SocketAddr {
        let parse = |l: &str| {
            l.split("addr=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<std::net::SocketAddr>()
                .ok()
        };
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let line = self.find(|l| l.contains(marker) && l.contains("addr="));
            if let Some(addr) = line.as_deref().and_then(parse) {
                return addr;
            }
            self.read_one(deadline, &format!("no {marker:?} log line with an addr="));
        }
    }

    /// Waits for one more line until `deadline`.
    fn read_one(&self, deadline: std::time::Instant, what: &str) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = self
            .lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{what}; saw:\n{}", self.seen.borrow().join("\n")));
        self.seen.borrow_mut().push(line);
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pinproxy did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit code (bounded wait).
    pub fn stop(&mut self) -> Option<i32> {
        self.signal("TERM");
        self.wait_exit(WAIT)
    }

    pub fn rest_of_log(&mut self) -> String {
        let seen = self.seen.get_mut();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            seen.push(l);
        }
        seen.join("\n")
    }
}

/// The command [`Proc`] spawns: `pinproxy -c CONFIG`, `RUST_LOG` cleared unless `env` sets it,
/// stdin and stdout null, stderr piped (for a test that reads it itself).
pub fn command(config: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
