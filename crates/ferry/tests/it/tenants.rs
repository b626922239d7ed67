//! Tenants end to end through the real server: tag sets, tenants connected to a tenanted
//! project, tenant variables (project templates per environment, a library set's common
//! template, a sensitive value), `deployments/create/tenanted/v1` by tag (one task per tenant,
//! each with its own values), refusal of a tenant with missing values (nothing queued),
//! per-tenant lifecycle progression, targets chosen by tenant tag, a step filtered by tenant
//! tag, and validation errors.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Server;

const SP: &str = "/api/Spaces-1";

fn id(v: &Value) -> String {
    v["Id"].as_str().unwrap().to_string()
}

/// Every error line of a refusal, joined.
fn errors(v: &Value) -> String {
    v["Errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

async fn refused(s: &Server, method: &str, path: &str, body: Value) -> String {
    let (st, v) = s.request(method, path, Some(body.clone())).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{method} {path} {body} -> {v}");
    errors(&v)
}

fn template_id(templates: &Value, name: &str) -> String {
    templates
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["Name"] == name)
        .unwrap_or_else(|| panic!("no template {name} in {templates}"))["Id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn thumb(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn target(name: &str, env: &str, tags: &[&str], t: char) -> Value {
    json!({
        "Name": name, "EnvironmentIds": [env], "Roles": ["web"],
        "TenantedDeploymentParticipation": "Tenanted", "TenantTags": tags,
        "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": format!("https://{name}:10933/"), "Thumbprint": thumb(t)}
    })
}

async fn deployment_count(s: &Server) -> i64 {
    s.get(&format!("{SP}/deployments?take=1")).await["TotalResults"]
        .as_i64()
        .unwrap()
}

/// Deploys by the tenanted executions endpoint; returns (tenant id, task id) pairs.
async fn deploy_tenanted(
    s: &Server,
    env: &str,
    tenants: &[&str],
    tags: &[&str],
) -> Vec<(String, String)> {
    let v = s
        .post(
            &format!("{SP}/deployments/create/tenanted/v1"),
            json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.0", "EnvironmentName": env,
                   "Tenants": tenants, "TenantTags": tags, "Variables": {}}),
        )
        .await;
    let mut out = Vec::new();
    for d in v["DeploymentServerTasks"].as_array().unwrap() {
        let dep = s
            .get(&format!(
                "{SP}/deployments/{}",
                d["DeploymentId"].as_str().unwrap()
            ))
            .await;
        assert_eq!(dep["TaskId"], d["ServerTaskId"]);
        out.push((
            dep["TenantId"].as_str().unwrap().to_string(),
            d["ServerTaskId"].as_str().unwrap().to_string(),
        ));
    }
    out
}

