//! What compute this machine offers: the best wgpu adapter (if any), CPU cores and memory.
//! Probed once per process; heartbeats carry the result.

use std::sync::OnceLock;

use ifx_protocols::Capacity;

static PROBED: OnceLock<Capacity> = OnceLock::new();

/// The machine's capacity with the adapter `gpu` names (`render.gpu`; empty: the best),
/// probing the graphics adapters on first use (can take ~100 ms); one process probes once, so
/// its first node's choice is the one reported.
pub async fn probe(gpu: &str) -> Capacity {
    if let Some(c) = PROBED.get() {
        return c.clone();
    }
    let gpu = gpu.to_owned();
    let c = tokio::task::spawn_blocking(move || probe_blocking(&gpu)).await.unwrap_or_else(|_| cpu_only());
    PROBED.get_or_init(|| c).clone()
}

fn probe_blocking(gpu: &str) -> Capacity {
    let mut cap = cpu_only();
    if let Ok(a) = ifx_render::gpu::adapter_summary(gpu) {
        cap.backend = a.backend;
        cap.adapter = truncate(&a.name);
        cap.device_type = a.class.into();
    }
    cap
}

fn cpu_only() -> Capacity {
    let memory_mb = match sysinfo::System::new() {
        Ok(mut sys) => {
            sys.refresh_memory();
            sys.total_memory() / (1024 * 1024)
        }
        Err(_) => 0,
    };
    Capacity {
        backend: "cpu".into(),
        adapter: "cpu".into(),
        device_type: "cpu".into(),
        cores: std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
        memory_mb,
    }
}

fn truncate(s: &str) -> String {
    let max = ifx_protocols::heartbeat::MAX_TEXT_LEN;
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn probe_reports_cores_memory_and_an_adapter_or_cpu() {
        let c = super::probe("").await;
        assert!(c.cores >= 1);
        assert!(c.memory_mb > 0);
        assert!(!c.backend.is_empty() && !c.adapter.is_empty());
        // With lavapipe installed (scripts/setup.sh) a software Vulkan adapter is found.
        eprintln!("capacity: {c:?}");
    }
}
