//! Issue #19, when a home node works: `[work] hours` and idle-only mode (CPU load, someone at
//! a terminal) pause a real node as `ifx pause` does. Alone in its test binary: idle-only mode reads the whole machine's load,
//! and other tests' node processes would be load.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ifx_node::pause::Source;
use ifx_node::{Node, NodeConfig};

fn config(dir: &std::path::Path) -> NodeConfig {
    let mut cfg = NodeConfig::default();
    cfg.node.data_dir = dir.into();
    cfg.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    cfg.node.api = String::new();
    cfg.network.id = "operator".into();
    cfg.network.genesis_unix_secs = ifx_node::unix_time_us() / 1_000_000 - 10;
    cfg
}

/// Waits until `done`, at most `timeout`; how long it took.
async fn wait_for(what: &str, timeout: Duration, done: impl Fn() -> bool) -> Duration {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{what}: {:.1} s", t0.elapsed().as_secs_f64());
    t0.elapsed()
}

/// Synthetic load: one spinning shell per CPU, killed on drop.
struct Load(Vec<Child>);

impl Load {
    fn start() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Load((0..cpus).map(|_| Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap()).collect())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_only_pauses_under_load_within_10_s_and_resumes_after_the_quiet_period() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(&tmp.path().join("n"));
    cfg.work.idle_only = true;
    cfg.work.idle_busy_pct = 40;
    cfg.work.idle_quiet_secs = 6;
    let node = Node::start(cfg).await.unwrap();
    let idle_paused = || node.pause.is_paused_by(Source::Idle);
    // Whatever the machine did before, it is quiet now.
    wait_for("a quiet machine", Duration::from_secs(60), || !idle_paused()).await;
    let load = Load::start();
    wait_for("the load pauses the node", Duration::from_secs(10), idle_paused).await;
    assert!(node.pause.reason().unwrap().contains("idle-only"), "{:?}", node.pause.reason());
    drop(load);
    let took = wait_for("the node resumes", Duration::from_secs(20), || !idle_paused()).await;
    // Not before the quiet period (less one sampling interval, the load's last sample's age).
    assert!(took >= Duration::from_secs(6) - ifx_node::pause::WATCH_EVERY, "resumed after {took:?}");
    node.stop().await;

    // Someone typing at a terminal (a console or an ssh session): a real pseudo-terminal whose
    // slave side reads what is written to its master side, as a shell reads keystrokes; the
    // kernel then moves the terminal's access time (in 8-second steps). CPU load does not count
    // here (busy over 100% never happens).
    let mut cfg = config(&tmp.path().join("t"));
    cfg.work.idle_only = true;
    cfg.work.idle_busy_pct = 100;
    cfg.work.idle_quiet_secs = 12;
    let node = Node::start(cfg).await.unwrap();
    let idle_paused = || node.pause.is_paused_by(Source::Idle);
    wait_for("no recent terminal input", Duration::from_secs(60), || !idle_paused()).await;
    let pty = nix::pty::openpty(None, None).unwrap();
    let typing = Duration::from_secs(20);
    let typist = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let (mut master, mut slave) = (std::fs::File::from(pty.master), std::fs::File::from(pty.slave));
        let (t0, mut buf) = (Instant::now(), [0u8; 64]);
        while t0.elapsed() < typing {
            master.write_all(b"ls\n").unwrap();
            let n = slave.read(&mut buf).unwrap();
            assert!(n > 0);
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    wait_for("typing pauses the node", Duration::from_secs(10), idle_paused).await;
    assert!(node.pause.reason().unwrap().contains("terminal input"), "{:?}", node.pause.reason());
    typist.await.unwrap();
    // Still paused as the typing ends, 20 s after the terminal opened: the input kept it so
    // (the terminal's opening alone would have let it resume after 12 s).
    assert!(idle_paused(), "resumed while someone was typing");
    let took = wait_for("the node resumes after the typing", Duration::from_secs(30), || !idle_paused()).await;
    // The quiet period runs from the last input the kernel shows, at most 8 s before the last
    // keystroke.
    assert!(took >= Duration::from_secs(12 - 8) - ifx_node::pause::WATCH_EVERY, "resumed after {took:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_hours_pause_a_node_outside_them_and_not_inside() {
    let tmp = tempfile::tempdir().unwrap();
    // The current UTC minute of the day; windows an hour ahead and around now.
    let now_min = (ifx_node::unix_time_us() / 60_000_000 % 1440) as u32;
    let hhmm = |m: u32| format!("{:02}:{:02}", m % 1440 / 60, m % 60);
    let mut outside = config(&tmp.path().join("out"));
    outside.work.hours = format!("{}-{}", hhmm(now_min + 60), hhmm(now_min + 120));
    let mut inside = config(&tmp.path().join("in"));
    inside.work.hours = format!("{}-{}", hhmm(now_min + 1440 - 60), hhmm(now_min + 60));
    // In the operator's time: UTC-02:00 moves the window two hours, so "now" is outside.
    let mut moved = config(&tmp.path().join("moved"));
    moved.work.hours = inside.work.hours.clone();
    moved.work.utc_offset = "-02:00".into();
    let (a, b, c) =
        (Node::start(outside).await.unwrap(), Node::start(inside).await.unwrap(), Node::start(moved).await.unwrap());
    wait_for("the node outside its hours pauses", Duration::from_secs(10), || a.pause.is_paused_by(Source::Schedule))
        .await;
    wait_for("the node with its hours moved pauses", Duration::from_secs(10), || {
        c.pause.is_paused_by(Source::Schedule)
    })
    .await;
    assert!(a.pause.reason().unwrap().contains("outside the work hours"), "{:?}", a.pause.reason());
    assert!(!b.pause.is_paused(), "inside its hours: {:?}", b.pause.reason());
    for n in [a, b, c] {
        n.stop().await;
    }
}
