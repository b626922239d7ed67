//! Multi-host test support: a Linux bridge in the root namespace plus one network namespace
//! ("host") per simulated machine, each wired into the bridge through a veth pair. The Ferry
//! server runs in the test process (root namespace) and is reachable from every host at
//! [`Net::gateway`]; [`Host::cut`] silently drops all of a host's traffic (TCP hangs, it is not
//! reset) until [`Host::heal`].
//!
//! Names encode the creating process id so [`cleanup_stale`] can remove what crashed runs left
//! behind: bridges `fb{pid}_{n}`, root-side veth ends `fv{pid}_{m}`, namespaces `fn{pid}_{m}`
//! (all at most 15 characters), iptables rules commented `ferry-{bridge or namespace name}`.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::harness;

static NEXT_NET: AtomicU32 = AtomicU32::new(0);
static NEXT_HOST: AtomicU32 = AtomicU32::new(0);
/// Serialises subnet selection + bridge creation inside this process.
static SUBNET_LOCK: Mutex<()> = Mutex::new(());
static CLEANUP_ONCE: Once = Once::new();

/// Linux's interface-name limit (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;
/// Subnets are 10.a.b.0/24 with a in 64..=191: 128 * 256 candidates.
const SUBNETS: u32 = 128 * 256;

/// Runs a command, returning stdout on success and a readable error otherwise.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args)
}

/// `iptables -w ...` in the root namespace.
fn iptables(args: &[&str]) -> Result<String, String> {
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    run("iptables", &all)
}

/// `iptables -w ...` inside namespace `ns`.
fn ns_iptables(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["netns", "exec", ns, "iptables", "-w"];
    all.extend_from_slice(args);
    ip(&all)
}

/// Deletes every root-namespace iptables rule (filter table) whose comment satisfies `matches`.
fn delete_rules_where(matches: impl Fn(&str) -> bool) {
    let Ok(rules) = iptables(&["-S"]) else {
        return;
    };
    for line in rules.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(pos) = tokens.iter().position(|t| *t == "--comment") else {
            continue;
        };
        let Some(comment) = tokens.get(pos + 1) else {
            continue;
        };
        if tokens.first() != Some(&"-A") || !matches(comment.trim_matches('"')) {
            continue;
        }
        let mut del: Vec<&str> = tokens.clone();
        del[0] = "-D";
        // Strip quotes iptables-save adds around comments; no comment of ours has spaces.
        let owned: Vec<String> = del
            .iter()
            .map(|t| t.trim_matches('"').to_string())
            .collect();
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        let _ = iptables(&refs);
    }
}

/// The comments of all root-namespace filter rules (exact strings, quotes stripped).
fn rule_comments() -> Vec<String> {
    iptables(&["-S"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut tokens = line.split_whitespace();
            tokens.find(|t| *t == "--comment")?;
            tokens.next().map(|c| c.trim_matches('"').to_string())
        })
        .collect()
}

/// Parses `{prefix}{pid}_{n}` and returns the pid.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = ["fb", "fv", "fn"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    let (pid, n) = rest.split_once('_')?;
    if pid.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn is_stale(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| !pid_alive(pid))
}

