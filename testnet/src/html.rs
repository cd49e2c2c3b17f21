//! The run as one self-contained HTML page (no scripts, no network): the verdict, and SVG charts
//! of heartbeat latency, ledger convergence over time, FL accuracy per round and payouts per
//! node, plus the rendered image inline. A person opens it in a browser.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;

use crate::report::Report;
use crate::watch::RootPoint;

const W: f64 = 560.0;
const H: f64 = 220.0;
const PAD_L: f64 = 56.0;
const PAD_B: f64 = 30.0;
const PAD_T: f64 = 26.0;
const PAD_R: f64 = 14.0;
/// Stroke and fill colours of the charts (the screenshot test looks for them).
pub const LINE_COLOUR: &str = "#1f77b4";
pub const BAR_COLOUR: &str = "#2ca02c";
pub const FAULT_COLOUR: &str = "#d62728";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The SVG opening: background, title, axes, min/max labels of y (and of x when `x_ticks`).
fn frame(
    title: &str,
    x_label: &str,
    y_label: &str,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    x_ticks: bool,
) -> String {
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" class="chart">
<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>
<text x="{PAD_L}" y="16" font-size="13" font-weight="bold">{}</text>
<line x1="{PAD_L}" y1="{}" x2="{}" y2="{}" stroke="#333"/>
<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{}" stroke="#333"/>
"##,
        esc(title),
        H - PAD_B,
        W - PAD_R,
        H - PAD_B,
        H - PAD_B
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>
<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>
<text x="{PAD_L}" y="{}" font-size="10">{}</text>
<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>
<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>
<text x="12" y="{}" font-size="10" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>
"##,
        PAD_L - 4.0,
        H - PAD_B,
        num(y0),
        PAD_L - 4.0,
        PAD_T + 8.0,
        num(y1),
        H - PAD_B + 14.0,
        if x_ticks { num(x0) } else { String::new() },
        W - PAD_R,
        H - PAD_B + 14.0,
        if x_ticks { num(x1) } else { String::new() },
        (PAD_L + W - PAD_R) / 2.0,
        H - 4.0,
        esc(x_label),
        (PAD_T + H - PAD_B) / 2.0,
        (PAD_T + H - PAD_B) / 2.0,
        esc(y_label)
    );
    s
}

