//! Teams, roles and scoped grants through the real binary: "testers deploy to Test but not to
//! Production", refusals that name the permission and the teams holding it, read paths that
//! hide what a scoped user may not see, responsible teams on manual interventions, and no
//! escalation through team or grant edits.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Server;

const SP: &str = "/api/Spaces-1";

fn said(v: &Value) -> String {
    let mut out = v["ErrorMessage"].as_str().unwrap_or_default().to_string();
    for e in v["Errors"].as_array().into_iter().flatten() {
        out.push_str(" | ");
        out.push_str(e.as_str().unwrap_or_default());
    }
    out
}

fn id(v: &Value) -> String {
    v["Id"]
        .as_str()
        .unwrap_or_else(|| panic!("no Id: {v}"))
        .to_string()
}

/// Creates a user with a password and returns (user id, API key).
async fn user(s: &Server, name: &str) -> (String, String) {
    let u = s
        .post(
            "/api/users",
            json!({"Username": name, "DisplayName": name, "Password": "correct horse battery"}),
        )
        .await;
    let uid = id(&u);
    let k = s
        .post(
            &format!("/api/users/{uid}/apikeys"),
            json!({"Purpose": "tests"}),
        )
        .await;
    (uid, k["ApiKey"].as_str().unwrap().to_string())
}

async fn team(s: &Server, name: &str, members: &[&str]) -> String {
    id(&s
        .post(
            &format!("{SP}/teams"),
            json!({"Name": name, "MemberUserIds": members}),
        )
        .await)
}

async fn grant(s: &Server, team: &str, role: &str, scope: Value) -> Value {
    let mut body = json!({"TeamId": team, "UserRoleId": role, "SpaceId": "Spaces-1"});
    for (k, v) in scope.as_object().unwrap() {
        body[k] = v.clone();
    }
    s.post(&format!("{SP}/scopeduserroles"), body).await
}

async fn as_user(
    s: &Server,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    s.request_with_key(method, path, body, Some(key)).await
}

fn deploy_body(project: &str, version: &str, envs: &[&str]) -> Value {
    json!({"ProjectName": project, "ReleaseVersion": version, "EnvironmentNames": envs})
}

async fn count(s: &Server, path: &str) -> i64 {
    s.get(path).await["TotalResults"].as_i64().unwrap()
}