#[tokio::test]
async fn tenanted_deployments_with_tags_variables_targets_and_refusals() {
    let s = Server::start();
    let dev = id(&s.create_environment("Development").await);
    let prod = id(&s.create_environment("Production").await);

    // Tag sets: ids, canonical names, validation.
    let region = s
        .post(
            &format!("{SP}/tagsets"),
            json!({"Name": "Region", "Tags": [{"Name": "East", "Color": "#ff0000"}, {"Name": "West"}]}),
        )
        .await;
    assert_eq!(region["Id"], "TagSets-1");
    assert_eq!(region["Tags"][0]["Id"], "TagSets-1/Tags-1");
    assert_eq!(region["Tags"][1]["CanonicalTagName"], "Region/West");
    assert_eq!(region["Tags"][1]["Color"], "#333333");
    s.post(
        &format!("{SP}/tagsets"),
        json!({"Name": "Tier", "Tags": [{"Name": "Gold"}, {"Name": "Silver"}]}),
    )
    .await;
    let e = refused(
        &s,
        "POST",
        &format!("{SP}/tagsets"),
        json!({"Name": "Dup", "Tags": [{"Name": "A"}, {"Name": "a"}]}),
    )
    .await;
    assert!(e.contains("more than once"), "{e}");
    let (st, _) = s
        .request(
            "POST",
            &format!("{SP}/tagsets"),
            Some(json!({"Name": "region"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(
        s.get(&format!("{SP}/tagsets/all"))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A library set with a common template, a tenanted project with project templates.
    let common = s
        .post(
            &format!("{SP}/libraryvariablesets"),
            json!({"Name": "Common", "Templates": [{"Name": "Alias", "Label": "Tenant alias"}]}),
        )
        .await;
    let alias_t = template_id(&common["Templates"], "Alias");
    let shop = s
        .post(
            &format!("{SP}/projects"),
            json!({"Name": "Shop", "TenantedDeploymentMode": "Tenanted",
                   "IncludedLibraryVariableSetIds": [common["Id"]],
                   "Templates": [
                       {"Name": "DbName", "Label": "Database name"},
                       {"Name": "DbPassword", "Label": "Database password", "DisplaySettings": {"Octopus.ControlType": "Sensitive"}},
                       {"Name": "Greeting", "DefaultValue": "Hello #{Octopus.Deployment.Tenant.Name}"}
                   ]}),
        )
        .await;
    let shop_id = id(&shop);
    let db_t = template_id(&shop["Templates"], "DbName");
    let pw_t = template_id(&shop["Templates"], "DbPassword");
    assert!(!db_t.is_empty() && db_t != pw_t);
    let e = refused(
        &s,
        "POST",
        &format!("{SP}/projects"),
        json!({"Name": "Bad", "Templates": [{"Label": "no name"}]}),
    )
    .await;
    assert!(e.contains("has no Name"), "{e}");

    s.put(
        &format!("{SP}/projects/Shop/deploymentprocesses"),
        json!({"Steps": [
            {"Name": "Show", "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo \"tenant=#{Octopus.Deployment.Tenant.Name} db=#{DbName} alias=#{Alias} greet=#{Greeting} tags=#{Octopus.Deployment.Tenant.Tags}\"\necho \"pw=$(get_octopusvariable DbPassword)\"",
                "Octopus.Action.Script.Syntax": "Bash", "Octopus.Action.RunOnServer": "true"}}]},
            {"Name": "Gold only", "Actions": [{"ActionType": "Octopus.Script", "TenantTags": ["Tier/Gold"], "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo gold-step-ran", "Octopus.Action.RunOnServer": "true"}}]},
            {"Name": "On targets", "Properties": {"Octopus.Action.TargetRoles": "web"}, "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo \"target=#{Octopus.Machine.Name}\"", "Octopus.Action.RunOnServer": "true"}}]}
        ]}),
    )
    .await;
    s.create_release("Shop", "1.0.0").await;

    // Targets associated by tag (a target tagged Region/East serves every East tenant).
    for (env, suffix) in [(&dev, "dev"), (&prod, "prod")] {
        let c = if suffix == "dev" { 'a' } else { 'c' };
        s.post(
            &format!("{SP}/machines"),
            target(&format!("east-{suffix}"), env, &["region/east"], c),
        )
        .await;
        let c = if suffix == "dev" { 'b' } else { 'd' };
        s.post(
            &format!("{SP}/machines"),
            target(&format!("west-{suffix}"), env, &["Region/West"], c),
        )
        .await;
    }
    let m = s.get(&format!("{SP}/machines/east-dev")).await;
    assert_eq!(m["TenantTags"], json!(["Region/East"]), "stored canonical");
    let (st, v) = s
        .request(
            "POST",
            &format!("{SP}/machines"),
            Some(target("north", &dev, &["Region/North"], 'e')),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(errors(&v).contains("Region/North"), "{v}");

    // Tenants: tags stored canonical, connections by name or id.
    let mut tenant_ids = Vec::new();
    for (name, tags) in [
        ("Acme", vec!["region/east", "Tier/Gold"]),
        ("Globex", vec!["Region/West", "Tier/Silver"]),
        ("Initech", vec!["Region/East", "Tier/Silver"]),
    ] {
        let t = s
            .post(
                &format!("{SP}/tenants"),
                json!({"Name": name, "TenantTags": tags,
                       "ProjectEnvironments": {"Shop": ["Development", prod]}}),
            )
            .await;
        assert_eq!(
            t["ProjectEnvironments"][&shop_id],
            json!([dev, prod]),
            "{t}"
        );
        tenant_ids.push(id(&t));
    }
    let acme = s.get(&format!("{SP}/tenants/acme")).await;
    assert_eq!(acme["TenantTags"], json!(["Region/East", "Tier/Gold"]));
    assert_eq!(acme["Id"], "Tenants-1");
    let gold = s.get(&format!("{SP}/tenants?tags=Tier/Gold")).await;
    assert_eq!(gold["TotalResults"], 1);
    let by_ids = s
        .get(&format!(
            "{SP}/tenants?take=1&skip=5&ids={},{}",
            tenant_ids[0], tenant_ids[2]
        ))
        .await;
    assert_eq!(by_ids["Items"].as_array().unwrap().len(), 2, "{by_ids}");
    assert_eq!(
        s.get(&format!("{SP}/tenants?projectId={shop_id}")).await["TotalResults"],
        3
    );

    // Validation: unknown tag, untenanted project, environment outside the lifecycle.
    let e = refused(
        &s,
        "POST",
        &format!("{SP}/tenants"),
        json!({"Name": "X", "TenantTags": ["Region/North"]}),
    )
    .await;
    assert!(e.contains("Region/North"), "{e}");
    s.create_project("Plain").await;
    s.create_release("Plain", "1.0.0").await;
    let e = refused(
        &s,
        "POST",
        &format!("{SP}/tenants"),
        json!({"Name": "X", "ProjectEnvironments": {"Plain": [dev]}}),
    )
    .await;
    assert!(
        e.contains("'Plain'") && e.contains("tenanted deployment mode"),
        "{e}"
    );
    let lc = s
        .post(
            &format!("{SP}/lifecycles"),
            json!({"Name": "Dev only", "Phases": [{"Name": "Dev", "OptionalDeploymentTargets": [dev]}]}),
        )
        .await;
    s.post(
        &format!("{SP}/projects"),
        json!({"Name": "Narrow", "LifecycleId": lc["Id"], "TenantedDeploymentMode": "TenantedOrUntenanted"}),
    )
    .await;
    let e = refused(
        &s,
        "POST",
        &format!("{SP}/tenants"),
        json!({"Name": "X", "ProjectEnvironments": {"Narrow": [prod]}}),
    )
    .await;
    assert!(e.contains("'Production'") && e.contains("lifecycle"), "{e}");
    let (st, _) = s
        .request(
            "POST",
            &format!("{SP}/tenants"),
            Some(json!({"Name": "acme"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    // A tag in use cannot be removed.
    let mut region_edit = region.clone();
    region_edit["Tags"] = json!([region["Tags"][1]]);
    let e = refused(&s, "PUT", &format!("{SP}/tagsets/TagSets-1"), region_edit).await;
    assert!(
        e.contains("Region/East") && e.contains("tenant 'Acme'"),
        "{e}"
    );

    // Tenant variables: a value per environment, a common value, a sensitive value.
    for (i, (t, alias)) in tenant_ids
        .iter()
        .zip(["ACME", "GLOBEX", "INITECH"])
        .enumerate()
    {
        let lower = alias.to_lowercase();
        s.put(
            &format!("{SP}/tenants/{t}/variables"),
            json!({
                "ProjectVariables": {&shop_id: {"Variables": {
                    &dev: {&db_t: format!("{lower}_dev"), &pw_t: format!("secret-{i}-dev")},
                    &prod: {&db_t: format!("{lower}_prod"), &pw_t: {"HasValue": true, "NewValue": format!("secret-{i}-prod")}}
                }}},
                "LibraryVariables": {common["Id"].as_str().unwrap(): {"Variables": {&alias_t: alias}}}
            }),
        )
        .await;
    }
    let vars = s
        .get(&format!("{SP}/tenants/{}/variables", tenant_ids[0]))
        .await;
    assert_eq!(vars["TenantName"], "Acme");
    assert_eq!(
        vars["ProjectVariables"][&shop_id]["Variables"][&prod][&db_t],
        "acme_prod"
    );
    assert_eq!(
        vars["ProjectVariables"][&shop_id]["Variables"][&prod][&pw_t],
        json!({"HasValue": true, "NewValue": null, "IsSensitive": true})
    );
    assert_eq!(
        vars["LibraryVariables"][common["Id"].as_str().unwrap()]["Variables"][&alias_t],
        "ACME"
    );
    assert!(!vars.to_string().contains("secret-0"), "{vars}");
    // Sent back as read, the sensitive value is kept.
    s.put(
        &format!("{SP}/tenants/{}/variables", tenant_ids[0]),
        vars.clone(),
    )
    .await;
    let missing = s
        .get(&format!(
            "{SP}/tenants/variables-missing?projectId={shop_id}"
        ))
        .await;
    assert_eq!(missing, json!([]), "{missing}");
    let events = s.get(&format!("{SP}/events?take=100")).await.to_string();
    assert!(
        !events.contains("secret-0"),
        "a sensitive value reached an event"
    );

    // An untenanted deployment of a tenanted project is refused.
    let e = refused(
        &s,
        "POST",
        &format!("{SP}/deployments/create/untenanted/v1"),
        json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.0", "EnvironmentNames": ["Development"]}),
    )
    .await;
    assert!(e.contains("can only be deployed to tenants"), "{e}");

    // By tag: OR within Region, so all three tenants; one task each, each with its values.
    let before = deployment_count(&s).await;
    let dev_runs = deploy_tenanted(&s, "Development", &[], &["Region/East", "Region/West"]).await;
    assert_eq!(dev_runs.len(), 3, "{dev_runs:?}");
    assert_eq!(deployment_count(&s).await, before + 3);
    for (tenant, task) in &dev_runs {
        let t = s.wait_task(task, Duration::from_secs(90)).await;
        let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
        assert_eq!(t["State"], "Success", "{raw}");
        let i = tenant_ids.iter().position(|x| x == tenant).unwrap();
        let (name, alias) = [
            ("Acme", "ACME"),
            ("Globex", "GLOBEX"),
            ("Initech", "INITECH"),
        ][i];
        let lower = alias.to_lowercase();
        assert!(
            raw.contains(&format!(
                "tenant={name} db={lower}_dev alias={alias} greet=Hello {name}"
            )),
            "{raw}"
        );
        assert!(!raw.contains(&format!("secret-{i}-dev")), "unmasked: {raw}");
        assert!(raw.contains("pw=********"), "{raw}");
        // Targets by tag; the Gold step only for Acme.
        let (mine, other) = if name == "Globex" {
            ("west-dev", "east-dev")
        } else {
            ("east-dev", "west-dev")
        };
        assert!(raw.contains(&format!("target={mine}")), "{raw}");
        assert!(!raw.contains(&format!("target={other}")), "{raw}");
        assert_eq!(raw.contains("gold-step-ran"), name == "Acme", "{raw}");
        if name != "Acme" {
            assert!(
                raw.contains("runs only for tenants tagged Tier/Gold"),
                "{raw}"
            );
        }
        assert!(t["Description"].as_str().unwrap().contains(name), "{t}");
    }
    // AND across sets: East and Gold is Acme alone.
    let prod_runs = deploy_tenanted(&s, "Production", &[], &["Region/East", "Tier/Gold"]).await;
    assert_eq!(prod_runs.len(), 1);
    assert_eq!(prod_runs[0].0, tenant_ids[0]);
    s.wait_task(&prod_runs[0].1, Duration::from_secs(90)).await;
    let raw = s.raw(&format!("/api/tasks/{}/raw", prod_runs[0].1)).await;
    assert!(raw.contains("db=acme_prod"), "{raw}");
    assert!(raw.contains("target=east-prod"), "{raw}");
    // Deployments list by tenant, with TenantId.
    let list = s
        .get(&format!("{SP}/deployments?tenants={}", tenant_ids[0]))
        .await;
    assert_eq!(list["TotalResults"], 2, "{list}");
    assert!(
        list["Items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["TenantId"] == json!(tenant_ids[0]))
    );

    // A fourth tenant without values: refused, naming it and every missing variable; nothing
    // is queued, not even for the three tenants that could go.
    let hooli = s
        .post(
            &format!("{SP}/tenants"),
            json!({"Name": "Hooli", "TenantTags": ["Region/East"],
                   "ProjectEnvironments": {&shop_id: [dev, prod]}}),
        )
        .await;
    let missing = s
        .get(&format!(
            "{SP}/tenants/variables-missing?tenantId={}",
            id(&hooli)
        ))
        .await;
    assert_eq!(missing.as_array().unwrap().len(), 2, "{missing}");
    let before = deployment_count(&s).await;
    let e = refused(
        &s,
        "POST",
        &format!("{SP}/deployments/create/tenanted/v1"),
        json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.0", "EnvironmentName": "Development", "TenantTags": ["Region/East"]}),
    )
    .await;
    assert!(e.contains("Tenant 'Hooli'"), "{e}");
    for needle in [
        "Database name (DbName)",
        "DbPassword",
        "Tenant alias (Alias)",
        "'Common'",
        "'Shop'",
    ] {
        assert!(e.contains(needle), "{needle}: {e}");
    }
    assert!(!e.contains("Acme"), "{e}");
    assert_eq!(deployment_count(&s).await, before, "something was queued");

    // Lifecycle progression is per tenant: Hooli has not been to Development.
    s.put(
        &format!("{SP}/tenants/{}/variables", id(&hooli)),
        json!({"ProjectVariables": {&shop_id: {"Variables": {&prod: {&db_t: "h", &pw_t: "p"}}}},
               "LibraryVariables": {common["Id"].as_str().unwrap(): {"Variables": {&alias_t: "H"}}}}),
    )
    .await;
    let e = refused(
        &s,
        "POST",
        &format!("{SP}/deployments/create/tenanted/v1"),
        json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.0", "EnvironmentName": "Production", "Tenants": ["Hooli"]}),
    )
    .await;
    assert!(
        e.contains("for tenant 'Hooli'") && e.contains("Development"),
        "{e}"
    );

    // Unknown tenant or tag, no connected tenant, untenanted project, disabled tenant.
    let tenanted = |tenants: Value, tags: Value| json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.0", "EnvironmentName": "Development", "Tenants": tenants, "TenantTags": tags});
    let path = format!("{SP}/deployments/create/tenanted/v1");
    let e = refused(
        &s,
        "POST",
        &path,
        tenanted(json!(["Nobody"]), json!(["Tier/Platinum"])),
    )
    .await;
    assert!(e.contains("'Nobody'") && e.contains("Tier/Platinum"), "{e}");
    s.post(
        &format!("{SP}/tenants"),
        json!({"Name": "Loner", "TenantTags": ["Tier/Silver"]}),
    )
    .await;
    let e = refused(&s, "POST", &path, tenanted(json!(["Loner"]), json!([]))).await;
    assert!(e.contains("'Loner' is not connected"), "{e}");
    let e = refused(
        &s,
        "POST",
        &path,
        json!({"ProjectName": "Plain", "ReleaseVersion": "1.0.0", "EnvironmentName": "Development", "Tenants": ["Acme"]}),
    )
    .await;
    assert!(e.contains("'Plain'") && e.contains("Untenanted"), "{e}");
    // `POST /deployments` with a TenantId (a redeploy of Initech to Development).
    let release = s.get(&format!("{SP}/projects/Shop/releases/1.0.0")).await;
    let (st, d) = s
        .request(
            "POST",
            &format!("{SP}/deployments"),
            Some(json!({"ReleaseId": release["Id"], "EnvironmentId": dev, "TenantId": "Initech"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    assert_eq!(d["TenantId"], json!(tenant_ids[2]));
    assert_eq!(d["Name"], "Deploy to Development for Initech");
    let t = s
        .wait_task(d["TaskId"].as_str().unwrap(), Duration::from_secs(90))
        .await;
    assert_eq!(t["State"], "Success");
    assert_eq!(t["TenantId"], json!(tenant_ids[2]));

    let mut acme_edit = s.get(&format!("{SP}/tenants/{}", tenant_ids[0])).await;
    acme_edit["IsDisabled"] = json!(true);
    s.put(&format!("{SP}/tenants/{}", tenant_ids[0]), acme_edit)
        .await;
    let e = refused(&s, "POST", &path, tenanted(json!(["Acme"]), json!([]))).await;
    assert!(e.contains("'Acme' is disabled"), "{e}");
    let before = deployment_count(&s).await;
    let e = refused(&s, "POST", &path, tenanted(json!([]), json!(["Tier/Gold"]))).await;
    assert!(e.contains("disabled"), "{e}");
    assert_eq!(deployment_count(&s).await, before);

    // An untenanted deployment skips a step filtered by tenant tags.
    s.put(
        &format!("{SP}/projects/Narrow/deploymentprocesses"),
        json!({"Steps": [
            {"Name": "Tagged", "Actions": [{"ActionType": "Octopus.Script", "TenantTags": ["Tier/Gold"], "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo tagged-ran", "Octopus.Action.RunOnServer": "true"}}]},
            {"Name": "Plain", "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo plain-ran", "Octopus.Action.RunOnServer": "true"}}]}
        ]}),
    )
    .await;
    s.create_release("Narrow", "1.0.0").await;
    let task = s.deploy("Narrow", "1.0.0", "Development").await;
    let t = s.wait_task(&task, Duration::from_secs(90)).await;
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Success", "{raw}");
    assert!(
        raw.contains("plain-ran") && !raw.contains("tagged-ran"),
        "{raw}"
    );
    assert!(raw.contains("this deployment is untenanted"), "{raw}");

    // Variable scopes and the space links.
    let vs = s.get(&format!("{SP}/projects/Shop")).await["VariableSetId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut set = s.get(&format!("{SP}/variables/{vs}")).await;
    set["Variables"] =
        json!([{"Name": "X", "Value": "1", "Scope": {"TenantTag": ["Region/Nowhere"]}}]);
    let e = refused(&s, "PUT", &format!("{SP}/variables/{vs}"), set.clone()).await;
    assert!(e.contains("Region/Nowhere"), "{e}");
    set["Variables"] = json!([{"Name": "X", "Value": "1", "Scope": {"TenantTag": ["Region/East"], "Tenant": [tenant_ids[1]]}}]);
    s.put(&format!("{SP}/variables/{vs}"), set).await;
    let home = s.get(SP).await;
    assert!(
        home["Links"]["TagSets"]
            .as_str()
            .unwrap()
            .starts_with("/api/Spaces-1/tagsets{/id}")
    );
    assert!(
        home["Links"]["Tenants"]
            .as_str()
            .unwrap()
            .starts_with("/api/Spaces-1/tenants{/id}")
    );
}

/// Deployments of a release as (tenant name, environment id, task id).
async fn release_deployments(s: &Server, release: &str) -> Vec<(String, String, String)> {
    let v = s
        .get(&format!("{SP}/releases/{release}/deployments?take=100"))
        .await;
    let mut out = Vec::new();
    for d in v["Items"].as_array().unwrap() {
        let tenant = match d["TenantId"].as_str() {
            Some(t) => s.get(&format!("{SP}/tenants/{t}")).await["Name"]
                .as_str()
                .unwrap()
                .to_string(),
            None => String::new(),
        };
        out.push((
            tenant,
            d["EnvironmentId"].as_str().unwrap().to_string(),
            d["TaskId"].as_str().unwrap().to_string(),
        ));
    }
    out.sort();
    out
}

#[tokio::test]
async fn tenanted_automatic_deployment_and_the_channel_tenant_filter() {
    let s = Server::start();
    let dev = id(&s.create_environment("Development").await);
    let prod = id(&s.create_environment("Production").await);
    s.post(
        &format!("{SP}/tagsets"),
        json!({"Name": "Ring", "Tags": [{"Name": "Early"}, {"Name": "Late"}]}),
    )
    .await;
    let lc = s
        .post(
            &format!("{SP}/lifecycles"),
            json!({"Name": "Auto dev", "Phases": [
                {"Name": "Dev", "AutomaticDeploymentTargets": [dev]},
                {"Name": "Prod", "OptionalDeploymentTargets": [prod]}]}),
        )
        .await;
    let mut p = s.create_project("Rings").await;
    p["TenantedDeploymentMode"] = json!("Tenanted");
    p["LifecycleId"] = lc["Id"].clone();
    let pid = id(&p);
    s.put(&format!("{SP}/projects/{pid}"), p).await;
    s.set_scripts(
        "Rings",
        &[("Hello", "echo \"hello #{Octopus.Deployment.Tenant.Name}\"")],
    )
    .await;
    for (name, ring) in [("Alpha", "Early"), ("Bravo", "Late")] {
        s.post(
            &format!("{SP}/tenants"),
            json!({"Name": name, "TenantTags": [format!("Ring/{ring}")],
                "ProjectEnvironments": {&pid: [dev.clone(), prod.clone()]}}),
        )
        .await;
    }
    // The channel's filter is stored canonical; an unknown tag is refused.
    let msg = refused(
        &s,
        "POST",
        &format!("{SP}/channels"),
        json!({"ProjectId": pid, "Name": "Bad", "TenantTags": ["Ring/Never"]}),
    )
    .await;
    assert!(msg.contains("Ring/Never"), "{msg}");
    let ch = s
        .post(
            &format!("{SP}/channels"),
            json!({"ProjectId": pid, "Name": "Early", "TenantTags": ["ring/early"]}),
        )
        .await;
    assert_eq!(ch["TenantTags"], json!(["Ring/Early"]), "{ch}");

    // A release in the default channel enters the Dev phase: one deployment per tenant.
    let r1 = s.create_release("Rings", "1.0.0").await;
    assert_eq!(
        r1["AutomaticallyDeployedEnvironments"],
        json!(["Development"]),
        "{r1}"
    );
    let rid1 = r1["ReleaseId"].as_str().unwrap().to_string();
    let deps = release_deployments(&s, &rid1).await;
    assert_eq!(
        deps.iter()
            .map(|(t, e, _)| (t.as_str(), e.as_str()))
            .collect::<Vec<_>>(),
        vec![("Alpha", dev.as_str()), ("Bravo", dev.as_str())]
    );
    for (name, _, task) in &deps {
        assert_eq!(
            s.wait_task(task, Duration::from_secs(30)).await["State"],
            "Success"
        );
        let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
        assert!(raw.contains(&format!("hello {name}")), "{raw}");
    }

    // A release in the Early channel reaches only Early tenants.
    let (st, r2) = s
        .request(
            "POST",
            &format!("{SP}/releases/create/v1"),
            Some(
                json!({"ProjectName": "Rings", "ChannelName": "Early", "ReleaseVersion": "2.0.0"}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r2}");
    let rid2 = r2["ReleaseId"].as_str().unwrap().to_string();
    let deps = release_deployments(&s, &rid2).await;
    assert_eq!(deps.len(), 1, "{deps:?}");
    assert_eq!(deps[0].0, "Alpha");
    s.wait_task(&deps[0].2, Duration::from_secs(30)).await;
    // Naming Bravo is refused, naming the channel's filter; by tag, Bravo is left out.
    let (st, v) = s
        .request(
            "POST",
            &format!("{SP}/deployments/create/tenanted/v1"),
            Some(json!({"ProjectName": "Rings", "ReleaseVersion": "2.0.0",
                "EnvironmentName": "Production", "Tenants": ["Bravo"]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let e = format!("{} {}", v["ErrorMessage"], errors(&v));
    assert!(e.contains("tenant filter") && e.contains("Bravo"), "{e}");
    let (st, v) = s
        .request(
            "POST",
            &format!("{SP}/deployments/create/tenanted/v1"),
            Some(json!({"ProjectName": "Rings", "ReleaseVersion": "2.0.0",
                "EnvironmentName": "Production", "TenantTags": ["Ring/Early", "Ring/Late"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["DeploymentServerTasks"].as_array().unwrap().len(),
        1,
        "{v}"
    );

    // The deployment template offers each tenant its own next environments.
    let tpl = s
        .get(&format!("{SP}/releases/{rid1}/deployments/template"))
        .await;
    assert_eq!(tpl["PromoteTo"], json!([]), "a Tenanted project: {tpl}");
    let promos = tpl["TenantPromotions"].as_array().unwrap();
    assert_eq!(promos.len(), 2, "{tpl}");
    for p in promos {
        let names: Vec<&str> = p["PromoteTo"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["Development", "Production"], "{tpl}");
    }
}