fn num(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{v:.2e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn scale(v: f64, (a, b): (f64, f64), (p, q): (f64, f64)) -> f64 {
    if b > a { p + (v - a) / (b - a) * (q - p) } else { (p + q) / 2.0 }
}

fn range(vals: impl Iterator<Item = f64>, floor_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if floor_zero {
        lo = lo.min(0.0);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    (lo, hi)
}

/// A line through `(x, y)` points, with vertical markers at `marks` (x, label).
fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    pts: &[(f64, f64)],
    marks: &[(f64, String)],
    y_floor_zero: bool,
) -> String {
    let xr = range(pts.iter().map(|p| p.0).chain(marks.iter().map(|m| m.0)), true);
    let yr = range(pts.iter().map(|p| p.1), y_floor_zero);
    let mut s = frame(title, x_label, y_label, xr, yr, true);
    let px = |x: f64| scale(x, xr, (PAD_L, W - PAD_R));
    let py = |y: f64| scale(y, yr, (H - PAD_B, PAD_T));
    for (x, label) in marks {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{PAD_T}" x2="{0:.1}" y2="{1}" stroke="{FAULT_COLOUR}" stroke-dasharray="4 3"/><text x="{2:.1}" y="{3}" font-size="9" fill="{FAULT_COLOUR}">{4}</text>"##,
            px(*x),
            H - PAD_B,
            px(*x) + 2.0,
            PAD_T + 10.0,
            esc(label)
        );
    }
    let path: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
    if !path.is_empty() {
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{LINE_COLOUR}" stroke-width="2.5" points="{}"/>"#,
            path.join(" ")
        );
    } else {
        let _ = write!(s, r#"<text x="{}" y="{}" font-size="12">no data</text>"#, W / 2.0 - 20.0, H / 2.0);
    }
    s + "</svg>\n"
}

/// Bars with labels under them.
fn bar_chart(title: &str, y_label: &str, bars: &[(String, f64)]) -> String {
    let yr = range(bars.iter().map(|b| b.1), true);
    let mut s = frame(title, "", y_label, (0.0, bars.len() as f64), yr, false);
    let slot = (W - PAD_L - PAD_R) / bars.len().max(1) as f64;
    for (i, (label, v)) in bars.iter().enumerate() {
        let x = PAD_L + i as f64 * slot + slot * 0.15;
        let y = scale(*v, yr, (H - PAD_B, PAD_T));
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{BAR_COLOUR}"/><text x="{:.1}" y="{}" font-size="9" text-anchor="middle">{}</text>"#,
            slot * 0.7,
            (H - PAD_B - y).max(0.0),
            x + slot * 0.35,
            H - PAD_B + 24.0,
            esc(label)
        );
    }
    if bars.is_empty() {
        let _ = write!(s, r#"<text x="{}" y="{}" font-size="12">no data</text>"#, W / 2.0 - 20.0, H / 2.0);
    }
    s + "</svg>\n"
}

/// Writes the page for `report` to `path`.
pub fn write(report: &Report, latency_us: &[u64], timeline: &[RootPoint], path: &Path) -> std::io::Result<()> {
    std::fs::write(path, page(report, latency_us, timeline))
}

/// The page as a string.
pub fn page(r: &Report, latency_us: &[u64], timeline: &[RootPoint]) -> String {
    let verdict = if r.ok { "OK" } else { "FAILED" };
    let mut h = format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ifx testnet {id}: {verdict}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; background: #f6f6f6; }}
h1 .ok {{ color: #2ca02c; }} h1 .failed {{ color: #d62728; }}
.grid {{ display: grid; grid-template-columns: repeat(2, {W}px); gap: 16px; }}
.card {{ background: #fff; border: 1px solid #ddd; padding: 8px; }}
table {{ border-collapse: collapse; background: #fff; }} td, th {{ border: 1px solid #ddd; padding: 3px 8px; font-size: 13px; }}
li.fail {{ color: #d62728; }}
</style></head><body>
<h1>ifx testnet {id}: <span class="{cls}">{verdict}</span></h1>
<p>{n} nodes, {dur} s run ({el:.1} s in all); discovery {disc}; heartbeat latency p50 {p50} ms, p99 {p99} ms; base dir <code>{base}</code></p>
"##,
        id = esc(&r.network_id),
        cls = verdict.to_lowercase(),
        n = r.nodes.len(),
        dur = r.duration_secs,
        el = r.elapsed_secs,
        disc = r.discovery_secs.map(|d| format!("{d:.2} s")).unwrap_or_else(|| "never".into()),
        p50 = r.heartbeat_latency_ms.p50.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
        p99 = r.heartbeat_latency_ms.p99.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
        base = esc(&r.base_dir),
    );
    h += "<h2>Verdict</h2><ul>";
    let checks = [
        ("ledger roots converge on all live nodes", r.ledger.converged),
        ("settlement roots agree for every sealed epoch", r.settlement.agreed),
        ("every cheater caught", r.por.caught == r.por.cheaters),
        ("no honest node slashed", r.settlement.honest_slashed.is_empty()),
        ("the render job's image is assembled", r.render.as_ref().is_none_or(|x| x.ok)),
        ("FL reaches its target, poisoners caught", r.fl.as_ref().is_none_or(|f| f.ok)),
        ("the inference job is served, its cheaters caught with evidence", r.infer.as_ref().is_none_or(|i| i.ok)),
        ("restarted nodes caught up", r.restarts.iter().all(|x| x.ok)),
        ("partitions healed and converged", r.partitions.iter().all(|x| x.ok)),
    ];
    for (what, ok) in checks {
        let _ = write!(
            h,
            r#"<li class="{}">{} {}</li>"#,
            if ok { "pass" } else { "fail" },
            if ok { "&#10003;" } else { "&#10007;" },
            what
        );
    }
    h += "</ul>";
    if !r.failures.is_empty() {
        h += "<h3>Failures</h3><ul>";
        for f in &r.failures {
            let _ = write!(h, r#"<li class="fail">{}</li>"#, esc(f));
        }
        h += "</ul>";
    }
    // Fault markers shared by the time charts.
    let mut marks: Vec<(f64, String)> =
        r.faults.iter().map(|f| (f.at_secs, format!("{} {}", f.kind, f.node))).collect();
    for p in &r.partitions {
        if let Some(t) = p.healed_at_secs {
            marks.push((t, "heal".into()));
        }
    }
    h += r#"<h2>Charts</h2><div class="grid">"#;
    // Heartbeat latency: a histogram in 20 bins.
    let ms: Vec<f64> = latency_us.iter().map(|u| *u as f64 / 1000.0).collect();
    let (lo, hi) = range(ms.iter().copied(), true);
    let bins = 20usize;
    let mut counts = vec![0usize; bins];
    for v in &ms {
        let b = (((v - lo) / (hi - lo)) * bins as f64).floor() as usize;
        counts[b.min(bins - 1)] += 1;
    }
    let bars: Vec<(String, f64)> = counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                if i % 4 == 0 { format!("{:.1}", lo + (hi - lo) * i as f64 / bins as f64) } else { String::new() },
                *c as f64,
            )
        })
        .collect();
    h += &card(&bar_chart("Heartbeat latency (ms): samples per bin", "samples", &bars));
    let roots: Vec<(f64, f64)> = timeline.iter().map(|(t, n, _)| (*t, *n as f64)).collect();
    h += &card(&line_chart(
        "Ledger convergence: distinct roots among live nodes",
        "seconds into the run",
        "roots",
        &roots,
        &marks,
        true,
    ));
    let entries: Vec<(f64, f64)> = timeline.iter().map(|(t, _, e)| (*t, *e as f64)).collect();
    h += &card(&line_chart(
        "Ledger entries (most held by a node)",
        "seconds into the run",
        "entries",
        &entries,
        &marks,
        true,
    ));
    if let Some(f) = &r.fl {
        let pts: Vec<(f64, f64)> = f.accuracy_by_round.iter().enumerate().map(|(i, a)| (i as f64 + 1.0, *a)).collect();
        h += &card(&line_chart(
            &format!("FL test accuracy per round ({}; target {})", f.aggregator, f.target),
            "round",
            "accuracy",
            &pts,
            &[],
            false,
        ));
    }
    let index_of = |peer: &str| r.nodes.iter().find(|n| n.peer_id == peer).map(|n| n.index);
    let mut pay: Vec<(usize, f64)> = r
        .settlement
        .payouts
        .iter()
        .filter_map(|(peer, units)| index_of(peer).map(|i| (i, *units as f64 / 1e6)))
        .collect();
    pay.sort_by_key(|(i, _)| *i);
    let bars: Vec<(String, f64)> = pay.into_iter().map(|(i, v)| (format!("node {i}"), v)).collect();
    h += &card(&bar_chart(
        &format!("Payouts per node (IFX, {} sealed epochs)", r.settlement.sealed_epochs.len()),
        "IFX",
        &bars,
    ));
    if let Some(png) = r.render.as_ref().and_then(|x| x.png.as_ref()).and_then(|p| std::fs::read(p).ok()) {
        let _ = write!(
            h,
            r#"<div class="card"><b>The rendered image</b><br><img id="render" alt="rendered image" width="256" src="data:image/png;base64,{}"></div>"#,
            base64::engine::general_purpose::STANDARD.encode(png)
        );
    }
    h += "</div><h2>Nodes</h2><table><tr><th>#</th><th>role</th><th>peer id</th><th>alive</th><th>ledger root</th><th>entries</th><th>stop</th></tr>";
    for n in &r.nodes {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            n.index,
            n.role,
            esc(&n.peer_id),
            n.alive,
            esc(n.ledger_root.get(..16).unwrap_or(&n.ledger_root)),
            n.ledger_entries,
            esc(&n.stop)
        );
    }
    h += "</table>";
    if let Some(rr) = &r.reachability {
        h += &reachability(rr);
    }
    h += "</body></html>\n";
    h
}

/// The reachability section of a run in network namespaces: each node's verdict, a matrix of
/// how every worker pair connected, the link measurements.
fn reachability(r: &crate::report::reach::ReachSection) -> String {
    let mut h = String::from(
        "<h2 id=\"reachability\">Reachability</h2><table><tr><th>#</th><th>where</th><th>address</th><th>AutoNAT</th>\
         <th>DHT</th><th>relays held</th><th>relays lost</th><th>hole punches ok / failed</th></tr>",
    );
    for n in &r.nodes {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td></tr>",
            n.index,
            esc(&n.placement),
            esc(&n.ip),
            esc(&n.nat_status),
            esc(&n.dht_mode),
            n.relays,
            n.relays_lost,
            n.hole_punches_ok,
            n.hole_punches_failed
        );
    }
    h += "</table>";
    // A matrix of worker pairs: the lower index dialled; D direct, H hole-punched, R relayed, x none.
    let mut idx: Vec<usize> = r.pairs.iter().flat_map(|p| [p.from, p.to]).collect();
    idx.sort_unstable();
    idx.dedup();
    let _ = write!(
        h,
        "<p>{} of {} worker pairs connected; {} of {} pairs behind different cone NATs hole-punched \
         (D direct, H hole-punched, R relayed, x not connected).</p><table id=\"pairs\"><tr><th></th>",
        r.pairs_connected, r.pairs_total, r.punched, r.punch_pairs
    );
    for j in &idx {
        let _ = write!(h, "<th>{j}</th>");
    }
    h += "</tr>";
    for i in &idx {
        let _ = write!(h, "<tr><th>{i}</th>");
        for j in &idx {
            let p = r.pairs.iter().find(|p| (p.from, p.to) == (*i, *j) || (p.from, p.to) == (*j, *i));
            let cell = match p {
                None => "",
                Some(p) if !p.connected => "x",
                Some(p) => match p.path {
                    Some(ifx_protocols::api::LinkPath::HolePunched) => "H",
                    Some(ifx_protocols::api::LinkPath::Relayed) => "R",
                    _ => "D",
                },
            };
            let _ = write!(h, "<td>{cell}</td>");
        }
        h += "</tr>";
    }
    h += "</table><table><tr><th>link</th><th>path</th><th>rtt ms</th><th>up Mbit/s</th><th>down Mbit/s</th><th>cap Mbit/s</th></tr>";
    for l in &r.links {
        let _ = write!(
            h,
            "<tr><td>{} &rarr; {}</td><td>{}</td><td>{:.2}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>",
            l.from,
            l.to,
            l.path.map_or("-", |p| p.name()),
            l.rtt_ms,
            l.up_kbit as f64 / 1000.0,
            l.down_kbit as f64 / 1000.0,
            l.cap_kbit.map_or("-".to_string(), |c| (c / 1000).to_string())
        );
    }
    h += "</table><table id=\"attested\"><tr><th>worker</th><th>where</th><th>verifiers</th><th>attested path</th>\
          <th>rtt ms</th><th>to it Mbit/s</th><th>from it Mbit/s</th><th>cap Mbit/s</th><th>tiles at a time</th></tr>";
    for a in &r.attested {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
            a.index,
            esc(&a.placement),
            a.verifiers,
            a.path.map_or("-", |p| p.name()),
            a.rtt_ms,
            a.to_worker_kbit as f64 / 1000.0,
            a.from_worker_kbit as f64 / 1000.0,
            a.cap_kbit.map_or("-".to_string(), |c| (c / 1000).to_string()),
            if a.one_at_a_time { 1 } else { 2 }
        );
    }
    h += "</table>";
    for leak in &r.private_addr_leaks {
        let _ = write!(h, "<p>private address in a routing table: {}</p>", esc(leak));
    }
    h
}

fn card(svg: &str) -> String {
    format!("<div class=\"card\">{svg}</div>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_text_and_survive_empty_data() {
        let s = line_chart("a <b>", "x", "y", &[], &[(1.0, "kill <3>".into())], true);
        assert!(s.contains("a &lt;b&gt;") && s.contains("kill &lt;3&gt;") && s.contains("no data"));
        let s = bar_chart("t", "y", &[("n".into(), 0.0)]);
        assert!(s.contains(BAR_COLOUR));
        let s = line_chart("t", "x", "y", &[(0.0, 1.0), (1.0, 1.0)], &[], false);
        assert!(s.contains("polyline"));
    }
}