#[tokio::test]
async fn testers_deploy_to_test_but_not_production() {
    let s = Server::start();
    let test = id(&s.create_environment("Test").await);
    let prod = id(&s.create_environment("Production").await);
    s.create_project("Web").await;
    s.set_scripts(
        "Web",
        &[("Say", "echo hello from #{Octopus.Environment.Name}")],
    )
    .await;
    let (tess, tess_key) = user(&s, "tess").await;
    let testers = team(&s, "Testers", &[&tess]).await;
    grant(
        &s,
        &testers,
        "userroles-projectdeployer",
        json!({"EnvironmentIds": [test]}),
    )
    .await;
    grant(&s, &testers, "userroles-projectviewer", json!({})).await;

    // A deployer does not create releases: the refusal names the permission and its holders.
    let (st, v) = as_user(
        &s,
        &tess_key,
        "POST",
        &format!("{SP}/releases/create/v1"),
        Some(json!({"ProjectName": "Web", "ReleaseVersion": "1.0.0"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(said(&v).contains("ReleaseCreate"), "{v}");
    assert!(said(&v).contains("Octopus Administrators"), "{v}");
    s.create_release("Web", "1.0.0").await;

    // Test: allowed. Production: refused, naming DeploymentCreate and the environment.
    let (st, v) = as_user(
        &s,
        &tess_key,
        "POST",
        &format!("{SP}/deployments/create/untenanted/v1"),
        Some(deploy_body("Web", "1.0.0", &["Test"])),
    )
    .await;
    assert!(st.is_success(), "{st} {v}");
    let task = v["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Success", "{t}");
    let before = count(&s, &format!("{SP}/deployments")).await;
    let (st, v) = as_user(
        &s,
        &tess_key,
        "POST",
        &format!("{SP}/deployments/create/untenanted/v1"),
        Some(deploy_body("Web", "1.0.0", &["Production"])),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(said(&v).contains("DeploymentCreate"), "{v}");
    assert!(said(&v).contains(&prod), "{v}");
    assert!(said(&v).contains("Space Managers"), "{v}");
    // Both at once: refused before anything is queued (no deployment to Test either).
    let (st, v) = as_user(
        &s,
        &tess_key,
        "POST",
        &format!("{SP}/deployments/create/untenanted/v1"),
        Some(deploy_body("Web", "1.0.0", &["Test", "Production"])),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(count(&s, &format!("{SP}/deployments")).await, before);
    // The REST deployments endpoint decides the same.
    let release = s.get(&format!("{SP}/projects/Web/releases/1.0.0")).await;
    let (st, v) = as_user(
        &s,
        &tess_key,
        "POST",
        &format!("{SP}/deployments"),
        Some(json!({"ReleaseId": id(&release), "EnvironmentId": prod})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");

    // The explanation of her permissions shows the restriction.
    let perms = s.get(&format!("/api/users/{tess}/permissions")).await;
    let dc = &perms["SpacePermissions"]["DeploymentCreate"];
    assert_eq!(
        dc[0]["RestrictedToEnvironmentIds"],
        json!([test]),
        "{perms}"
    );
    assert!(perms["Teams"].to_string().contains("Testers"), "{perms}");
    // She may read her own, not someone else's.
    let (st, _) = as_user(
        &s,
        &tess_key,
        "GET",
        &format!("/api/users/{tess}/permissions"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = as_user(&s, &tess_key, "GET", "/api/users/Users-1/permissions", None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");

    // No escalation: she cannot add herself to the administrators, or grant herself roles.
    let (st, v) = as_user(
        &s,
        &tess_key,
        "PUT",
        "/api/teams/teams-administrators",
        Some(json!({"Name": "Octopus Administrators", "MemberUserIds": ["Users-1", tess]})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = as_user(
        &s,
        &tess_key,
        "POST",
        &format!("{SP}/scopeduserroles"),
        Some(json!({"TeamId": testers, "UserRoleId": "userroles-spacemanager", "SpaceId": "Spaces-1"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let admins = s.get("/api/teams/teams-administrators").await;
    assert_eq!(admins["MemberUserIds"], json!(["Users-1"]), "{admins}");
}

#[tokio::test]
async fn scoped_viewers_see_only_their_projects() {
    let s = Server::start();
    s.create_environment("Test").await;
    let a = id(&s.create_project("Alpha").await);
    let b = id(&s.create_project("Beta").await);
    for p in ["Alpha", "Beta"] {
        s.set_scripts(p, &[("Say", "echo hi")]).await;
        s.create_release(p, "1.0.0").await;
    }
    let ta = s.deploy("Alpha", "1.0.0", "Test").await;
    let tb = s.deploy("Beta", "1.0.0", "Test").await;
    s.wait_task(&ta, Duration::from_secs(60)).await;
    s.wait_task(&tb, Duration::from_secs(60)).await;

    let (vic, key) = user(&s, "vic").await;
    let viewers = team(&s, "Beta viewers", &[&vic]).await;
    grant(
        &s,
        &viewers,
        "userroles-projectviewer",
        json!({"ProjectIds": [b]}),
    )
    .await;

    let get = |path: String| {
        let s = &s;
        let key = key.clone();
        async move { as_user(s, &key, "GET", &path, None).await }
    };
    let (st, v) = get(format!("{SP}/projects")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["TotalResults"], 1, "{v}");
    assert_eq!(v["Items"][0]["Id"], json!(b));
    let (st, v) = get(format!("{SP}/projects/{a}")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(said(&v).contains("ProjectView"), "{v}");
    let (_, v) = get(format!("{SP}/projects/{b}")).await;
    assert_eq!(v["Name"], "Beta");

    // Tasks: the list and the single task, in the space and system-wide.
    for path in [format!("{SP}/tasks"), "/api/tasks".to_string()] {
        let (st, v) = get(path.clone()).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let ids: Vec<&str> = v["Items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["Id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&tb.as_str()), "{path}: {v}");
        assert!(!ids.contains(&ta.as_str()), "{path}: {v}");
    }
    let (st, _) = get(format!("/api/tasks/{ta}")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = get(format!("/api/tasks/{ta}/raw")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = get(format!("/api/tasks/{tb}/details")).await;
    assert_eq!(st, StatusCode::OK);

    // Deployments, releases, the dashboard and the audit log.
    let (_, v) = get(format!("{SP}/deployments")).await;
    assert_eq!(v["TotalResults"], 1, "{v}");
    assert_eq!(v["Items"][0]["ProjectId"], json!(b));
    let (_, v) = get(format!("{SP}/releases")).await;
    assert_eq!(v["TotalResults"], 1, "{v}");
    let (_, v) = get(format!("{SP}/dashboard")).await;
    assert_eq!(v["Projects"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["Items"].to_string().contains(&b), "{v}");
    assert!(!v["Items"].to_string().contains(&a), "{v}");
    let (_, v) = get(format!("{SP}/events")).await;
    let text = v.to_string();
    assert!(
        !text.contains(&ta),
        "an event about Alpha's deployment leaked: {text}"
    );
    // Writes need more than viewing.
    let (st, v) = as_user(
        &s,
        &key,
        "POST",
        &format!("{SP}/deployments/create/untenanted/v1"),
        Some(deploy_body("Beta", "1.0.0", &["Test"])),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // And a user in no team sees nothing.
    let (_, nobody) = user(&s, "nobody").await;
    let (st, v) = as_user(&s, &nobody, "GET", &format!("{SP}/projects"), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = as_user(&s, &nobody, "GET", "/api/users/me", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// Waits for the task's pending interruption.
async fn pending(s: &Server, task: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = s
            .get(&format!(
                "{SP}/interruptions?regarding={task}&pendingOnly=true"
            ))
            .await;
        if let Some(i) = list["Items"].as_array().and_then(|a| a.first()) {
            return i.clone();
        }
        assert!(Instant::now() < deadline, "no interruption for {task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn only_responsible_teams_answer_a_manual_intervention() {
    let s = Server::start();
    s.create_environment("Production").await;
    s.create_project("Gated").await;
    let (ann, ann_key) = user(&s, "ann").await;
    let (bob, bob_key) = user(&s, "bob").await;
    let approvers = team(&s, "Approvers", &[&ann]).await;
    let deployers = team(&s, "Deployers", &[&ann, &bob]).await;
    grant(&s, &deployers, "userroles-projectdeployer", json!({})).await;
    s.put(
        &format!("{SP}/projects/Gated/deploymentprocesses"),
        json!({"Steps": [
            {"Name": "Approve", "Actions": [{"ActionType": "Octopus.Manual", "Properties": {
                "Octopus.Action.Manual.Instructions": "Approve it",
                "Octopus.Action.Manual.ResponsibleTeamIds": approvers}}]}
        ]}),
    )
    .await;
    s.create_release("Gated", "1.0.0").await;
    let task = s.deploy("Gated", "1.0.0", "Production").await;
    let i = pending(&s, &task).await;
    let iid = id(&i);
    // Bob may deploy but is not an approver.
    for (method, path, body) in [
        (
            "PUT",
            format!("{SP}/interruptions/{iid}/responsible"),
            json!({}),
        ),
        (
            "POST",
            format!("{SP}/interruptions/{iid}/submit"),
            json!({"Result": "Proceed"}),
        ),
    ] {
        let (st, v) = as_user(&s, &bob_key, method, &path, Some(body)).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{method} {path}: {v}");
        assert!(said(&v).contains("Approvers"), "{v}");
    }
    // Ann is.
    let (st, v) = as_user(
        &s,
        &ann_key,
        "POST",
        &format!("{SP}/interruptions/{iid}/submit"),
        Some(json!({"Result": "Proceed", "Notes": "ok"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t = s.wait_task(&task, Duration::from_secs(30)).await;
    assert_eq!(t["State"], "Success", "{t}");
    let _ = bob;
}

#[tokio::test]
async fn roles_and_grants_are_validated() {
    let s = Server::start();
    let roles = s.get("/api/userroles").await;
    let names: Vec<&str> = roles["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap())
        .collect();
    for n in [
        "System administrator",
        "Space manager",
        "Project deployer",
        "Project viewer",
        "Project contributor",
        "Project lead",
        "Environment manager",
        "Environment viewer",
        "Tenant manager",
        "Package publisher",
        "Certificate manager",
    ] {
        assert!(names.contains(&n), "{n} missing: {names:?}");
    }
    // Custom roles: permission names are checked and kept apart by level.
    let (st, v) = s
        .request(
            "POST",
            "/api/userroles",
            Some(json!({"Name": "Odd", "GrantedSpacePermissions": ["DeploymentCreate", "Nope", "AdministerSystem"]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(said(&v).contains("'Nope' is not a permission"), "{v}");
    assert!(
        said(&v).contains("AdministerSystem is a system permission"),
        "{v}"
    );
    let custom = s
        .post(
            "/api/userroles",
            json!({"Name": "Deploy only", "GrantedSpacePermissions": ["DeploymentCreate", "ProjectView"]}),
        )
        .await;
    assert_eq!(custom["CanBeDeleted"], true);
    let (st, _) = s
        .request("DELETE", "/api/userroles/userroles-projectviewer", None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Grants: unknown team, role and scope objects are named.
    let t = team(&s, "Ops", &[]).await;
    let (st, v) = s
        .request(
            "POST",
            &format!("{SP}/scopeduserroles"),
            Some(json!({"TeamId": t, "UserRoleId": "userroles-nope"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s
        .request(
            "POST",
            &format!("{SP}/scopeduserroles"),
            Some(json!({"TeamId": t, "UserRoleId": id(&custom), "EnvironmentIds": ["Environments-404"]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(said(&v).contains("Environments-404"), "{v}");
    let g = grant(&s, &t, &id(&custom), json!({})).await;
    let listed = s.get(&format!("/api/teams/{t}/scopeduserroles")).await;
    assert_eq!(listed["TotalResults"], 1, "{listed}");
    // A role in use cannot be deleted; the grant can.
    let (st, _) = s
        .request("DELETE", &format!("/api/userroles/{}", id(&custom)), None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .request("DELETE", &format!("/api/scopeduserroles/{}", id(&g)), None)
        .await;
    assert!(st.is_success());
    // Built-in teams: listed, not deletable; the administrators keep a member.
    let teams = s.get("/api/teams").await;
    let text = teams.to_string();
    for n in [
        "Everyone",
        "Octopus Administrators",
        "Space Managers",
        "Ops",
    ] {
        assert!(text.contains(n), "{n}: {text}");
    }
    let (st, _) = s.request("DELETE", "/api/teams/teams-everyone", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, v) = s
        .request(
            "PUT",
            "/api/teams/teams-administrators",
            Some(json!({"Name": "Octopus Administrators", "MemberUserIds": []})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // A new space gets its own managers team.
    let space = s.post("/api/spaces", json!({"Name": "Second"})).await;
    let sid = id(&space);
    let teams = s.get(&format!("/api/{sid}/teams")).await;
    assert!(
        teams
            .to_string()
            .contains(&format!("teams-spacemanagers-{sid}")),
        "{teams}"
    );
}

/// The RBAC matrix through the real binary: every built-in role, unscoped and scoped (to one
/// project and one environment), × every GET route of the server's own table
/// (`/api/openapi.json`) × an object in scope and one out of scope. The expected decision is
/// computed here from the roles (`/api/userroles`) and the permissions' scope dimensions
/// (`/api/permissions/all`); a refusal must be a 403 and nothing else may be. Routes whose
/// handlers decide further (users, teams, grants) are covered by the tests above. Tenant
/// restrictions are covered by the in-process matrix over every route (`authz` unit tests).
#[tokio::test]
async fn rbac_matrix_over_get_routes() {
    let s = Server::start();
    let test = id(&s.create_environment("Test").await);
    let prod = id(&s.create_environment("Production").await);
    let other_group = id(&s
        .post(&format!("{SP}/projectgroups"), json!({"Name": "Other"}))
        .await);
    let alpha = s.create_project("Alpha").await;
    let beta = s
        .post(
            &format!("{SP}/projects"),
            json!({"Name": "Beta", "ProjectGroupId": other_group}),
        )
        .await;
    for p in ["Alpha", "Beta"] {
        s.set_scripts(p, &[("Say", "echo hi")]).await;
    }
    let ra = s.create_release("Alpha", "1.0.0").await;
    let rb = s.create_release("Beta", "1.0.0").await;
    let ta = s.deploy("Alpha", "1.0.0", "Test").await;
    let first = s.deploy("Beta", "1.0.0", "Test").await;
    s.wait_task(&first, Duration::from_secs(60)).await;
    let tb = s.deploy("Beta", "1.0.0", "Production").await;
    s.wait_task(&ta, Duration::from_secs(60)).await;
    s.wait_task(&tb, Duration::from_secs(60)).await;
    // The deployment of each task.
    let deps = s.get(&format!("{SP}/deployments")).await;
    let deployment_of = |task: &str| {
        deps["Items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["TaskId"] == json!(task))
            .map(id)
            .unwrap()
    };
    let (da, db) = (deployment_of(&ta), deployment_of(&tb));
    let ta_tenant = id(&s
        .post(&format!("{SP}/tenants"), json!({"Name": "Acme"}))
        .await);
    let tb_tenant = id(&s
        .post(&format!("{SP}/tenants"), json!({"Name": "Globex"}))
        .await);
    let channel = |p: &Value| {
        let s = &s;
        let pid = id(p);
        async move { id(&s.get(&format!("{SP}/projects/{pid}/channels")).await["Items"][0]) }
    };
    let (ca, cb) = (channel(&alpha).await, channel(&beta).await);
    // Objects in scope (Alpha, Test) and out of scope (Beta, Production), per collection.
    let object = |collection: &str, inside: bool| -> String {
        let pick = |a: &str, b: &str| if inside { a.to_string() } else { b.to_string() };
        match collection {
            "projects" => pick(&id(&alpha), &id(&beta)),
            "releases" => pick(
                ra["ReleaseId"].as_str().unwrap(),
                rb["ReleaseId"].as_str().unwrap(),
            ),
            "channels" => pick(&ca, &cb),
            "deploymentprocesses" => pick(
                alpha["DeploymentProcessId"].as_str().unwrap(),
                beta["DeploymentProcessId"].as_str().unwrap(),
            ),
            "variables" => pick(
                alpha["VariableSetId"].as_str().unwrap(),
                beta["VariableSetId"].as_str().unwrap(),
            ),
            "deployments" => pick(&da, &db),
            "tasks" => pick(&ta, &tb),
            "environments" => pick(&test, &prod),
            "tenants" => pick(&ta_tenant, &tb_tenant),
            _ => "Missing-404".to_string(),
        }
    };
    // Which dimensions an object of a collection names.
    let names = |collection: &str| -> (bool, bool) {
        match collection {
            "projects" | "releases" | "channels" | "deploymentprocesses" | "variables" => {
                (true, false)
            }
            "deployments" | "tasks" => (true, true),
            "environments" => (false, true),
            _ => (false, false),
        }
    };

    // One service account per role and variant, each in its own team.
    let roles = s.get("/api/userroles?take=100").await["Items"]
        .as_array()
        .unwrap()
        .clone();
    let dims = s.get("/api/permissions/all").await;
    let mut principals = Vec::new();
    for role in roles.iter().filter(|r| r["CanBeDeleted"] == json!(false)) {
        for scoped in [false, true] {
            let rid = id(role);
            let name = format!("{}-{}", rid.trim_start_matches("userroles-"), scoped);
            let u = s
                .post(
                    "/api/users",
                    json!({"Username": name, "DisplayName": name, "IsService": true}),
                )
                .await;
            let uid = id(&u);
            let key = s
                .post(
                    &format!("/api/users/{uid}/apikeys"),
                    json!({"Purpose": "matrix"}),
                )
                .await["ApiKey"]
                .as_str()
                .unwrap()
                .to_string();
            let t = id(&s
                .post("/api/teams", json!({"Name": name, "MemberUserIds": [uid]}))
                .await);
            if !role["GrantedSystemPermissions"]
                .as_array()
                .unwrap()
                .is_empty()
            {
                s.post(
                    "/api/scopeduserroles",
                    json!({"TeamId": t, "UserRoleId": rid}),
                )
                .await;
            }
            if !role["GrantedSpacePermissions"]
                .as_array()
                .unwrap()
                .is_empty()
            {
                let mut g = json!({"TeamId": t, "UserRoleId": rid, "SpaceId": "Spaces-1"});
                if scoped {
                    g["ProjectIds"] = json!([id(&alpha)]);
                    g["EnvironmentIds"] = json!([test]);
                }
                s.post("/api/scopeduserroles", g).await;
            }
            principals.push((role.clone(), scoped, key));
        }
    }

    let openapi = s.get("/api/openapi.json").await;
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, ops) in openapi["paths"].as_object().unwrap() {
        if let Some(op) = ops.get("get") {
            let skip = [
                "/api/users",
                "/api/teams",
                "/api/scopeduserroles",
                "/api/userroles",
            ]
            .iter()
            .any(|p| path.starts_with(p))
                || path.starts_with("/api/{space_id}/teams")
                || path.starts_with("/api/{space_id}/scopeduserroles")
                || path.contains("{version}");
            if !skip {
                routes.push((
                    path.clone(),
                    op["x-ferry-permission"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    let holds = |role: &Value, field: &str, perm: &str| {
        role[field]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str() == Some(perm))
    };
    let mut cells = 0;
    let mut refused = 0;
    let mut mismatches = Vec::new();
    for (route, perm) in &routes {
        let segs: Vec<&str> = route.split('/').collect();
        let collection_at = segs
            .iter()
            .position(|s| *s == "{id}")
            .map(|i| segs[i - 1].to_string());
        let system = dims[perm.as_str()]["CanApplyAtSystemLevel"] == json!(true);
        let restrictions = dims[perm.as_str()]["SupportedRestrictions"].to_string();
        for inside in [true, false] {
            let collection = collection_at.clone().unwrap_or_default();
            let path: String = segs
                .iter()
                .map(|seg| match *seg {
                    "{space_id}" => "Spaces-1".to_string(),
                    "{id}" => object(&collection, inside),
                    s if s.starts_with('{') => "Missing-404".to_string(),
                    s => s.to_string(),
                })
                .collect::<Vec<_>>()
                .join("/");
            let (names_project, names_env) = names(&collection);
            let relevant = (names_project && restrictions.contains("\"Projects\""))
                || (names_env && restrictions.contains("\"Environments\""));
            for (role, scoped, key) in &principals {
                cells += 1;
                let admin = holds(role, "GrantedSystemPermissions", "AdministerSystem");
                let expected = match perm.as_str() {
                    "Anonymous" | "Authenticated" => true,
                    _ if admin => true,
                    _ if system => holds(role, "GrantedSystemPermissions", perm),
                    _ if !holds(role, "GrantedSpacePermissions", perm) => false,
                    _ => !*scoped || inside || !relevant,
                };
                let (st, v) = as_user(&s, key, "GET", &path, None).await;
                let got = st != StatusCode::FORBIDDEN;
                if !got {
                    refused += 1;
                }
                if st == StatusCode::UNAUTHORIZED || got != expected {
                    mismatches.push(format!(
                        "GET {path} ({perm}) as {} {}: expected {}, got {st} {}",
                        role["Name"],
                        if *scoped { "scoped" } else { "unscoped" },
                        if expected { "allowed" } else { "403" },
                        said(&v)
                    ));
                }
            }
        }
    }
    let summary = format!(
        "HTTP RBAC matrix: {} roles x 2 scopes x {} GET routes x 2 objects = {cells} cells ({refused} refused), {} mismatches",
        principals.len() / 2,
        routes.len(),
        mismatches.len()
    );
    println!("{summary}");
    // scripts/test.sh prints it after the run.
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rbac-matrix.txt"),
        format!("{summary}\n"),
    );
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(cells > 2000, "{cells}");
    assert!(
        refused > 1000 && refused < cells - 1000,
        "{refused} of {cells}"
    );
}

/// The audit log records the client's address: the socket's, or behind a trusted proxy the
/// right-most untrusted `X-Forwarded-For` hop (a forged left-most entry is ignored).
#[tokio::test]
async fn audit_records_the_client_behind_a_trusted_proxy() {
    let create = |s: &Server, name: &str, forwarded: &str| {
        let url = format!("{}{SP}/environments", s.url);
        let key = s.api_key.clone();
        let (name, forwarded) = (name.to_string(), forwarded.to_string());
        async move {
            let v: Value = reqwest::Client::new()
                .post(url)
                .header("X-Octopus-ApiKey", key)
                .header("X-Forwarded-For", forwarded)
                .json(&json!({"Name": name}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            id(&v)
        }
    };
    let direct = Server::start();
    let env = create(&direct, "Test", "203.0.113.5").await;
    assert_eq!(ip_of(&direct, &env).await, "127.0.0.1");
    let proxied = Server::start_with(crate::harness::Opts {
        args: vec!["--trusted-proxy".into(), "127.0.0.1/32".into()],
        ..Default::default()
    });
    let env = create(&proxied, "Test", "6.6.6.6, 203.0.113.5").await;
    assert_eq!(ip_of(&proxied, &env).await, "203.0.113.5");
}

async fn ip_of(s: &Server, env: &str) -> String {
    let ev = s.get(&format!("/api/events?regarding={env}")).await;
    ev["Items"][0]["IpAddress"].as_str().unwrap().to_string()
}

/// Audit event retention: events older than the retention period move to daily archive files,
/// which can be listed and downloaded, and deleted only when 30 days old (audited); events are
/// never changed or deleted through the API; the events list filters by date, user and the
/// projects/environments they concern.
#[tokio::test]
async fn old_events_move_to_archive_files() {
    use ferry_store::{Db, EventRow};
    let day = 86_400_000i64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut s = Server::start_with(crate::harness::Opts {
        args: vec!["--event-retention-days".into(), "1".into()],
        ..Default::default()
    });
    let env = id(&s.create_environment("Test").await);
    s.stop();
    // Old events, written straight into the store.
    let db = Db::open(&format!(
        "sqlite://{}",
        s.data_dir.join("ferry.db").display()
    ))
    .await
    .unwrap();
    let mut tx = db.begin().await.unwrap();
    for (age_days, related) in [(40, "Projects-9"), (40, "Projects-8"), (3, "Projects-9")] {
        tx.insert_event(&EventRow {
            id: String::new(),
            seq: 0,
            space_id: "Spaces-1".into(),
            category: "Modified".into(),
            message: format!("old change {age_days} days ago"),
            username: "admin".into(),
            user_id: "Users-1".into(),
            occurred: now - age_days * day,
            related_document_ids: related.into(),
            details: "{}".into(),
            ip_address: "127.0.0.1".into(),
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    db.close().await;
    s.restart(crate::harness::Opts {
        args: vec!["--event-retention-days".into(), "1".into()],
        ..Default::default()
    });

    // Moved at start: three old events gone from the table, two daily files.
    let deadline = Instant::now() + Duration::from_secs(20);
    let files = loop {
        let f = s.get("/api/events/archives").await;
        if f["TotalResults"] == 2 {
            break f;
        }
        assert!(Instant::now() < deadline, "{f}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let events = s.get("/api/events?take=100").await;
    assert!(!events.to_string().contains("old change"), "{events}");
    assert!(
        events.to_string().contains(&env),
        "recent events stay: {events}"
    );
    let names: Vec<String> = files["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["Name"].as_str().unwrap().to_string())
        .collect();
    let (oldest, recent) = (names[1].clone(), names[0].clone());
    let body = s.raw(&format!("/api/events/archives/{oldest}")).await;
    assert_eq!(body.lines().count(), 2, "{body}");
    assert!(body.contains("old change 40 days ago"), "{body}");
    let line: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(line["Category"], "Modified", "{line}");
    // Deleting: too young, a name outside the directory, then the old one (audited).
    let (st, v) = s
        .request("DELETE", &format!("/api/events/archives/{recent}"), None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(said(&v).contains("at least 30 days old"), "{v}");
    let (st, _) = s
        .request("GET", "/api/events/archives/..%2Fferry.db", None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .request("DELETE", &format!("/api/events/archives/{oldest}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(s.get("/api/events/archives").await["TotalResults"], 1);
    let events = s.get("/api/events?take=100").await;
    assert!(
        events
            .to_string()
            .contains(&format!("Deleted the audit event archive file {oldest}")),
        "{events}"
    );
    // Events cannot be changed or deleted through the API.
    let first = id(&events["Items"][0]);
    for method in ["PUT", "DELETE"] {
        let (st, _) = s
            .request(method, &format!("/api/events/{first}"), Some(json!({})))
            .await;
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    // Filters.
    let mine = s.get("/api/events?users=Users-1&take=100").await;
    let items = mine["Items"].as_array().unwrap();
    assert!(items.len() >= 2, "{mine}");
    assert!(items.iter().all(|e| e["UserId"] == "Users-1"), "{mine}");
    let none = s.get("/api/events?users=Users-99").await;
    assert_eq!(none["TotalResults"], 0, "{none}");
    let about = s
        .get(&format!("/api/events?environments={env},Environments-99"))
        .await;
    assert_eq!(about["TotalResults"], 1, "{about}");
    let later = s.get("/api/events?from=2100-01-01").await;
    assert_eq!(later["TotalResults"], 0, "{later}");
    let (st, v) = s.request("GET", "/api/events?from=yesterday", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
}

/// Interruptions, artifacts and deployment targets are listed only where the caller may see
/// them.
#[tokio::test]
async fn scoped_lists_of_interruptions_artifacts_and_targets() {
    let s = Server::start();
    let test = id(&s.create_environment("Test").await);
    let prod = id(&s.create_environment("Production").await);
    for p in ["Alpha", "Beta"] {
        s.create_project(p).await;
        s.put(
            &format!("{SP}/projects/{p}/deploymentprocesses"),
            json!({"Steps": [
                {"Name": "Make", "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                    "Octopus.Action.Script.ScriptBody": "echo report > report.txt; new_octopusartifact report.txt",
                    "Octopus.Action.RunOnServer": "true"}}]},
                {"Name": "Approve", "Actions": [{"ActionType": "Octopus.Manual", "Properties": {
                    "Octopus.Action.Manual.Instructions": "ok?"}}]}
            ]}),
        )
        .await;
        s.create_release(p, "1.0.0").await;
    }
    let ta = s.deploy("Alpha", "1.0.0", "Test").await;
    let tb = s.deploy("Beta", "1.0.0", "Test").await;
    pending(&s, &ta).await;
    pending(&s, &tb).await;
    // Two listening targets, one per environment (their health does not matter here).
    for (name, env, thumb) in [("web-test", &test, "A"), ("web-prod", &prod, "B")] {
        s.post(
            &format!("{SP}/machines"),
            json!({"Name": name, "EnvironmentIds": [env], "Roles": ["web"],
                "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": "https://127.0.0.1:1/",
                    "Thumbprint": thumb.repeat(64)}}),
        )
        .await;
    }
    let (vic, key) = user(&s, "vic").await;
    let t = team(&s, "Alpha in Test", &[&vic]).await;
    let alpha = s.get(&format!("{SP}/projects/Alpha")).await;
    grant(
        &s,
        &t,
        "userroles-projectviewer",
        json!({"ProjectIds": [id(&alpha)], "EnvironmentIds": [test]}),
    )
    .await;
    let get = |path: String| {
        let (s, key) = (&s, key.clone());
        async move {
            let (st, v) = as_user(s, &key, "GET", &path, None).await;
            assert_eq!(st, StatusCode::OK, "{path}: {v}");
            v
        }
    };
    let all = s.get(&format!("{SP}/interruptions")).await;
    assert_eq!(all["TotalResults"], 2, "{all}");
    let mine = get(format!("{SP}/interruptions")).await;
    assert_eq!(mine["TotalResults"], 1, "{mine}");
    assert_eq!(mine["Items"][0]["TaskId"], json!(ta));
    let all = s.get(&format!("{SP}/artifacts")).await;
    assert_eq!(all["TotalResults"], 2, "{all}");
    let mine = get(format!("{SP}/artifacts")).await;
    assert_eq!(mine["TotalResults"], 1, "{mine}");
    assert_eq!(mine["Items"][0]["ServerTaskId"], json!(ta));
    let all = s.get(&format!("{SP}/machines")).await;
    assert_eq!(all["TotalResults"], 2, "{all}");
    let mine = get(format!("{SP}/machines")).await;
    assert_eq!(mine["TotalResults"], 1, "{mine}");
    assert_eq!(mine["Items"][0]["Name"], "web-test");
}

/// A package publisher pushes; the package trigger creates the release although the publisher
/// may not create releases; the publisher still may not create one directly.
#[tokio::test]
async fn the_package_trigger_creates_releases_for_a_package_publisher() {
    use crate::package_deploy::make_package;
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    s.create_environment("Development").await;
    let p = s.create_project("Auto").await;
    s.put(
        &format!("{SP}/projects/Auto/deploymentprocesses"),
        json!({"Steps": [{"Name": "Deploy web", "Actions": [{"ActionType": "Octopus.TentaclePackage",
            "Properties": {"Octopus.Action.RunOnServer": "true", "Octopus.Action.Package.PackageId": "Acme.Web",
                "Octopus.Action.Package.FeedId": "feeds-builtin"}}]}]}),
    )
    .await;
    let mut body = p.clone();
    body["AutoCreateRelease"] = json!(true);
    body["ReleaseCreationStrategy"] = json!({"ReleaseCreationPackage":
        {"DeploymentAction": "Deploy web", "PackageReference": ""}, "ChannelId": null});
    s.put(&format!("{SP}/projects/{}", id(&p)), body).await;
    let (ci, key) = user(&s, "ci").await;
    let t = team(&s, "Build", &[&ci]).await;
    grant(&s, &t, "userroles-packagepublisher", json!({})).await;

    let file = make_package(work.path(), "1.2.0");
    let form = reqwest::multipart::Form::new().part(
        "fileToUpload",
        reqwest::multipart::Part::bytes(std::fs::read(&file).unwrap())
            .file_name("Acme.Web.1.2.0.zip"),
    );
    let st = reqwest::Client::new()
        .post(format!("{}{SP}/packages/raw", s.url))
        .header("X-Octopus-ApiKey", &key)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, StatusCode::CREATED);
    let rels = s.get(&format!("{SP}/projects/Auto/releases")).await;
    assert_eq!(rels["TotalResults"], 1, "{rels}");
    let (st, v) = as_user(
        &s,
        &key,
        "POST",
        &format!("{SP}/releases/create/v1"),
        Some(json!({"ProjectName": "Auto", "ReleaseVersion": "9.9.9"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
}
