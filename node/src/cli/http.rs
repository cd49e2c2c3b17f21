//! The node's HTTP API as the CLI uses it: which node (`--api`, or the address its data dir
//! records), and the token its writes carry (`<data-dir>/api.token`, or `IFX_API_TOKEN`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Which running node a command talks to.
#[derive(clap::Args, Debug, Clone)]
pub struct ApiTarget {
    /// The node's API address (default: the address its data dir records, `api.addr`).
    #[arg(long = "api")]
    pub addr: Option<String>,
    /// The node's data dir: where it records `api.addr` and the `api.token` that writes carry
    /// (the token may also come from the IFX_API_TOKEN environment variable).
    #[arg(long, default_value_os_t = ifx_node::NodeConfig::default().node.data_dir)]
    pub data_dir: PathBuf,
}

impl ApiTarget {
    /// The API address.
    pub fn addr(&self) -> anyhow::Result<String> {
        if let Some(a) = &self.addr {
            return Ok(a.clone());
        }
        let path = self.data_dir.join(ifx_node::node::API_ADDR_FILE);
        let a = std::fs::read_to_string(&path)
            .with_context(|| format!("no --api given, and {} cannot be read (is the node running?)", path.display()))?;
        Ok(a.trim().to_owned())
    }

    /// The token writes carry.
    pub fn token(&self) -> anyhow::Result<String> {
        if let Ok(t) = std::env::var("IFX_API_TOKEN") {
            return Ok(t.trim().to_owned());
        }
        let path = self.data_dir.join(ifx_node::node::API_TOKEN_FILE);
        let t = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "writes need the node's API token: {} cannot be read (give the node's --data-dir, or set IFX_API_TOKEN)",
                path.display()
            )
        })?;
        Ok(t.trim().to_owned())
    }
}

/// POSTs `body` to a node's `/{path}` and prints the entry id it appended.
pub fn api_post(target: &ApiTarget, path: &str, body: &serde_json::Value) -> anyhow::Result<ExitCode> {
    let accepted: ifx_protocols::api::EntryAccepted = api_post_for(target, path, body)?;
    println!("entry {}", accepted.entry);
    Ok(ExitCode::SUCCESS)
}

/// POSTs `body` to a node's `/{path}`; its answer.
pub fn api_post_for<T: serde::de::DeserializeOwned>(
    target: &ApiTarget,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<T> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async {
        let c = reqwest::Client::builder().no_proxy().build()?;
        post_to_node(&c, target, path, body, "the request").await
    })
}

/// POSTs `body` as JSON to a node's `/{path}` with its token; the answer on success, else the
/// node's reason.
pub async fn post_to_node<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    target: &ApiTarget,
    path: &str,
    body: &impl serde::Serialize,
    what: &str,
) -> anyhow::Result<T> {
    send(client, target, path, what, |r| r.json(body)).await
}

/// POSTs raw `bytes` to a node's `/{path}` with its token (a model's weights); the answer on
/// success, else the node's reason.
pub async fn post_bytes_to_node<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    target: &ApiTarget,
    path: &str,
    bytes: Vec<u8>,
    what: &str,
) -> anyhow::Result<T> {
    send(client, target, path, what, |r| r.body(bytes)).await
}

/// POSTs to a node's `/{path}` with its token and the body `with` sets.
async fn send<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    target: &ApiTarget,
    path: &str,
    what: &str,
    with: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> anyhow::Result<T> {
    let base = format!("http://{}", target.addr()?);
    let req = client.post(format!("{base}/{path}")).bearer_auth(target.token()?);
    let resp = with(req).send().await.with_context(|| format!("reaching {base}"))?;
    if !resp.status().is_success() {
        anyhow::bail!("the node refused {what}: {}", refusal(resp).await);
    }
    resp.json().await.with_context(|| format!("reading the answer to {what} from {base}"))
}

/// GETs a node's `/{path}` as `T` (an `ifx_protocols::api` type).
pub async fn get_from_node<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    target: &ApiTarget,
    path: &str,
) -> anyhow::Result<T> {
    let base = format!("http://{}", target.addr()?);
    let resp = client.get(format!("{base}/{path}")).send().await.with_context(|| format!("reaching {base}"))?;
    if !resp.status().is_success() {
        anyhow::bail!("{base}/{path}: {}", refusal(resp).await);
    }
    resp.json().await.with_context(|| format!("reading {base}/{path}"))
}

/// Why the node refused: its `ApiError`, else the status line.
async fn refusal(resp: reqwest::Response) -> String {
    let status = resp.status();
    resp.json::<ifx_protocols::api::ApiError>().await.map_or_else(|_| status.to_string(), |e| e.error)
}

/// GETs a node's `/{path}` as JSON.
pub fn api_get(target: &ApiTarget, path: &str) -> anyhow::Result<serde_json::Value> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async {
        let c = reqwest::Client::builder().no_proxy().build()?;
        get_from_node(&c, target, path).await
    })
}
