//! The `ifx` binary as a user runs it: bad input is answered clearly, keys and config can be
//! inspected, an unreachable bootnode is retried with backoff, SIGTERM stops the node cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const IFX: &str = env!("CARGO_BIN_EXE_ifx");

fn ifx(args: &[&str]) -> Output {
    Command::new(IFX).args(args).env_remove("RUST_LOG").output().expect("running ifx")
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = ifx(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail; stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks {n:?}:\n{err}");
    }
}

/// A plain HTTP/1.1 GET over loopback; returns the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    resp.split_once("\r\n\r\n").unwrap().1.to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A node process whose stderr lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(IFX)
            .args(args)
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// Waits for `n` lines containing `needle`; panics with the log after `timeout`.
    fn expect(&mut self, needle: &str, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let hits: Vec<String> = self.seen.iter().filter(|l| l.contains(needle)).cloned().collect();
            if hits.len() >= n {
                return hits;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("no {n}x {needle:?} within {timeout:?}; log:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "node did not stop within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn bad_input_is_answered_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = s(&d);
    // Invalid multiaddrs, in flags and in the config.
    fails_with(&["node", "--data-dir", ds, "--listen", "not-a-multiaddr"], &["node.listen", "not a valid multiaddr"]);
    fails_with(
        &["node", "--data-dir", ds, "--listen", "/ip4/127.0.0.1/tcp/0", "--bootnode", "/ip4/127.0.0.1/tcp/1"],
        &["network.bootnodes", "/p2p/"],
    );
    fails_with(&["node", "--data-dir", ds, "--api", "0.0.0.0:7070"], &["node.api", "loopback"]);
    fails_with(&["node", "--data-dir", ds, "--role", "miner"], &["miner"]);
    // Broken config files: syntax, unknown key, bad value, missing file.
    let cfg = tmp.path().join("ifx.toml");
    std::fs::write(&cfg, "[network\nid = 1").unwrap();
    fails_with(&["node", "--config", s(&cfg)], &["config file", "ifx.toml"]);
    std::fs::write(&cfg, "[network]\nepoch_length = 5\n").unwrap();
    fails_with(&["node", "--config", s(&cfg)], &["epoch_length"]);
    std::fs::write(&cfg, "[network]\nepoch_secs = 0\n").unwrap();
    fails_with(&["node", "--config", s(&cfg)], &["network.epoch_secs"]);
    fails_with(&["node", "--config", s(&tmp.path().join("missing.toml"))], &["cannot read config file"]);
    // Unusable data dirs: a file, and a path below a file.
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let api_off = ["--listen", "/ip4/127.0.0.1/tcp/0", "--api", ""];
    fails_with(&[&["node", "--data-dir", s(&file)][..], &api_off].concat(), &["not a directory"]);
    fails_with(&[&["node", "--data-dir", s(&file.join("sub"))][..], &api_off].concat(), &["cannot create"]);
    // A port in use (held by this test).
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    fails_with(&["node", "--data-dir", ds, "--listen", &listen, "--api", ""], &["address already in use", &listen]);
    fails_with(
        &["node", "--data-dir", ds, "--listen", "/ip4/127.0.0.1/tcp/0", "--api", &format!("127.0.0.1:{port}")],
        &["cannot serve the API", "address already in use"],
    );
    // Keys: missing, then corrupted (never replaced).
    fails_with(&["key", "show", "--data-dir", s(&tmp.path().join("nokey"))], &["no key file"]);
    std::fs::write(d.join("node_key.toml"), "version = 1\nsecret = \"zz\"\n").unwrap();
    fails_with(&["key", "show", "--data-dir", ds], &["corrupted"]);
    fails_with(&["node", "--data-dir", ds, "--listen", "/ip4/127.0.0.1/tcp/0", "--api", ""], &["corrupted"]);
    assert_eq!(std::fs::read_to_string(d.join("node_key.toml")).unwrap(), "version = 1\nsecret = \"zz\"\n");
}

#[test]
fn config_show_prints_the_effective_config() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("ifx.toml");
    std::fs::write(&cfg, "[network]\nid = \"lab\"\nheartbeat_interval_ms = 250\n").unwrap();
    let out = ifx(&["config", "show", "--config", s(&cfg), "--role", "verifier", "--listen", "/ip4/127.0.0.1/tcp/7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let shown: ifx_node::NodeConfig = toml::from_str(&text).unwrap();
    assert_eq!(shown.network.id, "lab");
    assert_eq!(shown.network.heartbeat_interval_ms, 250);
    assert_eq!(shown.node.role, ifx_protocols::Role::Verifier);
    assert_eq!(shown.node.listen, vec!["/ip4/127.0.0.1/tcp/7".to_string()]);
    assert_eq!(shown.network.epoch_secs, 72 * 3600, "defaults fill what the file leaves out");
}

#[test]
fn unreachable_bootnode_is_retried_with_backoff_and_sigterm_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let peer = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id();
    let boot = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}");
    let mut node = Running::start(&[
        "node",
        "--data-dir",
        s(&dir),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        "127.0.0.1:0",
        "--bootnode",
        &boot,
    ]);
    let retries = node.expect("bootnode unreachable; retrying with exponential backoff", 3, Duration::from_secs(30));
    for (line, ms) in retries.iter().zip(["retry_in_ms=1000", "retry_in_ms=2000", "retry_in_ms=4000"]) {
        assert!(line.contains(ms), "expected {ms} in {line}");
    }
    // The API came up while the bootnode was unreachable, and the key is the node's identity.
    let api = std::fs::read_to_string(dir.join("api.addr")).unwrap();
    let status: serde_json::Value = serde_json::from_str(&http_get(api.trim(), "/status")).unwrap();
    let out = ifx(&["key", "show", "--data-dir", s(&dir)]);
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains(status["peer_id"].as_str().unwrap()), "{shown} vs {status}");
    assert!(shown.contains("public_key: "));
    // `ifx pause` and `ifx resume` reach the running node through its data dir's API address
    // and token (issue #19).
    let out = ifx(&["pause", "--data-dir", s(&dir), "--reason", "lunch"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    node.expect("work paused", 1, Duration::from_secs(5));
    // `ifx status`: the node on one screen, the pause on it.
    let out = ifx(&["status", "--data-dir", s(&dir)]);
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for line in ["node      ", "work      paused: lunch", "peers     0 connected", "reach     "] {
        assert!(screen.contains(line), "{line:?} not in\n{screen}");
    }
    assert!(screen.contains(status["peer_id"].as_str().unwrap()), "{screen}");
    // `ifx dashboard`: the page's address with the token its buttons need; the page is there.
    let out = ifx(&["dashboard", "--data-dir", s(&dir)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("http://{}/#token={}", api.trim(), token.trim()));
    assert!(http_get(api.trim(), "/").contains("<script src=\"/dashboard.js\""));
    // The warnings the process logged are in `GET /logs` (the dashboard's panel).
    let logs: serde_json::Value = serde_json::from_str(&http_get(api.trim(), "/logs")).unwrap();
    let lines = logs["lines"].as_array().unwrap();
    assert!(
        lines.iter().any(|l| l["level"] == "WARN" && l["message"].as_str().unwrap().contains("bootnode unreachable")),
        "{logs:#}"
    );
    let status: serde_json::Value = serde_json::from_str(&http_get(api.trim(), "/status")).unwrap();
    assert_eq!(status["paused"], "lunch");
    assert!(ifx(&["resume", "--data-dir", s(&dir)]).status.success());
    node.expect("work resumed", 1, Duration::from_secs(5));
    let status: serde_json::Value = serde_json::from_str(&http_get(api.trim(), "/status")).unwrap();
    assert!(status["paused"].is_null(), "{status}");
    let st = node.terminate();
    assert!(st.success(), "exit status after SIGTERM: {st}");
    node.expect("node stopped", 1, Duration::from_secs(5));
}

#[test]
fn json_logs_are_one_json_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Running::start(&[
        "node",
        "--data-dir",
        s(&tmp.path().join("n")),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        "",
        "--json-logs",
    ]);
    let line = node.expect("\"listening\"", 1, Duration::from_secs(20)).remove(0);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "INFO");
    assert!(v["fields"]["address"].as_str().unwrap().starts_with("/ip4/127.0.0.1/tcp/"), "{v}");
    assert!(node.terminate().success());
}

/// Issue #19: `ifx service install` writes a unit that systemd accepts (`systemd-analyze
/// verify`), whose ExecStart runs this binary as a node with the config given, writable data
/// dir and all, and whose stop signal stops that node cleanly; root and a missing config are
/// refused with the fix.
#[test]
fn service_install_writes_a_unit_whose_command_runs_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, data, units) = (tmp.path().join("config.toml"), tmp.path().join("data"), tmp.path().join("units"));
    std::fs::create_dir_all(&units).unwrap();
    fails_with(
        &["service", "install", "--config", s(&config), "--unit-dir", s(&units), "--no-start"],
        &["does not exist", "ifx config show --data-dir"],
    );
    let shown =
        ifx(&["config", "show", "--data-dir", s(&data), "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"]);
    assert!(shown.status.success());
    std::fs::write(&config, &shown.stdout).unwrap();
    fails_with(
        &["service", "install", "--config", s(&config), "--unit-dir", s(&units), "--user", "root", "--no-start"],
        &["a user of its own"],
    );
    // Nothing leaves the unit dir or adds a line to the unit.
    fails_with(
        &["service", "install", "--config", s(&config), "--unit-dir", s(&units), "--name", "../evil", "--no-start"],
        &["--name", "a systemd unit name"],
    );
    fails_with(
        &["service", "unit", "--config", s(&config), "--user", "ifx\nExecStartPre=/bin/sh"],
        &["--user", "a user name"],
    );
    let odd = tmp.path().join("my config%i.toml");
    std::fs::copy(&config, &odd).unwrap();
    fails_with(&["service", "unit", "--config", s(&odd)], &["without whitespace"]);
    assert_eq!(std::fs::read_dir(&units).unwrap().count(), 0, "a refused install wrote a file");
    assert!(!tmp.path().join("evil.service").exists());
    let out =
        ifx(&["service", "install", "--config", s(&config), "--unit-dir", s(&units), "--user", "nobody", "--no-start"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = units.join("ifx.service");
    let unit = std::fs::read_to_string(&path).unwrap();
    for want in [
        format!("ExecStart={IFX} node --config {}", config.display()),
        "User=nobody".into(),
        format!("ReadWritePaths={}", data.display()),
        "KillSignal=SIGTERM".into(),
        "WantedBy=multi-user.target".into(),
    ] {
        assert!(unit.lines().any(|l| l == want), "the unit lacks {want:?}:\n{unit}");
    }
    // `ifx service unit` prints the same unit.
    let printed = ifx(&["service", "unit", "--config", s(&config), "--user", "nobody"]);
    assert_eq!(String::from_utf8_lossy(&printed.stdout), unit);
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is not installed: run scripts/setup.sh");
    assert!(verify.status.success(), "systemd-analyze verify: {}", String::from_utf8_lossy(&verify.stderr));

    // What systemd would run, run here: it starts a node, and SIGTERM (KillSignal) stops it
    // with exit status 0 well within TimeoutStopSec.
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let words: Vec<&str> = exec.split(' ').collect();
    assert_eq!(words[0], IFX);
    let mut node = Running::start(&words[1..]);
    node.expect("API listening", 1, Duration::from_secs(30));
    assert!(data.join("node_key.toml").exists());
    let st = node.terminate();
    assert!(st.success(), "exit status after SIGTERM: {st}");
}

/// `ifx infer train` writes weights a node can serve (the model's hash and size printed), and
/// refuses an unknown architecture or a missing data file by name.
#[test]
fn infer_train_writes_a_servable_model_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/digits.csv.gz");
    let out = tmp.path().join("mlp.safetensors");
    let o = ifx(&["infer", "train", "--arch", "mlp", "--data", s(&data), "--out", s(&out), "--epochs", "2"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text} {}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("test accuracy") && text.contains("blake3"), "{text}");
    let bytes = std::fs::read(&out).unwrap();
    let m = ifx_protocols::infer::ModelSpec::publish(ifx_protocols::infer::Arch::Mlp, &bytes).unwrap();
    assert!(text.contains(&hex::encode(m.weights)), "{text}");
    fails_with(&["infer", "train", "--arch", "resnet", "--data", s(&data), "--out", s(&out)], &["resnet", "mlp, cnn"]);
    fails_with(&["infer", "train", "--data", s(&tmp.path().join("none.csv")), "--out", s(&out)], &["none.csv"]);
}
