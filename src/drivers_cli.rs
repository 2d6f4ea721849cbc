//! `axon drivers list | show | scorecard | promote | demote`: the driver routes of a running node,
//! from the command line; and `axon drivers synthesize`, offline, which grows a driver
//! manifest from an OpenAPI operation into the data directory. The node is found at `--url` (default: the configured listen
//! address) and the admin token in the data directory's `admin.token` (or `--token-file`).

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a running node is, and the token to change it.
pub struct Target {
    pub url: String,
    pub token_file: PathBuf,
}

impl Target {
    /// The node at `url` (else `http://<http.listen>`), with the token of `token_file`
    /// (else the data directory's).
    pub fn new(cfg: &crate::Config, url: Option<String>, token_file: Option<PathBuf>) -> Self {
        Self {
            url: url
                .unwrap_or_else(|| format!("http://{}", cfg.http.listen))
                .trim_end_matches('/')
                .to_owned(),
            token_file: token_file.unwrap_or_else(|| cfg.data_dir.join(crate::admin_token::FILE)),
        }
    }

    fn token(&self) -> anyhow::Result<String> {
        read_token(&self.token_file)
    }
}

fn read_token(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the admin token from {}", file.display()))?;
    Ok(text.trim().to_owned())
}

fn client() -> anyhow::Result<reqwest::blocking::Client> {
    axon_drivers::tls::client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")
}

/// The body of a 2xx answer; a problem document's detail as the error otherwise.
fn answer(res: reqwest::blocking::Response) -> anyhow::Result<Value> {
    let status = res.status();
    let v: Value = res
        .json()
        .with_context(|| format!("the node answered {status} without JSON"))?;
    if !status.is_success() {
        bail!(
            "{status}: {} ({})",
            v["detail"].as_str().unwrap_or("no detail"),
            v["type"].as_str().unwrap_or("no problem type")
        );
    }
    Ok(v)
}

/// `GET /v1/drivers`: one line per driver.
pub fn list(t: &Target) -> anyhow::Result<String> {
    let v = answer(
        client()?
            .get(format!("{}/v1/drivers", t.url))
            .send()
            .with_context(|| format!("reaching the node at {}", t.url))?,
    )?;
    let mut out = String::new();
    for d in v["drivers"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<24} {:<8} {:<10} {} {}\n",
            d["name"].as_str().unwrap_or("?"),
            d["lane"].as_str().unwrap_or("?"),
            d["health"]["status"].as_str().unwrap_or("?"),
            d["descriptor"]["capability"].as_str().unwrap_or("?"),
            d["artifact_hash"].as_str().unwrap_or("?"),
        ));
    }
    Ok(out)
}

/// `GET /v1/drivers/{name}`, as JSON.
pub fn show(t: &Target, name: &str) -> anyhow::Result<String> {
    get_pretty(t, &format!("/v1/drivers/{name}"))
}

/// `GET /v1/drivers/{name}/scorecard`, as JSON.
pub fn scorecard(t: &Target, name: &str) -> anyhow::Result<String> {
    get_pretty(t, &format!("/v1/drivers/{name}/scorecard"))
}

/// A read route's answer, as indented JSON.
fn get_pretty(t: &Target, path: &str) -> anyhow::Result<String> {
    let v = answer(
        client()?
            .get(format!("{}{path}", t.url))
            .send()
            .with_context(|| format!("reaching the node at {}", t.url))?,
    )?;
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

/// `POST /v1/drivers/{name}/promote` or `/demote`: the lane change, as JSON.
pub fn move_lane(
    t: &Target,
    name: &str,
    way: &str,
    to: &str,
    reason: &str,
) -> anyhow::Result<String> {
    let v = answer(
        client()?
            .post(format!("{}/v1/drivers/{name}/{way}", t.url))
            .bearer_auth(t.token()?)
            .json(&json!({"to": to, "reason": reason}))
            .send()
            .with_context(|| format!("reaching the node at {}", t.url))?,
    )?;
    Ok(serde_json::to_string_pretty(&v["change"])? + "\n")
}

/// `axon drivers synthesize`: grows the manifest of `operation` of the OpenAPI document
/// in `openapi`, calling `base_url` (else the document's first server), and writes it to
/// `out` (`-`: answered instead) or to the data directory's `drivers` folder, never over
/// an existing file. Answers what to print; what the driver cannot carry goes to stderr.
pub fn synthesize(
    cfg: &crate::Config,
    openapi: &Path,
    operation: &str,
    base_url: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<String> {
    use axon_drivers::probecraft;
    let len = std::fs::metadata(openapi)
        .with_context(|| format!("reading {}", openapi.display()))?
        .len();
    if len > probecraft::MAX_DOCUMENT_BYTES as u64 {
        bail!(
            "{} is {len} bytes, more than the limit of {}",
            openapi.display(),
            probecraft::MAX_DOCUMENT_BYTES
        );
    }
    let bytes = std::fs::read(openapi).with_context(|| format!("reading {}", openapi.display()))?;
    let doc = probecraft::read_document(&bytes)?;
    let s = probecraft::synthesize(&doc, operation, base_url, &Default::default(), &[])?;
    for note in &s.left_out {
        eprintln!("axon: left out: {note}");
    }
    if out == Some(Path::new("-")) {
        return Ok(s.toml);
    }
    let file = match out {
        Some(f) => f.to_owned(),
        None => crate::driver_load::grown_file(cfg, &s.manifest.name),
    };
    crate::driver_load::write_grown(cfg, &s, &file, &[])?;
    Ok(format!(
        "{}\n{} in lane testing, capability {}, build {}\n",
        file.display(),
        s.manifest.name,
        s.manifest.capability,
        s.manifest.descriptor().artifact_hash
    ))
}
