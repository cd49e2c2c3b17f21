//! Probes of a run in network namespaces: every worker pair dials, capped links are measured;
//! the report's `reachability` section is built from what the nodes answer.

use std::time::Duration;

use crate::launch::Testnet;
use crate::watch::get;

/// How long after the dials the paths are read again: DCUtR upgrades a relayed connection in
/// about one round trip through the relay and one simultaneous open.
const PUNCH_WAIT: Duration = Duration::from_secs(8);

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
        section.links.push(measure_link(net, 0, to).await);
    }
    // Requests over a relayed connection: the first pair that stayed relayed moves 2 MiB each
    // way through its relay (what a job owner's tiles to a worker behind a symmetric NAT do).
    if let Some(p) = section.pairs.iter().find(|p| p.path == Some(ifx_protocols::api::LinkPath::Relayed)) {
        let (from, to) = (p.from, p.to);
        section.links.push(measure_link(net, from, to).await);
    }
    Some(section)
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
