//! Probes of a run in network namespaces: every worker pair dials, capped links are measured;
//! the report's `reachability` section is built from what the nodes answer.

use std::time::Duration;

use crate::launch::Testnet;
use crate::watch::get;

/// How long after the dials the paths are read again: DCUtR upgrades a relayed connection in
/// about one round trip through the relay and one simultaneous open.
const PUNCH_WAIT: Duration = Duration::from_secs(8);

/// How long a low reading waits before it is taken again: a verifier's measurement of the same
/// worker that overlapped it (4 MiB, under 2 s at 20 Mbit/s) is over by then. A measurement is
/// four link requests and a node answers a peer's burst of 8 (`network::rate`), so the second
/// needs no refill.
const REMEASURE_WAIT: Duration = Duration::from_secs(4);

/// Dials between every pair of running workers (the lower index dials), then reads each node's
/// `/net`: the reachability section of a run in network namespaces.
pub(crate) async fn probe_reachability(net: &Testnet) -> Option<crate::report::reach::ReachSection> {
    use ifx_protocols::api::{DialOutcome, NetSnapshot};
    let ns = net.netns.as_ref()?;
    let workers: Vec<usize> = net
        .nodes
        .iter()
        .filter(|n| n.role == "worker" && n.child.is_some() && n.api.is_some())
        .map(|n| n.index)
        .collect();
    let mut pairs = Vec::new();
    for (k, &i) in workers.iter().enumerate() {
        for &j in &workers[k + 1..] {
            pairs.push((i, j));
        }
    }
    let dial = |i: usize, j: usize| {
        let client = net.client.clone();
        let api = net.nodes[i].api;
        let token = net.nodes[i].api_token();
        let peer = net.nodes[j].peer_id.clone();
        async move {
            let failed = |e: String| DialOutcome { connected: false, path: None, addr: None, error: Some(e), ms: 0 };
            let Some(api) = api else { return (i, j, failed("no API".into())) };
            let body = serde_json::json!({ "peer": peer });
            let out = crate::watch::post(&client, api, &token, "net/dial", &body, Duration::from_secs(30))
                .await
                .unwrap_or_else(failed);
            (i, j, out)
        }
    };
    use futures::StreamExt;
    let outcomes: Vec<(usize, usize, DialOutcome)> =
        futures::stream::iter(pairs).map(|(i, j)| dial(i, j)).buffer_unordered(4).collect().await;
    tokio::time::sleep(PUNCH_WAIT).await;
    let nets: Vec<Option<NetSnapshot>> = futures::future::join_all(net.nodes.iter().map(|n| {
        let client = net.client.clone();
        let api = n.api.filter(|_| n.child.is_some());
        async move { get::<NetSnapshot>(&client, api?, "peers").await.ok() }
    }))
    .await;
    let mut dials = Vec::new();
    for (i, j, d) in outcomes {
        let later = nets[i]
            .as_ref()
            .and_then(|n| n.connected.iter().find(|c| c.peer_id == net.nodes[j].peer_id).map(|c| c.path));
        dials.push((i, j, d, later));
    }
    dials.sort_by_key(|(i, j, ..)| (*i, *j));
    let mut section = crate::report::reach::ReachSection::build(&ns.placements, &nets, dials);
    // Capped links, one at a time (they would share node 0's link), and the first uncapped
    // worker for comparison.
    let uncapped = workers.iter().copied().find(|&i| i > 0 && ns.placements[i].cap_mbit.is_none());
    let targets: Vec<usize> =
        (1..net.nodes.len()).filter(|&i| ns.placements[i].cap_mbit.is_some() || Some(i) == uncapped).collect();
    for to in targets {
        let mut link = measure_link(net, 0, to).await;
        // A capped link is shared: the verifiers measure the same worker (2 MiB each way,
        // every 20 s or more) and the run's traffic goes on. A link cannot beat its cap, so
        // a reading under it is measured again once such a measurement is over, and the better
        // reading counts (a 20 Mbit/s link read 9.2 while a verifier probed it).
        if link.cap_kbit.is_some_and(|cap| link.up_kbit.min(link.down_kbit) * 10 < cap * 8) {
            tokio::time::sleep(REMEASURE_WAIT).await;
            let again = measure_link(net, 0, to).await;
            if again.error.is_none() && again.up_kbit.min(again.down_kbit) > link.up_kbit.min(link.down_kbit) {
                link = again;
            }
        }
        section.links.push(link);
    }
    // Requests over a relayed connection: the first pair that stayed relayed moves 2 MiB each
    // way through its relay (what a job owner's tiles to a worker behind a symmetric NAT do).
    if let Some(p) = section.pairs.iter().find(|p| p.path == Some(ifx_protocols::api::LinkPath::Relayed)) {
        let (from, to) = (p.from, p.to);
        section.links.push(measure_link(net, from, to).await);
    }
    section.attested = attested_links(net, &workers).await;
    Some(section)
}

