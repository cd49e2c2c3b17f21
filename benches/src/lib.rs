//! Shared fixtures for the criterion benchmarks.

use std::path::Path;

/// Two real nodes on 127.0.0.1 in `dir` (network `id`), the second booted from the first and
/// connected to it, running on `rt`.
pub fn two_nodes(rt: &tokio::runtime::Runtime, dir: &Path, id: &str) -> (ifx_node::Node, ifx_node::Node) {
    rt.block_on(async {
        let cfg = |dir: &Path, boot: Option<String>| {
            let mut c = ifx_node::NodeConfig::default();
            c.node.data_dir = dir.into();
            c.node.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
            c.node.api = String::new();
            c.node.log = "warn".into();
            c.network.id = id.into();
            c.network.bootnodes = boot.into_iter().collect();
            c
        };
        let a = ifx_node::Node::start(cfg(&dir.join("a"), None)).await.expect("node a starts");
        let boot = format!("{}/p2p/{}", a.listen_addrs[0], a.peer_id);
        let b = ifx_node::Node::start(cfg(&dir.join("b"), Some(boot))).await.expect("node b starts");
        while a.net.snapshot().await.map(|s| s.connected.is_empty()).unwrap_or(true)
            || b.net.snapshot().await.map(|s| s.connected.is_empty()).unwrap_or(true)
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        (a, b)
    })
}
