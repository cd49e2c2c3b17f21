//! The worker side of render jobs: renders the tiles peers ask for, on this node's compute,
//! keeping the renderer of the last job.

use std::sync::Arc;

use ifx_protocols::render::job::{TileRequest, TileResponse};
use ifx_render::Renderer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::job_scene;
use crate::network::{InboundRequest, NetHandle, Proto};

/// Renders tiles for peers until `shutdown`; keeps the renderer of the last job.
pub async fn serve(
    mut inbound: mpsc::Receiver<InboundRequest>,
    net: NetHandle,
    compute: crate::compute::Compute,
    shutdown: CancellationToken,
) {
    let mut cached: Option<([u8; 16], Arc<Renderer>)> = None;
    loop {
        let req = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = inbound.recv() => match r { Some(r) => r, None => return },
        };
        let resp = match TileRequest::decode(&req.data).map(|tr| {
            let t = tr.checked_tile();
            (tr, t)
        }) {
            Ok((_, Err(e))) => {
                debug!(peer = %req.peer, error = %e, "tile request refused");
                TileResponse { pixels: Vec::new(), error: e.to_string() }
            }
            Ok((tr, Ok(t))) => {
                let renderer = match &cached {
                    Some((job, r)) if *job == tr.job => Ok(r.clone()),
                    _ => {
                        let (spec, compute) = (tr.spec.clone(), compute.clone());
                        tokio::task::spawn_blocking(move || {
                            let scene = job_scene(&spec).map_err(|e| e.to_string())?;
                            // A device of the job's own, as before the restructuring: tiles never
                            // queue behind PoR renders on the shared device (a tile that waited
                            // could time out and be re-assigned).
                            Renderer::new(&scene, &spec.settings(), compute.backend()).map_err(|e| e.to_string())
                        })
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r)
                        .map(|r| {
                            info!(job = hex::encode(tr.job), backend = r.describe(), "rendering tiles for a job");
                            let r = Arc::new(r);
                            cached = Some((tr.job, r.clone()));
                            r
                        })
                    }
                };
                match renderer {
                    Ok(r) => {
                        let s = tr.spec.settings();
                        let faults = compute.faults();
                        match tokio::task::spawn_blocking(move || {
                            faults.slow_work();
                            r.render_tile(&s, t)
                        })
                        .await
                        {
                            Ok(Ok(px)) => TileResponse {
                                pixels: px.iter().flatten().flat_map(|v| v.to_le_bytes()).collect(),
                                error: String::new(),
                            },
                            Ok(Err(e)) => TileResponse { pixels: Vec::new(), error: e.to_string() },
                            Err(e) => TileResponse { pixels: Vec::new(), error: e.to_string() },
                        }
                    }
                    Err(e) => TileResponse { pixels: Vec::new(), error: e },
                }
            }
            Err(e) => {
                debug!(peer = %req.peer, error = %e, "malformed tile request");
                continue;
            }
        };
        net.respond(Proto::Render, req.channel, resp.encode()).await;
    }
}
