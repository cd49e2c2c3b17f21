//! Issue #19, the operator's dashboard in a real browser: headless Chromium (installed by
//! scripts/setup.sh) opens the page a worker serves at `/` in a running network of four nodes
//! (a job owner, two workers, a verifier that challenges and seals). Every figure on the page
//! equals the API's JSON, desktop and phone screenshots are taken, the console stays free of
//! errors, and the pause button pauses the node: its status and its heartbeats say so, and a
//! job submitted meanwhile gets no tile from it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions, Tab};
use ifx_node::{Node, NodeConfig};
use ifx_protocols::Role;
use ifx_protocols::api;
use ifx_protocols::settle::{GenesisAlloc, StakeRole, UNITS_PER_IFX};
use serde_json::Value;

fn config(dir: &std::path::Path, role: Role, boot: Option<String>, genesis: &[GenesisAlloc], secs: u64) -> NodeConfig {
    let mut c = NodeConfig::default();
    c.node.data_dir = dir.into();
    c.node.role = role;
    c.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    c.node.api = "127.0.0.1:0".into();
    c.network.id = "dashboard".into();
    c.network.genesis_unix_secs = secs;
    c.network.epoch_secs = 3;
    c.network.heartbeat_interval_ms = 200;
    c.network.genesis = genesis.to_vec();
    c.network.bootnodes = boot.into_iter().collect();
    c.ledger.sync_interval_ms = 300;
    c.por.challenge_interval_ms = 1_000;
    c
}

fn key_of(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    hex::encode(ifx_node::identity::Identity::load_or_create(dir).unwrap().public_key())
}

/// The page's formatting rules (dashboard.js `format`), for the API's values.
fn formatted(fmt: &str, v: &Value) -> String {
    let ifx = |u: u64| format!("{}.{:06} IFX", u / UNITS_PER_IFX, u % UNITS_PER_IFX);
    let list = || v.as_array().cloned().unwrap_or_default();
    match fmt {
        "int" => v.to_string(),
        "ifx" => ifx(v.as_u64().unwrap()),
        "ifx-locked" => {
            ifx(list().iter().map(|x| x["total"].as_u64().unwrap() - x["released"].as_u64().unwrap()).sum())
        }
        "ifx-unbonding" => ifx(list().iter().map(|x| x[0].as_u64().unwrap()).sum()),
        "count" => list().len().to_string(),
        "milli" => {
            let m = v.as_u64().unwrap();
            format!("{}.{:03}", m / 1000, m % 1000)
        }
        "bps" => {
            let b = v.as_u64().unwrap();
            format!("{}.{:02} %", b / 100, b % 100)
        }
        "short" => v.as_str().unwrap().chars().take(16).collect(),
        "uptime" => {
            let s = v.as_u64().unwrap();
            format!("{} h {:02} min", s / 3600, s % 3600 / 60)
        }
        _ => match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        },
    }
}

fn at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |v, k| match v {
        Value::Array(a) => a.get(k.parse::<usize>().ok()?),
        _ => v.get(k),
    })
}

/// What the page reads, fetched from the API.
fn api_json(rt: &tokio::runtime::Runtime, c: &reqwest::Client, addr: &str) -> Value {
    let mut all = serde_json::Map::new();
    for (name, path) in [
        ("status", "status"),
        ("account", "account"),
        ("ledger", "ledger/stats"),
        ("logs", "logs"),
        ("jobs", "jobs"),
        ("fl", "fl"),
        ("estimate", "estimate"),
        ("gov", "gov"),
    ] {
        let v: Value =
            rt.block_on(async { c.get(format!("http://{addr}/{path}")).send().await?.json().await }).unwrap();
        all.insert(name.into(), v);
    }
    Value::Object(all)
}

/// Each bound figure on the page: `(panel, path, format, text)`, and how many refreshes ran.
fn page_fields(tab: &Tab) -> (u64, Vec<(String, String, String, String)>) {
    let js = "JSON.stringify({loaded: Number(document.body.dataset.loaded || 0), fields: \
              [...document.querySelectorAll('[data-f]')].map(e => [e.closest('section') ? e.closest('section').id : 'header', \
              e.dataset.f, e.dataset.fmt || '', e.textContent])})";
    let v = tab.evaluate(js, false).unwrap().value.unwrap();
    let v: Value = serde_json::from_str(v.as_str().unwrap()).unwrap();
    let fields = serde_json::from_value(v["fields"].clone()).unwrap();
    (v["loaded"].as_u64().unwrap(), fields)
}

fn eval_u64(tab: &Tab, js: &str) -> u64 {
    tab.evaluate(js, false).unwrap().value.and_then(|v| v.as_u64()).unwrap_or_else(|| panic!("{js}"))
}

fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A browser whose window is `width` x `height`, and a tab that records console errors,
/// uncaught exceptions and the browser's own error entries (a refused script or style).
fn browser(width: u32, height: u32) -> (Browser, Arc<Tab>, Arc<Mutex<Vec<String>>>) {
    let path = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .map(std::path::PathBuf::from)
        .into_iter()
        .find(|p| p.is_file());
    let b = Browser::new(
        LaunchOptions::default_builder()
            .path(path)
            .sandbox(false)
            .window_size(Some((width, height)))
            .idle_browser_timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
    )
    .expect("chromium is not installed: run scripts/setup.sh");
    let tab = b.new_tab().unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    tab.add_event_listener(Arc::new(move |e: &Event| {
        let line = match e {
            Event::RuntimeExceptionThrown(x) => Some(format!("exception: {:?}", x.params.exception_details)),
            Event::RuntimeConsoleAPICalled(x) if format!("{:?}", x.params.Type) == "Error" => {
                Some(format!("console.error: {:?}", x.params.args))
            }
            Event::LogEntryAdded(x) if format!("{:?}", x.params.entry.level) == "Error" => {
                Some(format!("{:?}: {}", x.params.entry.source, x.params.entry.text))
            }
            _ => None,
        };
        if let Some(l) = line {
            seen.lock().unwrap().push(l);
        }
    }))
    .unwrap();
    tab.enable_runtime().unwrap();
    tab.enable_log().unwrap();
    (b, tab, errors)
}

fn screenshot(tab: &Tab, name: &str) -> image::RgbImage {
    let png = tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true).unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());
    image::load_from_memory(&png).unwrap().to_rgb8()
}

/// Pixels near `#2ca02c`, the chart's liquid pay.
fn green(img: &image::RgbImage) -> usize {
    img.pixels()
        .filter(|p| {
            (p[0] as i32 - 0x2c).abs() < 24 && (p[1] as i32 - 0xa0).abs() < 24 && (p[2] as i32 - 0x2c).abs() < 24
        })
        .count()
}

