//! What compute this machine offers to render with: the wgpu adapter its backend renders on (if
//! any), CPU cores and memory. The adapter is probed once per process; heartbeats carry the
//! result.

use std::sync::OnceLock;

use ifx_protocols::Capacity;
use ifx_render::Backend;
use ifx_render::gpu::AdapterSummary;

static ADAPTER: OnceLock<Option<AdapterSummary>> = OnceLock::new();

/// The machine's capacity as `backend` renders (`render.backend`) on the adapter `gpu` names
/// (`render.gpu`; empty: the best): `cpu` for the CPU reference, which `auto` picks over a
/// software adapter such as lavapipe (it renders faster and exactly). The graphics adapters
/// are probed on first use (can take ~100 ms); one process probes once, so its first node's
/// `gpu` is the one reported.
pub async fn probe(gpu: &str, backend: Backend) -> Capacity {
    let adapter = match ADAPTER.get() {
        Some(a) => a.clone(),
        None => {
            let gpu = gpu.to_owned();
            let a =
                tokio::task::spawn_blocking(move || ifx_render::gpu::adapter_summary(&gpu).ok()).await.ok().flatten();
            ADAPTER.get_or_init(|| a).clone()
        }
    };
    let mut cap = cpu_only();
    match (backend, adapter) {
        (Backend::Cpu, _) | (_, None) => {}
        (Backend::Auto, Some(a)) if a.class == "cpu" => {}
        (_, Some(a)) => {
            cap.backend = a.backend;
            cap.adapter = truncate(&a.name);
            cap.device_type = a.class.into();
        }
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
    use ifx_render::Backend;

    /// A heartbeat names what the node renders on: the CPU for `cpu`, and for `auto` on a
    /// machine whose only adapter is a software one (lavapipe here: `auto` renders on the CPU
    /// reference there); `gpu` names the adapter, software or not.
    #[tokio::test]
    async fn probe_names_what_the_backend_renders_on() {
        let cpu = super::probe("", Backend::Cpu).await;
        assert!(cpu.cores >= 1 && cpu.memory_mb > 0);
        assert_eq!((cpu.backend.as_str(), cpu.adapter.as_str(), cpu.device_type.as_str()), ("cpu", "cpu", "cpu"));
        let auto = super::probe("", Backend::Auto).await;
        let gpu = super::probe("", Backend::Gpu).await;
        eprintln!("auto: {auto:?}\ngpu: {gpu:?}");
        match ifx_render::gpu::adapter_summary("") {
            Ok(a) if a.class == "cpu" => {
                assert_eq!(auto.adapter, "cpu", "auto renders on the CPU reference beside {}", a.name);
                assert_eq!((gpu.adapter.as_str(), gpu.device_type.as_str()), (a.name.as_str(), "cpu"));
            }
            Ok(a) => {
                assert_eq!(auto.adapter, a.name);
                assert_eq!(gpu.adapter, a.name);
            }
            Err(_) => assert_eq!((auto.adapter.as_str(), gpu.adapter.as_str()), ("cpu", "cpu")),
        }
    }
}