/// Interface names in the root namespace (without the `@peer` suffix).
fn link_names() -> Vec<String> {
    ip(&["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

fn netns_names() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Deletes namespaces, links and iptables rules left by earlier runs whose creating process no
/// longer exists. Errors are ignored.
pub fn cleanup_stale() {
    for ns in netns_names().into_iter().filter(|n| is_stale(n)) {
        let _ = ip(&["netns", "del", &ns]);
    }
    for link in link_names().into_iter().filter(|n| is_stale(n)) {
        let _ = ip(&["link", "del", &link]);
    }
    delete_rules_where(|c| c.strip_prefix("ferry-").is_some_and(is_stale));
}

/// A bridge in the root namespace that hosts plug into.
pub struct Net {
    bridge: String,
    /// `10.a.b` (no trailing dot).
    prefix: String,
    gateway: String,
    next_host: AtomicU32,
    /// Namespace names of hosts created here (for leftover-rule cleanup on drop).
    hosts: Mutex<Vec<String>>,
}

/// One simulated machine: a network namespace wired into a [`Net`].
pub struct Host {
    /// The namespace name (`fn{pid}_{m}`).
    pub name: String,
    /// What the test asked for (`"a"`, `"worker-1"`, ...); only for messages.
    pub label: String,
    /// The host's address on the bridge, e.g. `10.77.3.2`.
    pub addr: String,
    /// The root-namespace end of the veth pair.
    veth: String,
}

impl Net {
    /// Creates a bridge with a fresh 10.a.b.1/24 address in the root namespace. Returns `None`
    /// (after [`harness::skip_or_fail`]) when namespaces cannot be made here.
    pub fn new() -> Option<Net> {
        if let Err(why) = ip(&["netns", "list"]) {
            harness::skip_or_fail("netns", &format!("`ip` unusable: {why}"));
            return None;
        }
        if let Err(why) = iptables(&["-S", "FORWARD"]) {
            harness::skip_or_fail("netns", &format!("`iptables` unusable: {why}"));
            return None;
        }
        CLEANUP_ONCE.call_once(cleanup_stale);

        let pid = std::process::id();
        let n = NEXT_NET.fetch_add(1, Ordering::Relaxed);
        let bridge = format!("fb{pid}_{n}");
        assert!(bridge.len() <= MAX_IFNAME, "bridge name {bridge} too long");

        let _guard = SUBNET_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // Start at a pid-derived slot so concurrent processes pick different subnets; skip any
        // subnet already present in the root namespace (addresses or routes).
        let start = (pid % 4096) * 8 + n;
        let in_use = format!(
            "{}\n{}",
            ip(&["-4", "-o", "addr", "show"]).unwrap_or_default(),
            ip(&["-4", "route", "show", "table", "all"]).unwrap_or_default()
        );
        let prefix = (0..SUBNETS)
            .map(|i| {
                let idx = (start + i) % SUBNETS;
                format!("10.{}.{}", 64 + idx / 256, idx % 256)
            })
            .find(|p| !in_use.contains(&format!("{p}.")))
            .expect("no free 10.x.y.0/24 subnet");
        let gateway = format!("{prefix}.1");

        if let Err(why) = ip(&["link", "add", &bridge, "type", "bridge"]) {
            harness::skip_or_fail("netns", &format!("cannot create a bridge: {why}"));
            return None;
        }
        let net = Net {
            bridge,
            prefix,
            gateway,
            next_host: AtomicU32::new(2),
            hosts: Mutex::new(Vec::new()),
        };
        let cidr = format!("{}/24", net.gateway);
        ip(&["addr", "add", &cidr, "dev", &net.bridge]).unwrap();
        ip(&["link", "set", &net.bridge, "up"]).unwrap();
        drop(_guard);

        // If the root firewall is restrictive (e.g. FORWARD policy DROP with brnetfilter), let
        // the bridge's own traffic through. cut() inserts its DROPs above these.
        let comment = format!("ferry-{}", net.bridge);
        for rule in [
            vec!["-I", "FORWARD", "-i", &net.bridge, "-o", &net.bridge],
            vec!["-I", "INPUT", "-i", &net.bridge],
        ] {
            let mut rule = rule;
            rule.extend(["-m", "comment", "--comment", &comment, "-j", "ACCEPT"]);
            iptables(&rule).unwrap();
        }
        Some(net)
    }

    /// The bridge's address: how hosts reach services in the root namespace.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// The bridge's interface name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Creates a namespace wired into the bridge at the next free `.N/24` address, with `lo` up
    /// and a default route via the gateway.
    pub fn host(&self, label: &str) -> Host {
        let m = NEXT_HOST.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let octet = self.next_host.fetch_add(1, Ordering::Relaxed);
        assert!(octet <= 254, "too many hosts on {}", self.bridge);
        let host = Host {
            name: format!("fn{pid}_{m}"),
            label: label.to_string(),
            addr: format!("{}.{octet}", self.prefix),
            veth: format!("fv{pid}_{m}"),
        };
        assert!(
            host.veth.len() <= MAX_IFNAME,
            "veth name {} too long",
            host.veth
        );
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(host.name.clone());
        // `host` already exists, so a failing step panics and Drop removes what was made.
        let ns = host.name.as_str();
        let cidr = format!("{}/24", host.addr);
        let steps: [&[&str]; 8] = [
            &["netns", "add", ns],
            &[
                "link", "add", &host.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
            &["link", "set", &host.veth, "master", &self.bridge],
            &["link", "set", &host.veth, "up"],
            &["-n", ns, "link", "set", "lo", "up"],
            &["-n", ns, "addr", "add", &cidr, "dev", "eth0"],
            &["-n", ns, "link", "set", "eth0", "up"],
            &["-n", ns, "route", "add", "default", "via", &self.gateway],
        ];
        for step in steps {
            if let Err(why) = ip(step) {
                panic!("netns host {label}: {why}");
            }
        }
        host
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.bridge]);
        let mut comments = vec![format!("ferry-{}", self.bridge)];
        comments.extend(
            self.hosts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|h| format!("ferry-{h}")),
        );
        delete_rules_where(|c| comments.iter().any(|x| x == c));
    }
}

impl Host {
    /// A command running `program` inside this host's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    fn comment(&self) -> String {
        format!("ferry-{}", self.name)
    }

    /// The DROP rules cut() adds: (namespace?, args) where namespace=true means "inside the host".
    fn cut_rules(&self) -> Vec<(bool, Vec<String>)> {
        let a = self.addr.as_str();
        let root: [&[&str]; 5] = [
            &["FORWARD", "-s", a],
            &["FORWARD", "-d", a],
            &["INPUT", "-s", a],
            &["OUTPUT", "-d", a],
            &["OUTPUT", "-s", a],
        ];
        let inside: [&[&str]; 2] = [&["INPUT", "!", "-i", "lo"], &["OUTPUT", "!", "-o", "lo"]];
        let comment = self.comment();
        let tail = ["-m", "comment", "--comment", &comment, "-j", "DROP"];
        let build = |r: &[&str]| {
            r.iter()
                .chain(tail.iter())
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        };
        root.iter()
            .map(|r| (false, build(r)))
            .chain(inside.iter().map(|r| (true, build(r))))
            .collect()
    }

    /// Cuts the host off: every packet to or from it is silently dropped (both in the root
    /// namespace and inside the host; loopback inside the host keeps working). Idempotent.
    pub fn cut(&self) {
        for (inside, rule) in self.cut_rules() {
            let mut check: Vec<&str> = vec!["-C"];
            check.extend(rule.iter().map(String::as_str));
            let mut insert: Vec<&str> = vec!["-I"];
            insert.extend(rule.iter().map(String::as_str));
            let result = if inside {
                ns_iptables(&self.name, &check).or_else(|_| ns_iptables(&self.name, &insert))
            } else {
                iptables(&check).or_else(|_| iptables(&insert))
            };
            if let Err(why) = result {
                panic!("cut {}: {why}", self.label);
            }
        }
    }

    /// Removes the rules [`Host::cut`] added (no-op when not cut).
    pub fn heal(&self) {
        for (inside, rule) in self.cut_rules() {
            let mut del: Vec<&str> = vec!["-D"];
            del.extend(rule.iter().map(String::as_str));
            // Delete until gone, in case cut() raced with itself.
            for _ in 0..8 {
                let r = if inside {
                    ns_iptables(&self.name, &del)
                } else {
                    iptables(&del)
                };
                if r.is_err() {
                    break;
                }
            }
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let comment = self.comment();
        delete_rules_where(|c| c == comment);
        // Deleting the namespace destroys the in-namespace veth end and with it the pair.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.veth]);
    }
}

// ---------------------------------------------------------------------------------------------

/// Runs `bash -c script` inside `host` and returns (exit code, stderr).
fn bash_in(host: &Host, script: &str) -> (Option<i32>, String) {
    let out = host
        .command("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Accepts one connection on `listener` within `timeout` and returns what it sent.
fn accept_line(listener: &TcpListener, timeout: Duration) -> Option<String> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                return Some(buf.trim().to_string());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn send_hi(host: &Host, addr: &str, port: u16) -> (Option<i32>, String) {
    bash_in(
        host,
        &format!("timeout 2 bash -c 'exec 3<>/dev/tcp/{addr}/{port} && echo hi >&3'"),
    )
}

#[test]
fn netns_hosts_reach_gateway_and_each_other() {
    let Some(net) = Net::new() else { return };
    let a = net.host("a");
    let b = net.host("b");

    // Host -> root namespace (gateway).
    let listener = TcpListener::bind((net.gateway(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    for h in [&a, &b] {
        let (code, err) = send_hi(h, net.gateway(), port);
        assert_eq!(code, Some(0), "{} -> gateway: {err}", h.label);
        assert_eq!(
            accept_line(&listener, Duration::from_secs(5)).as_deref(),
            Some("hi")
        );
    }

    // Host -> host: a python3 listener in a, bash client in b.
    let script = format!(
        "import socket,sys\n\
         s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{}', 7070)); s.listen(1); print('ready', flush=True)\n\
         s.settimeout(10); c,_=s.accept(); c.settimeout(5)\n\
         print(c.makefile().readline().strip(), flush=True)",
        a.addr
    );
    let mut server = a
        .command("python3")
        .arg("-c")
        .arg(&script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let (code, err) = send_hi(&b, &a.addr, 7070);
    assert_eq!(code, Some(0), "b -> a: {err}");
    assert_eq!(lines.next().unwrap().unwrap(), "hi");
    assert!(server.wait().unwrap().success());

    // Root namespace -> host.
    let mut server = a
        .command("python3")
        .arg("-c")
        .arg(&script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let mut s = std::net::TcpStream::connect((a.addr.as_str(), 7070)).unwrap();
    s.write_all(b"hi\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "hi");
    assert!(server.wait().unwrap().success());
}

#[test]
fn netns_cut_then_heal() {
    let Some(net) = Net::new() else { return };
    let a = net.host("a");
    let b = net.host("b");
    let listener = TcpListener::bind((net.gateway(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();

    assert_eq!(send_hi(&a, net.gateway(), port).0, Some(0));
    assert_eq!(
        accept_line(&listener, Duration::from_secs(5)).as_deref(),
        Some("hi")
    );

    a.cut();
    a.cut(); // idempotent
    // Dropped, not rejected: the connect hangs until `timeout` kills it (exit 124).
    let (code, err) = send_hi(&a, net.gateway(), port);
    assert_eq!(code, Some(124), "a -> gateway while cut: {err}");
    let (code, err) = send_hi(&b, &a.addr, 7070);
    assert_eq!(code, Some(124), "b -> a while cut: {err}");
    let (code, err) = send_hi(&a, &b.addr, 7070);
    assert_eq!(code, Some(124), "a -> b while cut: {err}");
    // Root namespace -> cut host also hangs.
    let err = std::net::TcpStream::connect_timeout(
        &format!("{}:7070", a.addr).parse().unwrap(),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    // Loopback inside the cut host keeps working.
    let (code, err) = bash_in(
        &a,
        "python3 -c \"import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); \
         socket.create_connection(s.getsockname(), timeout=2)\"",
    );
    assert_eq!(code, Some(0), "loopback while cut: {err}");
    // The other host is unaffected.
    assert_eq!(send_hi(&b, net.gateway(), port).0, Some(0));
    assert_eq!(
        accept_line(&listener, Duration::from_secs(5)).as_deref(),
        Some("hi")
    );
    assert_eq!(
        accept_line(&listener, Duration::from_millis(200)),
        None,
        "a got through"
    );

    a.heal();
    a.heal(); // no-op
    let (code, err) = send_hi(&a, net.gateway(), port);
    assert_eq!(code, Some(0), "a -> gateway after heal: {err}");
    assert_eq!(
        accept_line(&listener, Duration::from_secs(5)).as_deref(),
        Some("hi")
    );
    assert!(
        !rule_comments().contains(&a.comment()),
        "rules left after heal"
    );
}

#[test]
fn netns_cleanup_removes_everything() {
    let Some(net) = Net::new() else { return };
    let a = net.host("a");
    let b = net.host("b");
    b.cut(); // rules must go too, even without heal()
    let mut names = vec![net.bridge().to_string()];
    for h in [&a, &b] {
        names.push(h.name.clone());
        names.push(h.veth.clone());
    }
    let present = |n: &String| {
        netns_names().contains(n)
            || link_names().contains(n)
            || rule_comments().contains(&format!("ferry-{n}"))
    };
    assert!(names.iter().all(present));
    assert!(rule_comments().contains(&b.comment()));
    drop(a);
    drop(b);
    drop(net);
    for n in &names {
        assert!(!present(n), "{n} still present after drop");
    }
    let comments = rule_comments();
    for n in &names {
        let c = format!("ferry-{n}");
        assert!(!comments.contains(&c), "rule {c} left");
    }
}

#[test]
fn netns_cleanup_stale_removes_dead_pids() {
    let Some(net) = Net::new() else { return };
    // A pid that cannot exist (pid_max is at most 2^22), distinct per test process.
    let dead = 4_194_304 + std::process::id() % 1_000_000;
    let (br, ns) = (format!("fb{dead}_0"), format!("fn{dead}_0"));
    ip(&["link", "add", &br, "type", "bridge"]).unwrap();
    ip(&["netns", "add", &ns]).unwrap();
    let comment = format!("ferry-{ns}");
    iptables(&[
        "-A",
        "FORWARD",
        "-s",
        "10.255.255.254",
        "-m",
        "comment",
        "--comment",
        &comment,
        "-j",
        "DROP",
    ])
    .unwrap();
    assert!(is_stale(&br) && is_stale(&ns) && !is_stale(&net.bridge));
    cleanup_stale();
    assert!(!link_names().contains(&br));
    assert!(!netns_names().contains(&ns));
    assert!(!rule_comments().contains(&comment));
    // Our own live bridge is untouched.
    assert!(link_names().contains(&net.bridge));
}
