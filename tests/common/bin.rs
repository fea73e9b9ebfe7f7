//! The `pinproxy` binary as the tests run it: one-shot commands with their output ([`pinproxy`]
//! → [`Run`]) and a long-running proxy whose JSON log is read line by line ([`Proc`]).
//! Shared by every test binary (the toolkit includes it through its support module).
#![allow(dead_code)]

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

fn to_run(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The proxy binary with stderr captured line by line.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
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
        let mut child = Command::new(BIN)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .arg("-c")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pinproxy");
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
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a JSON log line with this message and returns it.
    pub fn wait_for(&mut self, message: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no {message:?} log line; saw:\n{}", self.seen.join("\n"))
            });
            self.seen.push(line.clone());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == message
            {
                return v;
            }
        }
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

    pub fn rest_of_log(&mut self) -> String {
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
