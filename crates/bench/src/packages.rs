//! `ferry-bench packages`: pushing a large package to the built-in feed (throughput against a
//! plain copy on the same disk, and the server's peak RSS while it streams), and redeploying an
//! unchanged package on the built-in worker (a cache hit: no bytes copied again).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::procfs::rss_kib;
use crate::report::Metric;
use crate::server::{API_KEY, Server};

/// Writes `size` bytes of incompressible data as the only file of an uncompressed tar.
fn make_tar(path: &Path, size: u64) -> anyhow::Result<()> {
    let f = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    // A tar header for one file named "payload.bin".
    let mut header = [0u8; 512];
    let name = b"payload.bin";
    header[..name.len()].copy_from_slice(name);
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    let sz = format!("{size:011o}\0");
    header[124..136].copy_from_slice(sz.as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    w.write_all(&header)?;
    // xorshift: fast and incompressible enough.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    let pad = (512 - (size % 512)) % 512;
    w.write_all(&vec![0u8; pad as usize])?;
    w.write_all(&[0u8; 1024])?;
    w.flush()?;
    w.get_ref().sync_all()?;
    Ok(())
}

async fn push(url: &str, file: &Path) -> anyhow::Result<reqwest::StatusCode> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let f = tokio::fs::File::open(file).await?;
    let len = f.metadata().await?.len();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024);
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
            .file_name(name);
    let form = reqwest::multipart::Form::new().part("fileToUpload", part);
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/Spaces-1/packages/raw"))
        .header("X-Octopus-ApiKey", API_KEY)
        .multipart(form)
        .send()
        .await?;
    Ok(resp.status())
}

async fn api(
    url: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut rb = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .header("X-Octopus-ApiKey", API_KEY);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{path}: {status} {v}");
    }
    Ok(v)
}

async fn wait(url: &str, task: &str) -> anyhow::Result<Value> {
    loop {
        let t = api(
            url,
            reqwest::Method::GET,
            &format!("/api/tasks/{task}"),
            None,
        )
        .await?;
        if t["IsCompleted"] == json!(true) {
            return Ok(t);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(
    ferry: &Path,
    size_mb: u64,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Metric>> {
    let tmp = tempfile::Builder::new()
        .prefix("ferry-bench-pkg-")
        .tempdir()?;
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data)?;
    let size = size_mb * 1024 * 1024;
    let file = tmp.path().join("Big.Payload.1.0.0.tar");
    progress(&format!("writing a {size_mb} MB package"));
    make_tar(&file, size)?;
    // The disk's own speed for the same bytes: copy and fsync.
    let copy_to = data.join("copy.tar");
    let start = Instant::now();
    std::fs::copy(&file, &copy_to)?;
    std::fs::File::open(&copy_to)?.sync_all()?;
    let copy_s = start.elapsed().as_secs_f64();
    std::fs::remove_file(&copy_to)?;

    let (server, _) = Server::start(ferry, &data, &tmp.path().join("server.log")).await?;
    let pid = server.pid;
    let idle_rss = rss_kib(pid)? as f64 / 1024.0;
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(k) = rss_kib(pid) {
                    peak.fetch_max(k, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    progress("pushing it");
    let start = Instant::now();
    let status = push(&server.url, &file).await?;
    let push_s = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    if status.as_u16() != 201 {
        bail!("the push answered {status}");
    }
    let peak_mb = peak.load(Ordering::Relaxed) as f64 / 1024.0;

    // Redeploy an unchanged small package on the built-in worker.
    progress("deploying a small package twice");
    let small_src = tmp.path().join("small");
    std::fs::create_dir_all(&small_src)?;
    std::fs::write(small_src.join("index.html"), "hello")?;
    let small = tmp.path().join("Small.Site.1.0.0.zip");
    ferry_packages::archive::pack(
        &small_src,
        &small,
        ferry_packages::filename::PackageFormat::Zip,
    )?;
    if push(&server.url, &small).await?.as_u16() != 201 {
        bail!("pushing the small package failed");
    }
    api(
        &server.url,
        reqwest::Method::POST,
        "/api/Spaces-1/environments",
        Some(json!({"Name": "Bench"})),
    )
    .await?;
    api(
        &server.url,
        reqwest::Method::POST,
        "/api/Spaces-1/projects",
        Some(json!({"Name": "Site"})),
    )
    .await?;
    api(
        &server.url,
        reqwest::Method::PUT,
        "/api/Spaces-1/projects/Site/deploymentprocesses",
        Some(json!({"Steps": [{"Name": "Deploy", "Actions": [{"ActionType": "Octopus.TentaclePackage", "Properties": {
            "Octopus.Action.RunOnServer": "true", "Octopus.Action.Package.PackageId": "Small.Site", "Octopus.Action.Package.FeedId": "feeds-builtin"}}]}]})),
    )
    .await?;
    api(
        &server.url,
        reqwest::Method::POST,
        "/api/Spaces-1/releases/create/v1",
        Some(json!({"ProjectName": "Site", "ReleaseVersion": "1.0.0"})),
    )
    .await?;
    let mut times = Vec::new();
    let mut cache_hit = false;
    for _ in 0..2 {
        let start = Instant::now();
        let d = api(
            &server.url,
            reqwest::Method::POST,
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Site", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Bench"]})),
        )
        .await?;
        let id = d["DeploymentServerTasks"][0]["ServerTaskId"]
            .as_str()
            .context("no task")?
            .to_string();
        let t = wait(&server.url, &id).await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        if t["State"] != "Success" {
            bail!("the deployment ended {}", t["State"]);
        }
        let raw = reqwest::Client::new()
            .get(format!("{}/api/tasks/{id}/raw", server.url))
            .header("X-Octopus-ApiKey", API_KEY)
            .send()
            .await?
            .text()
            .await?;
        cache_hit = raw.contains("already on the target");
    }
    server.stop().await?;
    let mb = size as f64 / (1024.0 * 1024.0);
    Ok(vec![
        Metric::new(
            "push_throughput",
            format!("Push a {size_mb} MB package: throughput"),
            mb / push_s,
            "MB/s",
        ),
        Metric::new(
            "copy_throughput",
            "Plain copy + fsync of the same file on the same disk",
            mb / copy_s,
            "MB/s",
        ),
        Metric::new(
            "push_peak_rss",
            "Server peak RSS during the push",
            peak_mb,
            "MB",
        )
        .under(100.0),
        Metric::new("idle_rss", "Server RSS before the push", idle_rss, "MB"),
        Metric::new(
            "first_deploy_ms",
            "Deploy a small package (first: acquire + extract)",
            times[0],
            "ms",
        ),
        Metric::new(
            "redeploy_ms",
            "Redeploy it unchanged (cache hit, nothing copied)",
            times[1],
            "ms",
        ),
        Metric::new(
            "redeploy_cache_hit",
            "Redeploy was a cache hit (1 = yes)",
            if cache_hit { 1.0 } else { 0.0 },
            "",
        ),
    ])
}
