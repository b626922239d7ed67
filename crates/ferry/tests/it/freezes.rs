//! Deployment freezes through the real binary: CRUD and validation, an active freeze refusing
//! deployments of its projects × environments (REST and executions API), scheduled
//! deployments checked at their queue time, overrides recorded in the audit log, and expired
//! or scheduled freezes that do not block.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Server;

/// Now plus `hours` (may be negative), as RFC 3339.
fn at(hours: i64) -> String {
    (Utc::now() + chrono::Duration::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn errors(v: &Value) -> String {
    v["Errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

async fn deploy_rest(
    s: &Server,
    release_id: &str,
    env_id: &str,
    extra: Value,
) -> (StatusCode, Value) {
    let mut body = json!({"ReleaseId": release_id, "EnvironmentId": env_id});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    s.request("POST", "/api/Spaces-1/deployments", Some(body))
        .await
}

#[tokio::test]
async fn freezes_crud_and_validation() {
    let s = Server::start();
    let dev = s.create_environment("Development").await;
    let prod = s.create_environment("Production").await;
    let shop = s.create_project("Shop").await;
    let (dev_id, prod_id, shop_id) = (
        dev["Id"].as_str().unwrap(),
        prod["Id"].as_str().unwrap(),
        shop["Id"].as_str().unwrap(),
    );

    // Names and slugs are accepted in the scope and stored as ids.
    let (st, f) = s
        .request(
            "POST",
            "/api/deploymentfreezes",
            Some(json!({
                "Name": "Black Friday", "Start": at(-1), "End": at(1),
                "ProjectEnvironmentScope": {"shop": ["Production", dev_id]}
            })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{f}");
    let id = f["Id"].as_str().unwrap().to_string();
    assert!(id.starts_with("DeploymentFreezes-"), "{f}");
    assert_eq!(f["Status"], "Active");
    assert_eq!(
        f["ProjectEnvironmentScope"],
        json!({shop_id: [prod_id, dev_id]})
    );
    let got = s
        .get(&format!("/api/Spaces-1/deploymentfreezes/{id}"))
        .await;
    assert_eq!(got["Name"], "Black Friday");

    // Unique names (case-insensitively).
    let (st, v) = s
        .request(
            "POST",
            "/api/deploymentfreezes",
            Some(json!({"Name": "black friday", "Start": at(1), "End": at(2),
                "ProjectEnvironmentScope": {shop_id: [dev_id]}})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(errors(&v).contains("black friday"), "{v}");

    // Start must be before End; the message names both.
    let (st, v) = s
        .request(
            "POST",
            "/api/deploymentfreezes",
            Some(json!({"Name": "Backwards", "Start": at(2), "End": at(1),
                "ProjectEnvironmentScope": {shop_id: [dev_id]}})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let e = errors(&v);
    assert!(e.contains("Start") && e.contains("End"), "{e}");

    // Unknown projects and environments are named.
    let (st, v) = s
        .request(
            "POST",
            "/api/deploymentfreezes",
            Some(json!({"Name": "Ghosts", "Start": at(1), "End": at(2),
                "ProjectEnvironmentScope": {"Projects-999": [dev_id], shop_id: ["Nowhere"]}})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let e = errors(&v);
    assert!(e.contains("Projects-999") && e.contains("Nowhere"), "{e}");

    // An empty scope and a missing name are refused.
    let (st, v) = s
        .request(
            "POST",
            "/api/deploymentfreezes",
            Some(json!({"Name": "Empty", "Start": at(1), "End": at(2),
                "ProjectEnvironmentScope": {shop_id: []}})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(errors(&v).contains("ProjectEnvironmentScope"), "{v}");
    let (st, v) = s
        .request(
            "POST",
            "/api/deploymentfreezes",
            Some(json!({"Start": at(1), "End": at(2), "ProjectEnvironmentScope": {shop_id: [dev_id]}})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // Two more, with other statuses; list filters by status and partial name.
    s.post(
        "/api/deploymentfreezes",
        json!({"Name": "Last Year", "Start": at(-48), "End": at(-24),
            "ProjectEnvironmentScope": {shop_id: [dev_id]}}),
    )
    .await;
    s.post(
        "/api/deploymentfreezes",
        json!({"Name": "Christmas", "Start": at(24), "End": at(48),
            "ProjectEnvironmentScope": {shop_id: [dev_id]}}),
    )
    .await;
    let all = s.get("/api/deploymentfreezes").await;
    assert_eq!(all["TotalResults"], 3, "{all}");
    for (status, name) in [
        ("Active", "Black Friday"),
        ("Expired", "Last Year"),
        ("Scheduled", "Christmas"),
    ] {
        let l = s
            .get(&format!("/api/deploymentfreezes?status={status}"))
            .await;
        assert_eq!(l["TotalResults"], 1, "{status}: {l}");
        assert_eq!(l["Items"][0]["Name"], name);
        assert_eq!(l["Items"][0]["Status"], status);
    }
    let l = s.get("/api/deploymentfreezes?partialName=chris").await;
    assert_eq!(l["TotalResults"], 1, "{l}");
    let (st, _) = s
        .request("GET", "/api/deploymentfreezes?status=Melting", None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Update and delete, audited.
    let mut upd = got.clone();
    upd["Name"] = json!("Cyber Monday");
    let v = s.put(&format!("/api/deploymentfreezes/{id}"), upd).await;
    assert_eq!(v["Name"], "Cyber Monday");
    let (st, v) = s
        .request("DELETE", &format!("/api/deploymentfreezes/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s
        .request("GET", &format!("/api/deploymentfreezes/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let events = s.get(&format!("/api/events?regarding={id}")).await;
    let cats: Vec<&str> = events["Items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["Category"].as_str())
        .collect();
    for c in ["Created", "Modified", "Deleted"] {
        assert!(cats.contains(&c), "{c} in {events}");
    }
}

#[tokio::test]
async fn active_freezes_block_deployments_unless_overridden() {
    let s = Server::start();
    let dev = s.create_environment("Development").await;
    let test = s.create_environment("Test").await;
    let (dev_id, test_id) = (dev["Id"].as_str().unwrap(), test["Id"].as_str().unwrap());
    let mut releases = Vec::new();
    for p in ["Shop", "Blog"] {
        s.create_project(p).await;
        s.set_scripts(p, &[("Hello", "echo hello")]).await;
        let r = s.create_release(p, "1.0.0").await;
        releases.push(r["ReleaseId"].as_str().unwrap().to_string());
        // Development first, so the lifecycle allows Test.
        let task = s.deploy(p, "1.0.0", "Development").await;
        let t = s.wait_task(&task, Duration::from_secs(60)).await;
        assert_eq!(t["State"], "Success", "{t}");
    }
    let (shop_release, blog_release) = (releases[0].clone(), releases[1].clone());

    let f = s
        .post(
            "/api/deploymentfreezes",
            json!({"Name": "Black Friday", "Start": at(-1), "End": at(2),
                "ProjectEnvironmentScope": {"Shop": ["Test"]}}),
        )
        .await;

    // Shop to Test is refused, naming the freeze and its end.
    let (st, v) = deploy_rest(&s, &shop_release, test_id, json!({})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let msg = v["ErrorMessage"].as_str().unwrap();
    assert!(
        msg.contains("Deployments of Shop to Test are frozen by 'Black Friday' until"),
        "{msg}"
    );
    assert!(msg.contains(f["End"].as_str().unwrap()), "{msg}");
    assert!(errors(&v).contains("Black Friday"), "{v}");

    // The executions API too.
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Test"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(errors(&v).contains("Black Friday"), "{v}");
    // Several environments, one of them frozen: refused as a whole, nothing queued.
    let before = s.get("/api/Spaces-1/deployments").await["TotalResults"].clone();
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Development", "Test"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        s.get("/api/Spaces-1/deployments").await["TotalResults"],
        before
    );
    // The executions API takes an override reason too.
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Test"],
                        "DeploymentFreezeOverrideReason": "hotfix via the executions API"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        s.raw("/api/events?take=200")
            .await
            .contains("hotfix via the executions API")
    );

    // Shop to another environment, and another project to Test, still deploy.
    let (st, v) = deploy_rest(&s, &shop_release, dev_id, json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = deploy_rest(&s, &blog_release, test_id, json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");

    // A blank reason is no override.
    let (st, v) = deploy_rest(
        &s,
        &shop_release,
        test_id,
        json!({"DeploymentFreezeOverrideReason": "  "}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    // An override with a reason passes, and the reason is in the audit log.
    let (st, v) = deploy_rest(
        &s,
        &shop_release,
        test_id,
        json!({"DeploymentFreezeOverrideReason": "Payment outage hotfix"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let dep_id = v["Id"].as_str().unwrap().to_string();
    let events = s
        .get(&format!(
            "/api/events?regarding={dep_id}&eventCategories=DeploymentQueued"
        ))
        .await;
    let ev = events["Items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Category"] == "DeploymentQueued")
        .unwrap_or_else(|| panic!("no DeploymentQueued event: {events}"))
        .clone();
    assert!(
        ev["Message"]
            .as_str()
            .unwrap()
            .contains("Override of freeze 'Black Friday': Payment outage hotfix"),
        "{ev}"
    );

    // A scheduled deployment whose queue time falls in a future freeze is refused; one after
    // it is not blocked by that freeze.
    s.post(
        "/api/deploymentfreezes",
        json!({"Name": "Christmas", "Start": at(24), "End": at(48),
            "ProjectEnvironmentScope": {"Blog": ["Test"]}}),
    )
    .await;
    let (st, v) = deploy_rest(&s, &blog_release, test_id, json!({"QueueTime": at(30)})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(errors(&v).contains("Christmas"), "{v}");
    let (st, v) = deploy_rest(&s, &blog_release, test_id, json!({"QueueTime": at(60)})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");

    // Once the freeze is gone, an expired and a scheduled one do not block.
    let fid = f["Id"].as_str().unwrap();
    let (st, _) = s
        .request("DELETE", &format!("/api/deploymentfreezes/{fid}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    s.post(
        "/api/deploymentfreezes",
        json!({"Name": "Last Year", "Start": at(-48), "End": at(-24),
            "ProjectEnvironmentScope": {"Shop": ["Test"]}}),
    )
    .await;
    s.post(
        "/api/deploymentfreezes",
        json!({"Name": "Next Week", "Start": at(24 * 7), "End": at(24 * 8),
            "ProjectEnvironmentScope": {"Shop": ["Test"]}}),
    )
    .await;
    let (st, v) = deploy_rest(&s, &shop_release, test_id, json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Test"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}
