//! The node's HTTP API as the CLI uses it.

use std::process::ExitCode;

use anyhow::Context;

/// POSTs `body` to a node's `/{path}` and prints the entry id it appended.
pub fn api_post(api: &str, path: &str, body: &serde_json::Value) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let v = rt.block_on(async {
        let c = reqwest::Client::builder().no_proxy().build()?;
        post_to_node(&c, api, path, body, "the request").await
    })?;
    println!("entry {}", v["entry"].as_str().unwrap_or("?"));
    Ok(ExitCode::SUCCESS)
}

/// POSTs `body` as JSON to a node's `/{path}`; the answer on success, else the node's reason.
pub async fn post_to_node(
    client: &reqwest::Client,
    api: &str,
    path: &str,
    body: &impl serde::Serialize,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    let base = format!("http://{api}");
    let resp =
        client.post(format!("{base}/{path}")).json(body).send().await.with_context(|| format!("reaching {base}"))?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        anyhow::bail!("the node refused {what}: {}", v["error"].as_str().unwrap_or("?"));
    }
    Ok(v)
}

/// GETs a node's `/{path}` as JSON.
pub fn api_get(api: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async {
        let c = reqwest::Client::builder().no_proxy().build()?;
        anyhow::Ok(c.get(format!("http://{api}/{path}")).send().await?.json().await?)
    })
}