#[test]
fn the_dashboard_shows_what_the_api_says_and_its_button_pauses_the_node() {
    // As `ifx node` does: the nodes' warnings go to `GET /logs`, the page's last panel.
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let _ = tracing_subscriber::registry().with(ifx_node::logs::Layer).try_init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = ["owner", "me", "other", "verifier"].iter().map(|n| tmp.path().join(n)).collect();
    let worker = |d: &std::path::Path| GenesisAlloc {
        key: key_of(d),
        role: StakeRole::Worker,
        stake: 100 * UNITS_PER_IFX,
        liquid: 50 * UNITS_PER_IFX,
    };
    let genesis = vec![
        worker(&dirs[0]),
        worker(&dirs[1]),
        worker(&dirs[2]),
        GenesisAlloc { key: key_of(&dirs[3]), role: StakeRole::Verifier, stake: 2_000 * UNITS_PER_IFX, liquid: 0 },
    ];
    let secs = ifx_node::unix_time_us() / 1_000_000;
    let owner = rt.block_on(Node::start(config(&dirs[0], Role::Worker, None, &genesis, secs))).unwrap();
    let boot = format!("{}/p2p/{}", owner.listen_addrs[0], owner.peer_id);
    let start = |d: &std::path::Path, role| {
        rt.block_on(Node::start(config(d, role, Some(boot.clone()), &genesis, secs))).unwrap()
    };
    let me = start(&dirs[1], Role::Worker);
    let other = start(&dirs[2], Role::Worker);
    let verifier = start(&dirs[3], Role::Verifier);
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let addr = me.api_addr.unwrap().to_string();
    let token = |d: &std::path::Path| std::fs::read_to_string(d.join("api.token")).unwrap().trim().to_owned();
    let submit = |node: &Node, dir: &std::path::Path| -> String {
        let job = serde_json::json!({
            "scene": "cornell", "width": 32, "height": 32, "spp": 1, "max_bounces": 1, "tile": 16, "unpaid": true
        });
        let r = rt.block_on(async {
            c.post(format!("http://{}/jobs", node.api_addr.unwrap())).bearer_auth(token(dir)).json(&job).send().await
        });
        let a: api::JobAccepted = rt.block_on(r.unwrap().json()).unwrap();
        a.job_id
    };
    let job_done = |node: &Node, id: &str| -> api::JobStatus {
        let t0 = Instant::now();
        loop {
            let j: api::JobStatus = rt
                .block_on(async {
                    c.get(format!("http://{}/jobs/{id}", node.api_addr.unwrap())).send().await?.json().await
                })
                .unwrap();
            if j.state != api::RunState::Running {
                return j;
            }
            assert!(t0.elapsed() < Duration::from_secs(90), "the job did not finish: {j:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    // The node has a history to show: sealed epochs that paid it, verdicts about it, a job.
    let my_job = submit(&me, &dirs[1]);
    assert_eq!(job_done(&me, &my_job).state, api::RunState::Done);
    wait("two paid epochs and passed challenges", Duration::from_secs(90), || {
        let a = &api_json(&rt, &c, &addr)["account"];
        let paid = a["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["status"] == "sealed" && e["liquid"].as_u64() > Some(0));
        paid.count() >= 2 && a["por"]["passed"].as_u64() > Some(0)
    });

    // Desktop: every bound figure equals the API's JSON (read again until one refresh of the
    // page and one read of the API agree: epochs, verdicts and uptime move on meanwhile).
    let (_desktop, tab, errors) = browser(1280, 1700);
    tab.navigate_to(&format!("http://{addr}/#token={}", token(&dirs[1]))).unwrap();
    tab.wait_until_navigated().unwrap();
    wait("the page's first refresh", Duration::from_secs(20), || page_fields(&tab).0 > 0);
    assert!(!tab.get_url().contains("token="), "the token left the address bar: {}", tab.get_url());
    let mut last = Vec::new();
    let mut agreed = None;
    for _ in 0..40 {
        let (_, fields) = page_fields(&tab);
        let json = api_json(&rt, &c, &addr);
        last = fields
            .iter()
            .filter_map(|(panel, path, fmt, text)| {
                let want = at(&json, path).map_or("-".to_owned(), |v| formatted(fmt, v));
                (want != *text).then(|| format!("{panel} {path}: page {text:?}, API {want:?}"))
            })
            .collect();
        if last.is_empty() {
            agreed = Some((fields, json));
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let (fields, json) = agreed.unwrap_or_else(|| panic!("the page never matched the API: {last:#?}"));
    // Every panel shows figures, and they are the node's real ones.
    for panel in ["p-node", "p-network", "p-earnings", "p-stake", "p-estimate", "p-por", "p-work", "p-ledger", "p-logs"]
    {
        assert!(fields.iter().any(|f| f.0 == panel), "panel {panel} shows no figure from the API");
    }
    assert!(fields.iter().any(|f| f.1.starts_with("account.epochs.")), "no epoch rows");
    assert!(fields.iter().any(|f| f.1 == "jobs.0.job_id"), "no job row");
    assert_eq!(json["status"]["peer_id"], me.peer_id.to_string());
    assert!(json["account"]["account"]["earned"].as_u64() > Some(0));
    // Bonded, up and benchmarked: the estimate pays it, on the verifiers' measurement.
    assert!(json["estimate"]["total"].as_u64() > Some(0), "{}", json["estimate"]);
    assert!(json["estimate"]["assumptions"][0].as_str().unwrap().contains("median benchmark"), "{}", json["estimate"]);
    assert_eq!(
        eval_u64(&tab, "document.querySelectorAll('#assumptions li').length"),
        json["estimate"]["assumptions"].as_array().unwrap().len() as u64
    );
    assert!(json["account"]["por"]["passed"].as_u64() > Some(0));
    let sealed = json["account"]["epochs"].as_array().unwrap().iter().filter(|e| e["status"] == "sealed").count();
    assert_eq!(eval_u64(&tab, "document.querySelectorAll('#chart rect.liquid').length") as usize, sealed.min(24));
    let shot = screenshot(&tab, "dashboard-desktop.png");
    assert_eq!(shot.width(), 1280);
    assert!(green(&shot) > 500, "the earnings chart is not drawn: {} green pixels", green(&shot));

    // The pause button: the node's status and heartbeats say paused, and a job submitted now
    // gets no tile from it.
    tab.find_element("#pause").unwrap().click().unwrap();
    wait("the node pauses", Duration::from_secs(10), || !api_json(&rt, &c, &addr)["status"]["paused"].is_null());
    let heard_paused = || {
        let p: api::Peers = rt
            .block_on(async {
                c.get(format!("http://{}/peers", verifier.api_addr.unwrap())).send().await?.json().await
            })
            .unwrap();
        p.heartbeats.iter().any(|h| h.peer_id == me.peer_id.to_string() && h.paused)
    };
    wait("the verifier hears the pause", Duration::from_secs(10), heard_paused);
    wait("the page says paused", Duration::from_secs(10), || {
        tab.find_element("#state").unwrap().get_inner_text().unwrap().starts_with("paused")
    });
    assert_eq!(tab.find_element("#pause").unwrap().get_inner_text().unwrap(), "Resume work");
    let j = job_done(&owner, &submit(&owner, &dirs[0]));
    assert_eq!(j.state, api::RunState::Done);
    assert_eq!(j.tiles_by_worker.get(&me.peer_id.to_string()), None, "a paused node took tiles: {j:?}");
    assert_eq!(j.tiles_by_worker.get(&other.peer_id.to_string()).copied(), Some(j.tiles_done as u64));
    tab.find_element("#pause").unwrap().click().unwrap();
    wait("the node resumes", Duration::from_secs(10), || api_json(&rt, &c, &addr)["status"]["paused"].is_null());
    wait("the page says working", Duration::from_secs(10), || {
        tab.find_element("#state").unwrap().get_inner_text().unwrap() == "working"
    });

    // Stake from the page: a bond of 1.5 IFX, written with the token, applied once sealed.
    let bonded = |j: &Value| j["account"]["account"]["bonded"].as_u64().unwrap();
    let before = bonded(&api_json(&rt, &c, &addr));
    // From the keyboard (focus, type, Enter): the page refreshes every 2 s and its layout may
    // move under a click aimed at coordinates.
    let keyboard = |selector: &str, text: &str| {
        let e = tab.find_element(selector).unwrap();
        e.call_js_fn("function() { this.focus(); if (this.select) this.select(); }", vec![], false).unwrap();
        if !text.is_empty() {
            tab.type_str(text).unwrap();
        }
        tab.press_key("Enter").unwrap();
    };
    keyboard("#stake-amount", "1.5");
    wait("the page says the bond was written", Duration::from_secs(10), || {
        tab.find_element("#msg").unwrap().get_inner_text().unwrap().starts_with("Bond of 1.500000 IFX written")
    });
    wait("the bond applies", Duration::from_secs(60), || bonded(&api_json(&rt, &c, &addr)) == before + 1_500_000);
    // A bad amount is refused on the page and writes nothing.
    keyboard("#stake-amount", "1.2345678");
    wait("the page refuses the amount", Duration::from_secs(5), || {
        tab.find_element("#msg").unwrap().get_inner_text().unwrap().starts_with("The amount:")
    });
    // Votes: the owner proposes through its API; the page lists the proposal once it is sealed,
    // and its Yes button votes with this node's key.
    let epoch = api_json(&rt, &c, &addr)["status"]["epoch"].as_u64().unwrap();
    let proposal =
        serde_json::json!({"param": "slash_bps", "value": 2500, "from_epoch": epoch + 60, "note": "dashboard test"});
    let r = rt
        .block_on(async {
            c.post(format!("http://{}/gov/proposals", owner.api_addr.unwrap()))
                .bearer_auth(token(&dirs[0]))
                .json(&proposal)
                .send()
                .await
        })
        .unwrap();
    assert!(r.status().is_success(), "{:?}", rt.block_on(r.text()));
    wait("the page lists the proposal", Duration::from_secs(60), || {
        eval_u64(&tab, "document.querySelectorAll('#proposals button.vote').length") == 2
    });
    keyboard("#proposals button.vote[data-yes=true]", "");
    let my_key = api_json(&rt, &c, &addr)["account"]["key"].as_str().unwrap().to_owned();
    wait("the vote counts", Duration::from_secs(60), || {
        api_json(&rt, &c, &addr)["gov"]["open"][0]["votes"][&my_key] == Value::Bool(true)
    });
    wait("the page shows the vote", Duration::from_secs(10), || {
        // The table is rebuilt at every refresh: a query may land between two builds.
        tab.find_element("#proposals tbody tr td:last-child").and_then(|e| e.get_inner_text()).is_ok_and(|t| t == "yes")
    });
    screenshot(&tab, "dashboard-voted.png");

    // A phone: one column, nothing wider than the screen; without the token the button asks
    // for it and writes nothing.
    let (_phone, small, phone_errors) = browser(390, 844);
    small.navigate_to(&format!("http://{addr}/")).unwrap();
    small.wait_until_navigated().unwrap();
    wait("the phone page's first refresh", Duration::from_secs(20), || page_fields(&small).0 > 0);
    let overflow = eval_u64(&small, "Math.max(0, document.documentElement.scrollWidth - window.innerWidth)");
    assert_eq!(overflow, 0, "the page is wider than a phone");
    screenshot(&small, "dashboard-phone.png");
    small.find_element("#pause").unwrap().click().unwrap();
    wait("the token form", Duration::from_secs(5), || {
        eval_u64(&small, "Number(!document.getElementById('token-form').hidden)") == 1
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(api_json(&rt, &c, &addr)["status"]["paused"].is_null(), "a click without the token paused the node");

    let errors: Vec<String> =
        errors.lock().unwrap().iter().chain(phone_errors.lock().unwrap().iter()).cloned().collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    for n in [owner, me, other, verifier] {
        rt.block_on(n.stop());
    }
}
