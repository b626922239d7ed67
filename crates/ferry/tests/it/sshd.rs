//! A real OpenSSH server for tests: its own config, host key, client key and port, on loopback
//! or inside a network namespace. `SetEnv FERRY_HOME` gives each instance its own agent
//! directory on the (shared) test machine.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness;
use crate::netns::Host;

pub const SSHD: &str = "/usr/sbin/sshd";
/// The user of password-account tests (made once, with a known password).
pub const PASSWORD_USER: &str = "ferrytest";
pub const PASSWORD: &str = "Ferry-test-pass-42";

pub struct Sshd {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    pub dir: PathBuf,
    pub host: String,
    pub port: u16,
    /// `SHA256:…` of the host key.
    pub fingerprint: String,
    /// The private key authorized for root (OpenSSH format).
    pub client_key: String,
    pub home: PathBuf,
    ns: Option<String>,
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn keygen(path: &Path) {
    sh(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ferry-test", "-f"])
        .arg(path));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Makes the password test user once per test process (tests run in parallel; `useradd` and
/// `chpasswd` lock /etc/passwd and /etc/shadow).
pub fn ensure_password_user() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(make_password_user);
}

fn make_password_user() {
    let exists = Command::new("id")
        .arg(PASSWORD_USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        let _ = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", PASSWORD_USER])
            .output();
    }
    let mut c = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD_USER}:{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success());
}

impl Sshd {
    /// Starts sshd on loopback (`ns` = None) or on the host's address inside its namespace.
    /// Returns None (after `skip_or_fail`) when sshd is not installed.
    pub fn start(ns: Option<&Host>) -> Option<Sshd> {
        if !Path::new(SSHD).exists() {
            harness::skip_or_fail("sshd", "/usr/sbin/sshd is not installed (openssh-server)");
            return None;
        }
        let _ = std::fs::create_dir_all("/run/sshd");
        let tmp = tempfile::Builder::new()
            .prefix("ferry-sshd-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        keygen(&dir.join("host_key"));
        keygen(&dir.join("client_key"));
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        let fp = sh(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(dir.join("host_key.pub")));
        let fingerprint = fp.split_whitespace().nth(1).unwrap().to_string();
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        // The password user must be able to write its agent directory too.
        let _ = Command::new("chmod").arg("0777").arg(&home).output();
        let (host, port) = match ns {
            Some(h) => (h.addr.clone(), 2222),
            None => ("127.0.0.1".to_string(), free_port()),
        };
        let config = format!(
            "Port {port}\nListenAddress {host}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nPermitRootLogin yes\n\
             PasswordAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM no\n\
             SetEnv FERRY_HOME={d}/home\nPrintMotd no\nMaxSessions 50\nMaxStartups 100\n",
            d = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let mut cmd = match ns {
            Some(h) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &h.name, SSHD]);
                c
            }
            None => Command::new(SSHD),
        };
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap());
        let child = cmd.spawn().unwrap();
        let client_key = std::fs::read_to_string(dir.join("client_key")).unwrap();
        let s = Sshd {
            child: Some(child),
            _dir: tmp,
            dir,
            host,
            port,
            fingerprint,
            client_key,
            home,
            ns: ns.map(|h| h.name.clone()),
        };
        s.wait_ready();
        Some(s)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default();
            if log.contains("Server listening") {
                return;
            }
            assert!(Instant::now() < deadline, "sshd did not start: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replaces the host key (a "changed host key") and restarts sshd.
    pub fn change_host_key(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(self.dir.join("host_key"));
        let _ = std::fs::remove_file(self.dir.join("host_key.pub"));
        keygen(&self.dir.join("host_key"));
        let _ = std::fs::remove_file(self.dir.join("sshd.log"));
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, SSHD]);
                c
            }
            None => Command::new(SSHD),
        };
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("sshd.log")).unwrap());
        self.child = Some(cmd.spawn().unwrap());
        self.wait_ready();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
        // Agents started by sessions end with their SSH channel; a leftover one holds files in
        // the temporary directory only.
    }
}
