//! Compatibility with the official TypeScript client (`@octopusdeploy/api-client`, installed
//! from npm into tests/ts-client by the test command): connect, resolve the space, look up the
//! project and environment, create a release, deploy it, wait with the client's task waiter,
//! read the log, check the error contract; cancel through the client; push packages.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::{Server, skip_or_fail};

fn driver_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/ts-client")
}

fn ready() -> bool {
    if Command::new("node").arg("--version").output().is_err() {
        return !skip_or_fail("ts_client", "node is not installed");
    }
    if !driver_dir()
        .join("node_modules/@octopusdeploy/api-client")
        .exists()
    {
        return !skip_or_fail(
            "ts_client",
            "tests/ts-client/node_modules is missing; run `npm ci --prefix tests/ts-client`",
        );
    }
    true
}

fn run_flow(s: &Server, flow: &str, version: &str) -> (bool, String, Value) {
    let out = Command::new("node")
        .arg(driver_dir().join("flow.mjs"))
        .env("FERRY_URL", &s.url)
        .env("FERRY_API_KEY", &s.api_key)
        .env("FERRY_SPACE", "Default")
        .env("FERRY_PROJECT", "Hello World")
        .env("FERRY_ENVIRONMENT", "Development")
        .env("FERRY_RELEASE_VERSION", version)
        .env("FERRY_FLOW", flow)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let text = format!(
        "{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    (out.status.success(), text, result)
}

#[tokio::test]
async fn official_typescript_client_deploys_and_cancels() {
    if !ready() {
        return;
    }
    let s = Server::start();
    s.create_environment("Development").await;
    s.create_project("Hello World").await;
    s.set_scripts(
        "Hello World",
        &[("Say hello", "echo hello from the ts client test\nsleep 1")],
    )
    .await;

    let (ok, text, result) = run_flow(&s, "deploy", "1.0.0");
    assert!(ok, "deploy flow failed:\n{text}");
    assert_eq!(result["taskState"], "Success", "{text}");
    assert!(text.contains("hello from the ts client test"), "{text}");

    s.set_scripts("Hello World", &[("Wait", "sleep 30")]).await;
    let (ok, text, _) = run_flow(&s, "cancel", "2.0.0");
    assert!(ok, "cancel flow failed:\n{text}");
}

/// `PackageRepository.push` of a zip made by `ZipPackageBuilder`, in the three overwrite modes
/// (the flow reads each upload's status from the client's response hooks: the client itself
/// treats every 2xx alike), then the same statuses checked here directly over HTTP.
#[tokio::test]
async fn official_typescript_client_pushes_packages() {
    if !ready() {
        return;
    }
    let s = Server::start();
    let (ok, text, result) = run_flow(&s, "push", "1.0.0");
    assert!(ok, "push flow failed:\n{text}");
    assert_eq!(
        result["pushStatuses"],
        serde_json::json!([201, 200, 409, 201]),
        "{text}"
    );
    let p = s
        .get("/api/Spaces-1/packages/packages-FerryTsPush.1.0.0")
        .await;
    assert_eq!(p["FileExtension"], ".zip");
    assert_eq!(p["PackageVersionBuildInformation"]["BuildNumber"], "42");

    // Directly: the bytes the client pushed, pushed again in each mode.
    let url = format!(
        "{}/api/Spaces-1/packages/packages-FerryTsPush.1.0.0/raw",
        s.url
    );
    let http = reqwest::Client::new();
    let bytes = http
        .get(&url)
        .header("X-Octopus-ApiKey", &s.api_key)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    assert_eq!(bytes.len() as u64, p["PackageSizeBytes"].as_u64().unwrap());
    for (mode, expected) in [
        ("FailIfExists", 409),
        ("IgnoreIfExists", 200),
        ("OverwriteExisting", 201),
    ] {
        let part =
            reqwest::multipart::Part::bytes(bytes.clone()).file_name("FerryTsPush.1.0.0.zip");
        let status = http
            .post(format!(
                "{}/api/Spaces-1/packages/raw?overwriteMode={mode}",
                s.url
            ))
            .header("X-Octopus-ApiKey", &s.api_key)
            .multipart(reqwest::multipart::Form::new().part("fileToUpload", part))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), expected, "{mode}");
    }
}

#[tokio::test]
async fn official_typescript_client_deploys_tenanted_in_a_channel() {
    if !ready() {
        return;
    }
    let s = Server::start();
    let dev = s.create_environment("Development").await["Id"].clone();
    let mut p = s.create_project("Hello World").await;
    p["TenantedDeploymentMode"] = serde_json::json!("Tenanted");
    let pid = p["Id"].as_str().unwrap().to_string();
    s.put(&format!("/api/Spaces-1/projects/{pid}"), p).await;
    s.set_scripts(
        "Hello World",
        &[(
            "Say hello",
            "echo \"hello #{Octopus.Deployment.Tenant.Name} on #{Octopus.Release.Channel.Name}\"",
        )],
    )
    .await;
    let ch = s
        .post(
            "/api/Spaces-1/channels",
            serde_json::json!({"ProjectId": pid, "Name": "Hotfix"}),
        )
        .await;
    let channel_id = ch["Id"].as_str().unwrap().to_string();
    s.post(
        "/api/Spaces-1/tagsets",
        serde_json::json!({"Name": "Tier", "Tags": [{"Name": "Gold"}, {"Name": "Silver"}]}),
    )
    .await;
    for (name, tier, connected) in [
        ("Acme", "Gold", true),
        ("Globex", "Silver", true),
        ("Initech", "Gold", true),
        ("Umbrella", "Silver", true),
        ("Hooli", "Gold", false),
    ] {
        let mut body = serde_json::json!({"Name": name, "TenantTags": [format!("Tier/{tier}")]});
        if connected {
            body["ProjectEnvironments"] = serde_json::json!({&pid: [dev.clone()]});
        }
        let t = s.post("/api/Spaces-1/tenants", body).await;
        assert!(t["Id"].is_string(), "{t}");
    }

    let out = Command::new("node")
        .arg(driver_dir().join("flow.mjs"))
        .env("FERRY_URL", &s.url)
        .env("FERRY_API_KEY", &s.api_key)
        .env("FERRY_SPACE", "Default")
        .env("FERRY_PROJECT", "Hello World")
        .env("FERRY_ENVIRONMENT", "Development")
        .env("FERRY_RELEASE_VERSION", "1.0.0")
        .env("FERRY_FLOW", "tenanted")
        .env("FERRY_CHANNEL", "Hotfix")
        .env("FERRY_TENANTS", "Globex")
        .env("FERRY_TENANT_TAGS", "Tier/Gold")
        .env("FERRY_EXPECT_TENANTS", "Acme,Globex,Initech")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let text = format!(
        "{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tenanted flow failed:\n{text}");
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    assert_eq!(result["channelId"], Value::String(channel_id), "{text}");
    assert_eq!(
        result["tenants"],
        serde_json::json!(["Acme", "Globex", "Initech"]),
        "{text}"
    );
    // Each tenant's task ran with its own tenant name, in the Hotfix channel.
    let deployments = s.get("/api/Spaces-1/deployments?take=10").await;
    let mut seen = Vec::new();
    for d in deployments["Items"].as_array().unwrap() {
        let raw = s
            .raw(&format!("/api/tasks/{}/raw", d["TaskId"].as_str().unwrap()))
            .await;
        for name in ["Acme", "Globex", "Initech"] {
            if raw.contains(&format!("hello {name} on Hotfix")) {
                seen.push(name);
            }
        }
    }
    seen.sort();
    assert_eq!(seen, vec!["Acme", "Globex", "Initech"]);
}
