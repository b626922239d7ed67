//! The dashboard through the real binary: cells appear when deployments are queued, their
//! state follows the task to Success or Failed, a newer deployment replaces the cell and the
//! older successful one becomes the previous item, deleting a release rebuilds the cell,
//! paging by project group and by tenant (tenanted deployments through the executions API),
//! the dynamic dashboard's filters and bad parameters (400 naming them).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Server;

const WAIT: Duration = Duration::from_secs(60);

fn items_of<'a>(v: &'a Value, key: &str, project: &str, env: &str) -> Vec<&'a Value> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["ProjectId"] == project && i["EnvironmentId"] == env)
        .collect()
}

/// The one current item of a project × environment.
fn current<'a>(v: &'a Value, project: &str, env: &str) -> &'a Value {
    let found = items_of(v, "Items", project, env);
    assert_eq!(found.len(), 1, "one item for {project} × {env}: {v}");
    found[0]
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["Id"].as_str().unwrap().to_string())
        .collect()
}

async fn project_in(s: &Server, name: &str, group: &str) -> String {
    let p = s
        .post(
            "/api/Spaces-1/projects",
            json!({"Name": name, "ProjectGroupId": group}),
        )
        .await;
    p["Id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn dashboard_follows_deployments() {
    let s = Server::start();
    let dev = s.create_environment("Dev").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let prod = s.create_environment("Prod").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let app = s.create_project("App").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    s.set_scripts("App", &[("ok", "sleep 0.5; echo ok")]).await;
    s.create_release("App", "1.0.0").await;

    // Nothing deployed: the project is shown with its lifecycle's environments, no items.
    let d = s.get("/api/Spaces-1/dashboard").await;
    assert_eq!(d["Items"], json!([]));
    let proj = d["Projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Id"] == app.as_str())
        .unwrap()
        .clone();
    assert_eq!(proj["EnvironmentIds"], json!([dev, prod]));
    assert_eq!(proj["Name"], "App");
    assert_eq!(proj["CanPerformUntenantedDeployment"], true);
    assert_eq!(ids(&d, "Environments"), vec![dev.clone(), prod.clone()]);
    assert_eq!(d["IsFiltered"], false);

    // The documents a page shows are kept between requests, and a change shows at once:
    // a renamed project, a new environment.
    let mut body = s.get(&format!("/api/Spaces-1/projects/{app}")).await;
    body["Name"] = json!("App Renamed");
    s.put(&format!("/api/Spaces-1/projects/{app}"), body.clone())
        .await;
    let d = s.get("/api/Spaces-1/dashboard").await;
    assert!(d["Projects"].to_string().contains("App Renamed"), "{d}");
    body["Name"] = json!("App");
    s.put(&format!("/api/Spaces-1/projects/{app}"), body).await;
    let qa = s.create_environment("QA").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = s.get("/api/Spaces-1/dashboard").await;
    assert_eq!(
        ids(&d, "Environments"),
        vec![dev.clone(), prod.clone(), qa.clone()]
    );
    s.request("DELETE", &format!("/api/Spaces-1/environments/{qa}"), None)
        .await;
    let d = s.get("/api/Spaces-1/dashboard").await;
    assert_eq!(ids(&d, "Environments"), vec![dev.clone(), prod.clone()]);

    // Queued: the cell appears at once, with the release and the task.
    let t1 = s.deploy("App", "1.0.0", "Dev").await;
    let d = s.get("/api/Spaces-1/dashboard").await;
    let i = current(&d, &app, &dev);
    assert_eq!(i["ReleaseVersion"], "1.0.0");
    assert_eq!(i["TaskId"], t1.as_str());
    assert_eq!(i["IsCurrent"], true);
    assert_eq!(i["IsPrevious"], false);
    assert_eq!(i["TenantId"], Value::Null);
    assert!(
        ["Queued", "Executing"].contains(&i["State"].as_str().unwrap()),
        "{i}"
    );
    assert_eq!(i["IsCompleted"], false);
    let deployment = s
        .get(&format!(
            "/api/Spaces-1/deployments/{}",
            i["DeploymentId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(deployment["TaskId"], t1.as_str());
    assert_eq!(i["ChannelId"], deployment["ChannelId"]);
    assert!(items_of(&d, "Items", &app, &prod).is_empty());

    // The state follows the task to Success.
    s.wait_task(&t1, WAIT).await;
    let d = s.get("/api/Spaces-1/dashboard").await;
    let i = current(&d, &app, &dev);
    assert_eq!(i["State"], "Success");
    assert_eq!(i["IsCompleted"], true);
    assert!(i["CompletedTime"].as_str().unwrap().contains('T'));
    assert!(i["StartTime"].is_string());
    assert_eq!(d["PreviousItems"], json!([]));
    let first_deployment = i["DeploymentId"].as_str().unwrap().to_string();

    // A newer release that fails replaces the cell; 1.0.0 becomes the previous item.
    s.set_scripts("App", &[("boom", "echo broken >&2; exit 3")])
        .await;
    let r2 = s.create_release("App", "2.0.0").await;
    let t2 = s.deploy("App", "2.0.0", "Dev").await;
    s.wait_task(&t2, WAIT).await;
    let d = s.get("/api/Spaces-1/dashboard").await;
    let i = current(&d, &app, &dev);
    assert_eq!(i["ReleaseVersion"], "2.0.0");
    assert_eq!(i["State"], "Failed");
    assert_eq!(i["HasWarningsOrErrors"], true);
    assert!(!i["ErrorMessage"].as_str().unwrap().is_empty(), "{i}");
    let prev = items_of(&d, "PreviousItems", &app, &dev);
    assert_eq!(prev.len(), 1, "{d}");
    assert_eq!(prev[0]["DeploymentId"], first_deployment.as_str());
    assert_eq!(prev[0]["ReleaseVersion"], "1.0.0");
    assert_eq!(prev[0]["State"], "Success");
    assert_eq!(prev[0]["IsPrevious"], true);
    assert_eq!(prev[0]["IsCurrent"], false);

    // The dynamic dashboard: only what was asked for, previous items only when asked.
    let dy = s
        .get(&format!(
            "/api/Spaces-1/dashboard/dynamic?projects={app}&environments={dev}"
        ))
        .await;
    assert_eq!(dy["IsFiltered"], true);
    assert_eq!(ids(&dy, "Environments"), vec![dev.clone()]);
    assert_eq!(dy["Items"].as_array().unwrap().len(), 1);
    assert_eq!(dy["PreviousItems"], json!([]));
    let dy = s
        .get(&format!(
            "/api/Spaces-1/dashboard/dynamic?projects={app}&environments={prod}&includePrevious=true"
        ))
        .await;
    assert_eq!(dy["Items"], json!([]));
    assert_eq!(dy["PreviousItems"], json!([]));

    // Deleting release 2.0.0 rebuilds the cell from the deployments that remain.
    let (st, v) = s
        .request(
            "DELETE",
            &format!(
                "/api/Spaces-1/releases/{}",
                r2["ReleaseId"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let d = s.get("/api/Spaces-1/dashboard").await;
    let i = current(&d, &app, &dev);
    assert_eq!(i["ReleaseVersion"], "1.0.0");
    assert_eq!(i["State"], "Success");
    assert_eq!(i["DeploymentId"], first_deployment.as_str());
    assert_eq!(d["PreviousItems"], json!([]));

    // Bad parameters are refused, naming the parameter.
    for (query, name) in [
        ("take=abc", "take"),
        ("skip=-1", "skip"),
        ("tenantTake=x", "tenantTake"),
        ("includePrevious=maybe", "includePrevious"),
        ("showAll=perhaps", "showAll"),
    ] {
        let (st, v) = s
            .request("GET", &format!("/api/Spaces-1/dashboard?{query}"), None)
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert!(v.to_string().contains(&format!("'{name}'")), "{query}: {v}");
    }
    let (st, _) = s.request("GET", "/api/Spaces-9/dashboard", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dashboard_is_paged_by_project_group() {
    let s = Server::start();
    let dev = s.create_environment("Dev").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = s.get("/api/Spaces-1/dashboard").await["TotalProjectGroups"]
        .as_i64()
        .unwrap();
    let mut groups = Vec::new();
    let mut projects = Vec::new();
    for g in ["Alpha", "Beta", "Gamma"] {
        let gid = s
            .post("/api/Spaces-1/projectgroups", json!({"Name": g}))
            .await["Id"]
            .as_str()
            .unwrap()
            .to_string();
        for n in 1..=2 {
            let name = format!("{g} {n}");
            let pid = project_in(&s, &name, &gid).await;
            s.set_scripts(&name, &[("ok", "true")]).await;
            s.create_release(&name, "1.0.0").await;
            projects.push((gid.clone(), pid));
        }
        groups.push(gid);
    }
    let mut tasks = Vec::new();
    for (i, g) in ["Alpha", "Beta", "Gamma"].iter().enumerate() {
        tasks.push(s.deploy(&format!("{g} 1"), "1.0.0", "Dev").await);
        if i == 1 {
            tasks.push(s.deploy(&format!("{g} 2"), "1.0.0", "Dev").await);
        }
    }
    for t in &tasks {
        s.wait_task(t, WAIT).await;
    }

    let total = before + 3;
    let all = s.get("/api/Spaces-1/dashboard").await;
    assert_eq!(all["TotalProjectGroups"], total);
    assert_eq!(all["Items"].as_array().unwrap().len(), 4);

    // One group per page, skipping the groups that existed before ("Default Project Group").
    for (n, gid) in groups.iter().enumerate() {
        let skip = before + i64::try_from(n).unwrap();
        let page = s
            .get(&format!("/api/Spaces-1/dashboard?skip={skip}&take=1"))
            .await;
        assert_eq!(ids(&page, "ProjectGroups"), vec![gid.clone()], "{page}");
        let mine: Vec<String> = projects
            .iter()
            .filter(|(g, _)| g == gid)
            .map(|(_, p)| p.clone())
            .collect();
        assert_eq!(ids(&page, "Projects"), mine);
        let expected_items = if n == 1 { 2 } else { 1 };
        let items = page["Items"].as_array().unwrap();
        assert_eq!(items.len(), expected_items, "{page}");
        assert!(items.iter().all(
            |i| mine.contains(&i["ProjectId"].as_str().unwrap().to_string())
                && i["EnvironmentId"] == dev.as_str()
                && i["State"] == "Success"
        ));
        assert_eq!(page["ProjectGroups"][0]["EnvironmentIds"], json!([dev]));
        let next = page["Links"]["Page.Next"].as_str();
        if skip + 1 < total {
            assert_eq!(
                next,
                Some(
                    format!(
                        "/api/Spaces-1/dashboard?skip={}&take=1&tenantSkip=0&tenantTake=30",
                        skip + 1
                    )
                    .as_str()
                )
            );
        } else {
            assert!(next.is_none(), "{page}");
        }
    }

    // Filtering by group or by project keeps the paging over what is left.
    let one = s
        .get(&format!(
            "/api/Spaces-1/dashboard?projectGroupId={}",
            groups[1]
        ))
        .await;
    assert_eq!(ids(&one, "ProjectGroups"), vec![groups[1].clone()]);
    assert_eq!(one["TotalProjectGroups"], 1);
    assert_eq!(one["IsFiltered"], true);
    let p = &projects[5].1;
    let one = s
        .get(&format!("/api/Spaces-1/dashboard?projectIds={p}"))
        .await;
    assert_eq!(ids(&one, "Projects"), vec![p.clone()]);
    assert_eq!(ids(&one, "ProjectGroups"), vec![groups[2].clone()]);
    assert_eq!(
        one["Items"].as_array().unwrap().len(),
        0,
        "Gamma 2 was not deployed"
    );
}

#[tokio::test]
async fn tenant_rows_are_paged() {
    let s = Server::start();
    let dev = s.create_environment("Dev").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let shop = s
        .post(
            "/api/Spaces-1/projects",
            json!({"Name": "Shop", "TenantedDeploymentMode": "TenantedOrUntenanted"}),
        )
        .await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    s.set_scripts("Shop", &[("ok", "true")]).await;
    s.create_release("Shop", "1.0.0").await;
    let mut tenants = Vec::new();
    for name in ["Acme", "Globex"] {
        let t = s
            .post(
                "/api/Spaces-1/tenants",
                json!({"Name": name, "ProjectEnvironments": {&shop: [&dev]}}),
            )
            .await;
        tenants.push(t["Id"].as_str().unwrap().to_string());
    }
    let v = s
        .post(
            "/api/Spaces-1/deployments/create/tenanted/v1",
            json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.0", "EnvironmentName": "Dev",
                   "Tenants": ["Acme", "Globex"]}),
        )
        .await;
    let mut tasks: Vec<String> = v["DeploymentServerTasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["ServerTaskId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tasks.len(), 2, "{v}");
    tasks.push(s.deploy("Shop", "1.0.0", "Dev").await);
    for t in &tasks {
        s.wait_task(t, WAIT).await;
    }

    let tenant_of = |i: &Value| i["TenantId"].as_str().map(str::to_string);
    let rows = |d: &Value| -> Vec<Option<String>> {
        let mut r: Vec<Option<String>> = items_of(d, "Items", &shop, &dev)
            .into_iter()
            .map(tenant_of)
            .collect();
        r.sort();
        r
    };
    let d = s.get("/api/Spaces-1/dashboard").await;
    assert_eq!(
        rows(&d),
        vec![None, Some(tenants[0].clone()), Some(tenants[1].clone())]
    );
    assert!(
        items_of(&d, "Items", &shop, &dev)
            .iter()
            .all(|i| i["State"] == "Success")
    );
    assert_eq!(ids(&d, "Tenants"), tenants);
    assert_eq!(
        d["Tenants"][0]["ProjectEnvironments"],
        json!({&shop: [&dev]})
    );
    assert_eq!(d["TotalTenants"], 2);
    let p = d["Projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Id"] == shop.as_str())
        .unwrap();
    assert_eq!(p["TenantedDeploymentMode"], "TenantedOrUntenanted");

    // One tenant per page: the untenanted row and that tenant's.
    let first = s.get("/api/Spaces-1/dashboard?tenantTake=1").await;
    assert_eq!(rows(&first), vec![None, Some(tenants[0].clone())]);
    assert_eq!(ids(&first, "Tenants"), vec![tenants[0].clone()]);
    assert_eq!(
        first["Links"]["Tenants.Next"],
        "/api/Spaces-1/dashboard?skip=0&take=20&tenantSkip=1&tenantTake=1"
    );
    let second = s
        .get("/api/Spaces-1/dashboard?tenantSkip=1&tenantTake=1")
        .await;
    assert_eq!(rows(&second), vec![None, Some(tenants[1].clone())]);
    assert!(second["Links"].get("Tenants.Next").is_none());
    // Or the tenants asked for.
    let only = s
        .get(&format!("/api/Spaces-1/dashboard?tenantIds={}", tenants[1]))
        .await;
    assert_eq!(rows(&only), vec![None, Some(tenants[1].clone())]);
    assert_eq!(only["IsFiltered"], true);
}
