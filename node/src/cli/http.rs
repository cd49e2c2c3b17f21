//! The node's HTTP API as the CLI uses it.

use std::process::ExitCode;

use anyhow::Context;

/// POSTs `body` to a node's `/{path}` and prints the entry id it appended.
pub fn api_post(api: &str, path: &str, body: &serde_json::Value) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let accepted: ifx_protocols::api::EntryAccepted = rt.block_on(async {
        let c = reqwest::Client::builder().no_proxy().build()?;
        post_to_node(&c, api, path, body, "the request").await
    })?;
    println!("entry {}", accepted.entry);
    Ok(ExitCode::SUCCESS)
}

/// POSTs `body` as JSON to a node's `/{path}`; the answer on success, else the node's reason.
pub async fn post_to_node<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    api: &str,
    path: &str,
    body: &impl serde::Serialize,
    what: &str,
) -> anyhow::Result<T> {
    let base = format!("http://{api}");
    let resp =
        client.post(format!("{base}/{path}")).json(body).send().await.with_context(|| format!("reaching {base}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let why = resp.json::<ifx_protocols::api::ApiError>().await.map_or_else(|_| status.to_string(), |e| e.error);
        anyhow::bail!("the node refused {what}: {why}");
    }
    resp.json().await.with_context(|| format!("reading the answer to {what} from {base}"))
}

/// GETs a node's `/{path}` as `T` (an `ifx_protocols::api` type).
pub async fn get_from_node<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    api: &str,
    path: &str,
) -> anyhow::Result<T> {
    let base = format!("http://{api}");
    let resp = client.get(format!("{base}/{path}")).send().await.with_context(|| format!("reaching {base}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let why = resp.json::<ifx_protocols::api::ApiError>().await.map_or_else(|_| status.to_string(), |e| e.error);
        anyhow::bail!("{base}/{path}: {why}");
    }
    resp.json().await.with_context(|| format!("reading {base}/{path}"))
}

/// GETs a node's `/{path}` as JSON.
pub fn api_get(api: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async {
        let c = reqwest::Client::builder().no_proxy().build()?;
        anyhow::Ok(c.get(format!("http://{api}/{path}")).send().await?.json().await?)
    })
}
