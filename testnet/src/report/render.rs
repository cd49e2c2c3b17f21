//! The `render` section: the job node 0 owned, from its `GET /jobs/{id}`.

use std::collections::BTreeMap;

use ifx_protocols::api::{JobStatus, RunState, Schedule, WorkerShare};
use serde::Serialize;

use crate::watch::Tracked;

/// `render` section of the report.
#[derive(Debug, Serialize)]
pub struct RenderSection {
    pub job_id: String,
    pub ok: bool,
    /// The scene: a built-in's name, or the scene file's among the job's assets.
    pub scene: String,
    /// The files the scene reads, which workers fetched by hash (`--render-scene`), and their
    /// bytes.
    pub assets: usize,
    pub asset_bytes: u64,
    pub state: RunState,
    pub tiles: u64,
    pub tiles_done: u64,
    pub tiles_by_worker: BTreeMap<String, u64>,
    /// Workers the owner gave one tile at a time for a slow attested link (kbit/s).
    #[serde(default)]
    pub slow_links: BTreeMap<String, u32>,
    /// Tiles given to another worker after a failure or timeout.
    pub reassigned: u64,
    /// Render receipts the job owner wrote to the ledger.
    pub receipts: u64,
    /// Tiles the owner spot-checked (one sub-tile re-rendered) and accepted, and tiles that
    /// failed it (evidence against their worker in the ledger).
    pub spot_checked: u64,
    pub bad_tiles: u64,
    /// Units the owner burned for the job before handing out tiles (0: unpaid).
    pub paid: u64,
    pub secs: f64,
    pub png: Option<String>,
    /// A sequence (`--render-frames`): its frames, first and last, those written, and the
    /// folder they are in (`{frame:04}.png`); a still is frame 0.
    pub frames: [u32; 2],
    pub frames_done: u64,
    pub sequence: Option<String>,
    pub error: Option<String>,
    /// How its tiles were handed out.
    pub schedule: Schedule,
    /// Seconds from its first tile handed out to its last one kept, and the ideal: its tiles
    /// over the workers' summed throughput as measured in the job.
    pub makespan_secs: f64,
    pub ideal_secs: f64,
    /// Tiles copied to a second worker while a slow one still held them.
    pub speculative: u64,
    /// Each worker's part (tiles kept, delivered, busy seconds, seconds a tile, attested IB).
    pub workers: BTreeMap<String, WorkerShare>,
    /// The makespan must be within this many times the ideal (`--render-makespan`; 0: not
    /// judged).
    pub makespan_limit: f64,
    /// `--render-compare`: the same job handed out first come first served, after this one.
    pub fifo: Option<Box<RenderSection>>,
    /// `--owner-restart`: the owner killed mid-job and started again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_restart: Option<OwnerRestartSection>,
}

/// The job's owner (node 0) killed with SIGKILL mid-job and started again (issue #18).
#[derive(Debug, Serialize)]
pub struct OwnerRestartSection {
    /// The kill happened (false: the job ended, or never reached half its tiles, first).
    pub killed: bool,
    /// Tiles the job had kept at the harness's last poll before the kill, of its tiles.
    pub killed_at_tiles: u64,
    pub killed_at_secs: f64,
    /// Restarts the job resumed from, and the tiles loaded from the owner's store at the last.
    pub resumed: u64,
    pub restored_tiles: u64,
    /// Tiles the workers rendered for job owners, all told (their `ifx_render_tiles_total`;
    /// this run's only job), and by node index.
    pub rendered: u64,
    pub rendered_by_node: BTreeMap<usize, u64>,
    /// What the job could ask for more than once: copies of stragglers, re-assigned tiles, and
    /// the tiles rendered but not yet kept at the kill: `IN_FLIGHT` at each worker, and the one
    /// answer the owner was checking (it refills a worker's slot before it checks the answer).
    pub allowance: u64,
    /// Why node 0 did not start again.
    pub error: Option<String>,
}

impl OwnerRestartSection {
    pub fn of(
        r: Option<&crate::watch::OwnerRestart>,
        job: &RenderSection,
        resumed: u64,
        restored: u64,
        rendered: &[(usize, u64)],
    ) -> Self {
        let workers = rendered.iter().filter(|(i, n)| *i > 0 && *n > 0).count() as u64;
        let in_flight = workers * ifx_protocols::render::job::IN_FLIGHT as u64 + 1;
        Self {
            killed: r.is_some(),
            killed_at_tiles: r.map_or(0, |r| r.killed_at_tiles as u64),
            killed_at_secs: r.map_or(0.0, |r| r.killed_at_secs),
            resumed,
            restored_tiles: restored,
            rendered: rendered.iter().filter(|(i, _)| *i > 0).map(|(_, n)| n).sum(),
            rendered_by_node: rendered.iter().copied().collect(),
            allowance: job.speculative + job.reassigned + in_flight,
            error: r.and_then(|r| r.error.clone()),
        }
    }

