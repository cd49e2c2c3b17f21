//! The report as a short human summary on stdout.

use std::path::Path;

use super::{Report, attacks};

impl Report {
    /// A short human summary on stdout.
    pub fn print_summary(&self, path: &Path) {
        let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        println!(
            "testnet {}: {} nodes, {} alive, discovery {} s, heartbeat latency p50 {} ms p99 {} ms",
            self.network_id,
            self.nodes.len(),
            self.nodes.iter().filter(|n| n.alive).count(),
            f(self.discovery_secs),
            f(self.heartbeat_latency_ms.p50),
            f(self.heartbeat_latency_ms.p99),
        );
        for n in &self.nodes {
            println!(
                "  node {:>2} {:<8} {} alive={} peers_known={} heartbeats={} stop={}",
                n.index, n.role, n.peer_id, n.alive, n.peers_known, n.heartbeats_received, n.stop
            );
        }
        if let Some(a) = &self.attacks {
            for l in &a.attacks {
                match (&l.stats, &l.error) {
                    (Some(st), _) => println!(
                        "  attack {}: sent {} answered {:?} failed {} stalled {} connected at end {}",
                        l.attack, st.sent, st.answers, st.failed, st.stalled, st.connected_at_end
                    ),
                    (None, Some(e)) => println!("  attack {}: no report ({e})", l.attack),
                    (None, None) => {
                        println!(
                            "  attack {}: {} requests, {} accepted",
                            l.attack,
                            l.api_requests,
                            l.api_accepted.len()
                        )
                    }
                }
            }
            let worst = |r: fn(&attacks::NodeUnderAttack) -> Option<f64>| {
                a.nodes.iter().filter_map(r).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
            };
            println!(
                "  attacks vs baseline: worst memory {}x (limit {}x), worst heartbeat p99 {}x (limit {}x), panics {}",
                f(worst(attacks::NodeUnderAttack::memory_ratio)),
                a.memory_ratio_limit,
                f(worst(attacks::NodeUnderAttack::p99_ratio)),
                a.p99_ratio_limit,
                a.panics.len()
            );
            for e in &a.economics {
                println!(
                    "  economics {}: net {} units (earned {}, burned {}, slashed {}), honest worker {}",
                    e.attack, e.net, e.earned, e.burned, e.slashed, e.honest_worker_net
                );
            }
        }
        println!(
            "  ledger: converged={} entries={} convergence {} s",
            self.ledger.converged,
            self.ledger.entries,
            f(self.ledger.convergence_secs)
        );
        println!(
            "  por: {} challenges, {} passed, {} failed; cheaters {} caught {}; honest failed {}; verify cost {}",
            self.por.challenges,
            self.por.passed,
            self.por.failed,
            self.por.cheaters.len(),
            self.por.caught.len(),
            self.por.honest_failed.len(),
            self.por.verify_cost_ratio.map(|r| format!("{:.2}%", r * 100.0)).unwrap_or_else(|| "-".into())
        );
        if let Some(r) = &self.render {
            println!(
                "  render: {} {}/{} tiles in {:.2} s, {} re-assigned, {} receipts, png {}",
                r.state,
                r.tiles_done,
                r.tiles,
                r.secs,
                r.reassigned,
                r.receipts,
                r.png.as_deref().unwrap_or("-")
            );
            if let Some(dir) = &r.sequence {
                println!(
                    "  render sequence: frames {}..{}, {} written, in {dir}",
                    r.frames[0], r.frames[1], r.frames_done
                );
            }
            for j in std::iter::once(r).chain(r.fifo.as_deref()) {
                let shares: Vec<String> = j
                    .workers
                    .values()
                    .map(|w| {
                        format!("{} tiles at {:.2} s (IB {:.1})", w.tiles, w.secs_per_tile, w.ib_milli as f64 / 1e3)
                    })
                    .collect();
                println!(
                    "  render schedule {}: makespan {:.2} s, ideal {:.2} s ({:.2}x), {} copies; {}",
                    j.schedule,
                    j.makespan_secs,
                    j.ideal_secs,
                    j.makespan_ratio(),
                    j.speculative,
                    shares.join(", ")
                );
            }
        }
        if let Some(o) = self.render.as_ref().and_then(|r| r.owner_restart.as_ref()) {
            println!(
                "  owner restart: killed at {}/{} tiles ({:.1} s), resumed {}x with {} tiles kept; workers rendered {} tiles (at most {} + {} copies, re-assigned or in flight at the kill)",
                o.killed_at_tiles,
                self.render.as_ref().map_or(0, |r| r.tiles),
                o.killed_at_secs,
                o.resumed,
                o.restored_tiles,
                o.rendered,
                self.render.as_ref().map_or(0, |r| r.tiles),
                o.allowance
            );
        }
        if let Some(c) = &self.certificate {
            println!(
                "  certificate: ifx verify {} the image; the copy with tile {} altered {} ({:.1} s)",
                match (c.honest_ok, c.honest_pending) {
                    (true, _) => "passed",
                    (_, true) => "found nothing wrong (some receipts not sealed yet) in",
                    _ => "FAILED",
                },
                c.altered_tile,
                if c.altered_named { "failed naming that tile" } else { "was NOT caught" },
                c.secs
            );
        }
        if let Some(f) = &self.fl {
            println!(
                "  fl: {} {} rounds ({}), final accuracy {}, poisoners {} caught {}, honest rejected {}, audits {}/{}",
                f.state,
                f.rounds,
                f.aggregator,
                f.final_accuracy.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into()),
                f.poisoners.len(),
                f.poisoners_caught.len(),
                f.honest_rejected.len(),
                f.audits_matched,
                f.audits_matched + f.audits_mismatched + f.audits_failed,
            );
            // Issue #20: the verdict's reference.
            if let Some(b) = &f.baseline {
                println!(
                    "  fl baseline: centralized on the same honest shards {:.4}, federated {} ({}, margin {:.1} points; fixed target {} {})",
                    b.accuracy,
                    f.final_accuracy.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into()),
                    if b.within_margin == Some(true) { "within" } else { "OUTSIDE" },
                    b.margin * 100.0,
                    f.target,
                    if f.final_accuracy.is_some_and(|a| a >= f.target) { "reached" } else { "missed" },
                );
            }
            // Issue #20: what each worker's FL pay follows, in rounds' worth of the top update.
            let shares: Vec<String> =
                f.contribution_ppm.iter().map(|(p, c)| format!("{}: {:.2}", short(p), *c as f64 / 1e6)).collect();
            println!(
                "  fl contributions (rounds' worth of the round's best update): {}; poisoners credited: {}",
                shares.join(", "),
                f.poisoners_paid.len()
            );
            if let Some(p) = &f.privacy {
                println!(
                    "  fl privacy: ε {:.3} of the budget {} at δ {:e} (against the owner {:.2}), noise multiplier {:.3}",
                    p.epsilon,
                    f.dp_budget.unwrap_or(0.0),
                    p.delta,
                    p.epsilon_vs_owner,
                    p.noise_multiplier
                );
            }
            for c in &f.copies {
                println!(
                    "  fl copy: {} (a copy of {}'s shard) {:.2}, its original {:.2}, unique data {:.2} on average",
                    short(&c.copier),
                    short(&c.original),
                    c.copier_ppm as f64 / 1e6,
                    c.original_ppm as f64 / 1e6,
                    c.unique_mean_ppm as f64 / 1e6
                );
            }
        }
        if let Some(i) = &self.infer {
            println!(
                "  infer: {} {}/{} batches ({} rows) in {:.2} s, verified {} ({:.1}% of the job's time), cheaters {} caught {}, honest caught {}",
                i.state,
                i.batches_done,
                i.batches,
                i.rows,
                i.secs,
                i.verified,
                i.verify_share * 100.0,
                i.cheaters.len(),
                i.caught.len(),
                i.honest_caught.len()
            );
            for (p, w) in &i.workers {
                println!(
                    "    {}: {} batches, p50 {:.1} ms, p99 {:.1} ms, {:.0} rows/s",
                    short(p),
                    w.batches,
                    w.p50_ms,
                    w.p99_ms,
                    w.rows_per_sec
                );
            }
        }
        let st = &self.settlement;
        let (burned, minted) =
            st.economics.iter().fold((0u128, 0u128), |(b, m), e| (b + e.burned as u128, m + e.minted as u128));
        println!(
            "  economics: burned {burned} units, minted {minted} over the sealed epochs; artist burned {} (job {}, task {}, inference {}), artists' reward {}, paid work delivered {} units",
            st.artist_burned,
            st.job_paid,
            st.task_paid,
            st.infer_paid,
            st.economics.iter().map(|e| e.paid_artists).sum::<u64>(),
            st.economics.iter().map(|e| e.delivered).sum::<u64>()
        );
        println!(
            "  settlement: {} sealed epochs, agreed {}, minted {} units, slashed {}, honest slashed {}{}",
            st.sealed_epochs.len(),
            st.agreed,
            st.minted,
            st.slashed.len(),
            st.honest_slashed.len(),
            st.governance
                .as_ref()
                .map(|g| format!(
                    ", {}={} named epoch {} applied at {}",
                    g.param,
                    g.value,
                    g.from_epoch,
                    g.applied_at.map_or_else(|| "-".into(), |e| e.to_string())
                ))
                .unwrap_or_default()
        );
        for r in &self.restarts {
            println!(
                "  restart: node {} killed at {:.1}s, back at {:.1}s, caught up {}, own entries {} -> {}",
                r.node,
                r.killed_at_secs.unwrap_or(0.0),
                r.restarted_at_secs,
                r.caught_up,
                r.own_entries_before,
                r.own_entries_after
            );
        }
        for p in &self.partitions {
            println!(
                "  partition: {:?} cut at {:.1}s, healed at {}, diverged {}, converged {} s after the heal",
                p.group,
                p.cut_at_secs,
                f(p.healed_at_secs),
                p.diverged,
                f(p.converged_after_secs)
            );
        }
        if let Some(r) = &self.reachability {
            let behind: Vec<_> = r.nodes.iter().filter(|n| n.placement != "public").collect();
            println!(
                "  reachability: {}/{} worker pairs connected, {}/{} cone-NAT pairs hole-punched, {} nodes behind NAT \
                 (private {}, relays held {}, relays lost and replaced {}), private addresses in routing tables {}",
                r.pairs_connected,
                r.pairs_total,
                r.punched,
                r.punch_pairs,
                behind.len(),
                behind.iter().filter(|n| n.nat_status == "private").count(),
                behind.iter().map(|n| n.relays).sum::<usize>(),
                behind.iter().map(|n| n.relays_lost).sum::<u64>(),
                r.private_addr_leaks.len()
            );
            for l in &r.links {
                println!(
                    "  link {} -> {} ({}): rtt {:.2} ms, up {:.1} Mbit/s, down {:.1} Mbit/s{}",
                    l.from,
                    l.to,
                    l.path.map_or("-", |p| p.name()),
                    l.rtt_ms,
                    l.up_kbit as f64 / 1000.0,
                    l.down_kbit as f64 / 1000.0,
                    l.cap_kbit.map_or(String::new(), |c| format!(" (cap {} Mbit/s)", c / 1000))
                );
            }
            for a in &r.attested {
                println!(
                    "  attested link of worker {} ({}): {} verifiers, {}, rtt {:.2} ms, to it {:.1} Mbit/s, from it {:.1} Mbit/s{}{}",
                    a.index,
                    a.placement,
                    a.verifiers,
                    a.path.map_or("-", |p| p.name()),
                    a.rtt_ms,
                    a.to_worker_kbit as f64 / 1000.0,
                    a.from_worker_kbit as f64 / 1000.0,
                    a.cap_kbit.map_or(String::new(), |c| format!(" (cap {} Mbit/s)", c / 1000)),
                    if a.one_at_a_time { "; one tile at a time" } else { "" }
                );
            }
        }
        println!(
            "  memory: harness peak {:.0} MiB{}, node processes {:.0} MiB",
            self.memory.harness_peak_rss_mb,
            if self.memory.in_process { " (every node in process)" } else { "" },
            self.memory.node_processes_rss_mb
        );
        for fail in &self.failures {
            println!("  FAIL: {fail}");
        }
        println!("{}: report {}", if self.ok { "OK" } else { "FAILED" }, path.display());
        if let Some(h) = &self.html {
            println!("open {h} in a browser for the charts");
        }
    }
}

/// The tail of a peer id, enough to tell nodes apart in a line.
fn short(peer: &str) -> &str {
    &peer[peer.len().saturating_sub(6)..]
}
