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
}

impl RenderSection {
    /// The job as its owner last reported it (still running if it never answered).
    pub fn of(job: &Tracked<JobStatus>) -> Self {
        let Some(j) = &job.last else {
            return Self {
                job_id: job.id.clone(),
                ok: false,
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
                error: Some("the job owner never reported the job".into()),
                schedule: Schedule::Capacity,
                makespan_secs: 0.0,
                ideal_secs: 0.0,
                speculative: 0,
                workers: BTreeMap::new(),
                makespan_limit: 0.0,
                fifo: None,
            };
        };
        Self {
            job_id: j.job_id.clone(),
            ok: j.state == RunState::Done,
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
            error: j.error.clone(),
            schedule: j.schedule,
            makespan_secs: j.makespan_secs,
            ideal_secs: j.ideal_secs,
            speculative: j.speculative,
            workers: j.workers.clone(),
            makespan_limit: 0.0,
            fifo: None,
        }
    }

    /// The makespan over its ideal (0: not measured).
    pub fn makespan_ratio(&self) -> f64 {
        if self.ideal_secs > 0.0 { self.makespan_secs / self.ideal_secs } else { 0.0 }
    }

    /// What makes the run fail.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self.fifo.iter().flat_map(|f| f.failures()).map(|f| format!("fifo: {f}")).collect();
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