/// Each worker's attested link as node 0 reads it from its ledger (`GET /peers`), beside the
/// path the verifiers' and the worker's placements allow and the worker's cap.
async fn attested_links(net: &Testnet, workers: &[usize]) -> Vec<crate::report::reach::AttestedRow> {
    use crate::report::reach::{AttestedRow, class, path_of, placement_name};
    let Some(ns) = net.netns.as_ref() else { return Vec::new() };
    let peers = match net.nodes[0].api {
        Some(api) => get::<ifx_protocols::api::Peers>(&net.client, api, "peers").await.ok(),
        None => None,
    };
    let links = peers.map(|p| p.links).unwrap_or_default();
    let verifiers: Vec<usize> = net.nodes.iter().filter(|n| n.role == "verifier").map(|n| n.index).collect();
    workers
        .iter()
        .map(|&i| {
            let p = &ns.placements[i];
            let classes: std::collections::BTreeSet<&str> =
                verifiers.iter().map(|&v| class(&ns.placements[v], p)).collect();
            let l = links.get(&net.nodes[i].peer_id);
            AttestedRow {
                index: i,
                placement: placement_name(p),
                cap_kbit: p.cap_mbit.map(|m| m as u64 * 1000),
                verifiers: l.map_or(0, |l| l.verifiers),
                path: l.map(|l| l.path),
                expected_path: (classes.len() == 1).then(|| classes.first().map(|c| path_of(c))).flatten(),
                rtt_ms: l.map_or(0.0, |l| l.rtt_us as f64 / 1000.0),
                to_worker_kbit: l.map_or(0, |l| l.to_worker_kbit),
                from_worker_kbit: l.map_or(0, |l| l.from_worker_kbit),
                one_at_a_time: false,
            }
        })
        .collect()
}

/// Node `from` measures its link to node `to` (`POST /net/measure`).
async fn measure_link(net: &Testnet, from: usize, to: usize) -> crate::report::reach::LinkReport {
    use ifx_protocols::api::LinkMeasurement;
    let cap_kbit = net.netns.as_ref().and_then(|ns| ns.placements[to].cap_mbit).map(|m| m as u64 * 1000);
    let mut out = crate::report::reach::LinkReport {
        from,
        to,
        cap_kbit,
        path: None,
        rtt_ms: 0.0,
        up_kbit: 0,
        down_kbit: 0,
        error: None,
    };
    let Some(api) = net.nodes[from].api else {
        out.error = Some("no API".into());
        return out;
    };
    let body = serde_json::json!({ "peer": net.nodes[to].peer_id });
    let token = net.nodes[from].api_token();
    match crate::watch::post::<LinkMeasurement>(&net.client, api, &token, "net/measure", &body, Duration::from_secs(60))
        .await
    {
        Ok(m) => {
            out.path = m.path;
            out.rtt_ms = m.rtt_us as f64 / 1000.0;
            out.up_kbit = m.up_kbit;
            out.down_kbit = m.down_kbit;
        }
        Err(e) => out.error = Some(e),
    }
    out
}