    /// What makes the run fail.
    pub fn failures(&self, tiles: u64) -> Vec<String> {
        if !self.killed {
            return vec![
                "--owner-restart: the job ended (or never kept half its tiles) before its owner was killed".into(),
            ];
        }
        let mut out = Vec::new();
        if let Some(e) = &self.error {
            out.push(format!("the job's owner did not start again: {e}"));
        }
        if self.resumed == 0 {
            out.push("the job did not resume after its owner restarted".into());
        }
        // The owner writes a tile to its store right after counting it: the kill can fall
        // between the two for one tile.
        if self.restored_tiles + 1 < self.killed_at_tiles {
            out.push(format!(
                "the restarted owner loaded {} kept tiles; it had {} before the kill",
                self.restored_tiles, self.killed_at_tiles
            ));
        }
        if self.rendered > tiles + self.allowance {
            out.push(format!(
                "workers rendered {} tiles for a {tiles}-tile job: {} more than copies, re-assigned tiles and tiles in flight at the kill account for ({}); kept tiles were asked for again",
                self.rendered,
                self.rendered - tiles - self.allowance,
                self.allowance
            ));
        }
        out
    }
}

impl RenderSection {
    /// The job as its owner last reported it (still running if it never answered).
    pub fn of(job: &Tracked<JobStatus>) -> Self {
        let Some(j) = &job.last else {
            return Self {
                job_id: job.id.clone(),
                ok: false,
                scene: String::new(),
                assets: 0,
                asset_bytes: 0,
                state: RunState::Running,
                tiles: 0,
                tiles_done: 0,
                tiles_by_worker: BTreeMap::new(),
                slow_links: BTreeMap::new(),
                reassigned: 0,
                receipts: 0,
                spot_checked: 0,
                bad_tiles: 0,
                paid: 0,
                secs: 0.0,
                png: None,
                frames: [0, 0],
                frames_done: 0,
                sequence: None,
                error: Some("the job owner never reported the job".into()),
                schedule: Schedule::Capacity,
                makespan_secs: 0.0,
                ideal_secs: 0.0,
                speculative: 0,
                workers: BTreeMap::new(),
                makespan_limit: 0.0,
                fifo: None,
                owner_restart: None,
            };
        };
        Self {
            job_id: j.job_id.clone(),
            ok: j.state == RunState::Done,
            scene: j.spec.scene.clone(),
            assets: j.spec.assets.len(),
            asset_bytes: j.spec.assets.iter().map(|a| a.len).sum(),
            state: j.state,
            tiles: j.tiles as u64,
            tiles_done: j.tiles_done as u64,
            tiles_by_worker: j.tiles_by_worker.clone(),
            slow_links: j.slow_links.clone(),
            reassigned: j.reassigned,
            receipts: j.receipts,
            spot_checked: j.spot_checked,
            bad_tiles: j.bad_tiles,
            paid: j.paid,
            secs: j.secs,
            png: j.png.clone(),
            frames: [j.spec.frames.first, j.spec.frames.last],
            frames_done: j.frames_done(),
            sequence: j.sequence.clone(),
            error: j.error.clone(),
            schedule: j.schedule,
            makespan_secs: j.makespan_secs,
            ideal_secs: j.ideal_secs,
            speculative: j.speculative,
            workers: j.workers.clone(),
            makespan_limit: 0.0,
            fifo: None,
            owner_restart: None,
        }
    }

    /// The makespan over its ideal (0: not measured).
    pub fn makespan_ratio(&self) -> f64 {
        if self.ideal_secs > 0.0 { self.makespan_secs / self.ideal_secs } else { 0.0 }
    }

    /// What makes the run fail.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self.fifo.iter().flat_map(|f| f.failures()).map(|f| format!("fifo: {f}")).collect();
        out.extend(self.owner_restart.iter().flat_map(|r| r.failures(self.tiles)));
        if self.ok {
            if self.makespan_limit > 0.0
                && !(self.makespan_ratio() > 0.0 && self.makespan_ratio() <= self.makespan_limit)
            {
                out.push(format!(
                    "the render job took {:.2} s, {:.2}x its ideal of {:.2} s (at most {}x)",
                    self.makespan_secs,
                    self.makespan_ratio(),
                    self.ideal_secs,
                    self.makespan_limit
                ));
            }
            return out;
        }
        out.push(format!(
            "the render job did not complete: {} ({}/{} tiles){}",
            self.state,
            self.tiles_done,
            self.tiles,
            self.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        ));
        out
    }
}
