//! The portal's tenants and configuration pages over HTTP: users (created through the form and
//! signed in), teams with members and scoped role grants, a user without permissions, the
//! profile's API keys (shown once, working, revoked), the audit log and its filters, tenants
//! (create, connect, missing and sensitive variables) and subscriptions whose secret header
//! value never reaches a page.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Server;
use crate::portal_client::{Portal, admin_password};

/// Signs the admin in once the server has printed its password (printed after it listens).
async fn admin_portal(s: &Server) -> Portal {
    for _ in 0..100 {
        if s.output_text().contains("Admin password:") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Portal::sign_in(s, "admin", &admin_password(s)).await
}

const SP: &str = "/api/Spaces-1";

fn id(v: &Value) -> String {
    v["Id"].as_str().unwrap().to_string()
}

fn template_id(templates: &Value, name: &str) -> String {
    templates
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["Name"] == name)
        .unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The text between `start` and the next `end`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let i = html
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {html}"))
        + start.len();
    let j = html[i..].find(end).unwrap() + i;
    &html[i..j]
}

#[tokio::test]
async fn users_teams_profile_and_audit() {
    let s = Server::start();
    let admin = admin_portal(&s).await;
    let test_env = id(&s.create_environment("Test").await);

    let users = admin.html("/app/configuration/users?space=Spaces-1").await;
    assert!(users.contains("id=\"config-tabs\""), "{users}");
    assert!(users.contains("id=\"user-username\""), "{users}");
    assert!(users.contains("admin"), "{users}");

    // A bad user: the error next to the field, the values kept.
    let bad = admin
        .post(
            "/app/configuration/users?space=Spaces-1",
            &[
                ("user-username", "tess"),
                ("user-display-name", "Tess Tester"),
                ("user-password", "short"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.body.contains("id=\"user-password-error\""),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("value=\"Tess Tester\""), "{}", bad.body);

    // Created through the form, then signed in.
    let made = admin
        .post(
            "/app/configuration/users?space=Spaces-1",
            &[
                ("user-username", "tess"),
                ("user-display-name", "Tess Tester"),
                ("user-email", "tess@example.com"),
                ("user-password", "correct-horse-battery"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    assert!(made.location.starts_with("/app/configuration/users/Users-"));
    let tess_id = between(&made.location, "/app/configuration/users/", "?").to_string();
    let page = admin.html(&made.location).await;
    assert!(
        page.contains("Tess Tester") && page.contains("Everyone"),
        "{page}"
    );
    // A service account has no password.
    let svc = admin
        .post(
            "/app/configuration/users?space=Spaces-1",
            &[
                ("user-username", "ci-bot"),
                ("user-display-name", "CI bot"),
                ("user-service", "true"),
            ],
        )
        .await;
    assert_eq!(svc.status, StatusCode::SEE_OTHER, "{}", svc.body);
    let tess = Portal::sign_in(&s, "tess", "correct-horse-battery").await;

    // Without permissions: a clear 403 for users, no create forms elsewhere.
    let denied = tess.get("/app/configuration/users?space=Spaces-1").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.body);
    assert!(denied.body.contains("UserView"), "{}", denied.body);
    assert!(denied.body.contains("/app/profile"), "{}", denied.body);
    let teams = tess.get("/app/configuration/teams?space=Spaces-1").await;
    assert!(!teams.body.contains("team-create"), "{}", teams.body);
    let tenants = tess.get("/app/Spaces-1/tenants").await;
    assert!(!tenants.body.contains("tenant-create"), "{}", tenants.body);
    let subs = tess.get("/app/Spaces-1/configuration/subscriptions").await;
    assert!(!subs.body.contains("sub-create"), "{}", subs.body);

    // A team: created, a member added, a role granted for one environment.
    let team = admin
        .post(
            "/app/configuration/teams?space=Spaces-1",
            &[
                ("team-name", "Testers"),
                ("team-description", "They test"),
                ("team-space", ""),
            ],
        )
        .await;
    assert_eq!(team.status, StatusCode::SEE_OTHER, "{}", team.body);
    let team_id = between(&team.location, "/app/configuration/teams/", "?").to_string();
    let page = admin.html(&team.location).await;
    assert!(page.contains("id=\"team-add-member\""), "{page}");
    assert!(page.contains("id=\"grant-environments\""), "{page}");
    let r = admin
        .post(
            &format!("/app/configuration/teams/{team_id}/members?space=Spaces-1"),
            &[("team-add-member", &tess_id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = admin
        .post(
            &format!("/app/configuration/teams/{team_id}/grants?space=Spaces-1"),
            &[
                ("grant-role", "userroles-projectviewer"),
                ("grant-space", "Spaces-1"),
                ("grant-environments", &test_env),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let t = s.get(&format!("/api/teams/{team_id}")).await;
    assert_eq!(t["MemberUserIds"], json!([tess_id]));
    let grants = s
        .get(&format!("/api/teams/{team_id}/scopeduserroles"))
        .await;
    let g = s
        .get(&format!(
            "/api/scopeduserroles/{}",
            grants["Items"][0]["Id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(g["TeamId"], team_id.as_str());
    assert_eq!(g["EnvironmentIds"], json!([test_env]));
    assert_eq!(g["UserRoleId"], "userroles-projectviewer");
    let page = admin
        .html(&format!(
            "/app/configuration/teams/{team_id}?space=Spaces-1"
        ))
        .await;
    assert!(page.contains("Project viewer"), "{page}");
    assert!(page.contains("Environments: Test"), "{page}");
    assert!(page.contains("Tess Tester (tess)"), "{page}");
    // A grant the API refuses: shown on the page.
    let r = admin
        .post(
            &format!("/app/configuration/teams/{team_id}/grants?space=Spaces-1"),
            &[
                ("grant-role", "userroles-nope"),
                ("grant-space", "Spaces-1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("id=\"grant-error\""), "{}", r.body);

    // The profile: an API key shown once, which works, then revoked.
    let prof = tess.html("/app/profile").await;
    assert!(prof.contains("id=\"apikey-purpose\""), "{prof}");
    assert!(prof.contains("No API keys yet"), "{prof}");
    let k = tess
        .post("/app/profile/apikeys", &[("apikey-purpose", "laptop")])
        .await;
    assert_eq!(k.status, StatusCode::OK, "{}", k.body);
    let key = between(&k.body, "<code id=\"new-api-key\">", "</code>").to_string();
    assert!(key.starts_with("API-"), "{key}");
    assert!(k.body.contains("shown only this once"), "{}", k.body);
    let (st, me) = s
        .request_with_key("GET", "/api/users/me", None, Some(&key))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["Username"], "tess");
    let again = tess.html("/app/profile").await;
    assert!(!again.contains(&key), "the key is shown once only");
    assert!(again.contains("laptop"), "{again}");
    let keys = s.get(&format!("/api/users/{tess_id}/apikeys")).await;
    let kid = id(&keys["Items"][0]);
    let r = tess
        .post(
            &format!("/app/configuration/users/{tess_id}/apikeys/{kid}/revoke"),
            &[("next", "/app/profile")],
        )
        .await;
    assert_eq!(r.location, "/app/profile", "{}", r.body);
    let (st, _) = s
        .request_with_key("GET", "/api/users/me", None, Some(&key))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // Password errors are shown.
    let r = tess
        .post(
            "/app/profile/password",
            &[
                ("profile-current-password", "correct-horse-battery"),
                ("profile-password", "new-password-1"),
                ("profile-password-confirm", "new-password-2"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("do not match"), "{}", r.body);
    let r = tess
        .post(
            "/app/profile/password",
            &[
                ("profile-current-password", "wrong-password"),
                ("profile-password", "new-password-1"),
                ("profile-password-confirm", "new-password-1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.contains("id=\"profile-password-error\""),
        "{}",
        r.body
    );

    // The audit log shows these actions, with their changes, and filters by category.
    let audit = admin.html("/app/configuration/audit?space=Spaces-1").await;
    assert!(audit.contains("User tess was created"), "{audit}");
    assert!(audit.contains("Testers"), "{audit}");
    assert!(audit.contains("diff-add"), "{audit}");
    let created = admin
        .html("/app/configuration/audit?space=Spaces-1&category=Created")
        .await;
    assert!(created.contains("User tess was created"), "{created}");
    let modified = admin
        .html("/app/configuration/audit?space=Spaces-1&category=Modified")
        .await;
    assert!(!modified.contains("User tess was created"), "{modified}");
    assert!(modified.contains("Testers"), "{modified}");

    // Disable and enable from the list.
    let r = admin
        .post(
            &format!("/app/configuration/users/{tess_id}/active"),
            &[("active", "false"), ("next", "/app/configuration/users")],
        )
        .await;
    assert_eq!(r.location, "/app/configuration/users");
    assert_eq!(
        s.get(&format!("/api/users/{tess_id}")).await["IsActive"],
        false
    );
}

#[tokio::test]
async fn tenants_and_secrets_never_reach_a_page() {
    let s = Server::start();
    let admin = admin_portal(&s).await;
    let dev = id(&s.create_environment("Development").await);
    s.post(
        &format!("{SP}/tagsets"),
        json!({"Name": "Region", "Tags": [{"Name": "East", "Color": "#ff0000"}, {"Name": "West"}]}),
    )
    .await;

    let list = admin.html("/app/Spaces-1/tenants").await;
    assert!(list.contains("id=\"tenants-empty\""), "{list}");
    assert!(list.contains("id=\"tenant-create\""), "{list}");
    let bad = admin
        .post("/app/Spaces-1/tenants", &[("tenant-name", "")])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.body.contains("id=\"tenant-name-error\""),
        "{}",
        bad.body
    );
    let made = admin
        .post(
            "/app/Spaces-1/tenants",
            &[
                ("tenant-name", "Acme"),
                ("tenant-description", "A customer"),
                ("tenant-tags", "Region/East"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let tenant_id = made.location.rsplit('/').next().unwrap().to_string();
    let t = s.get(&format!("{SP}/tenants/{tenant_id}")).await;
    assert_eq!(t["Name"], "Acme");
    assert_eq!(t["TenantTags"], json!(["Region/East"]));
    let list = admin.html("/app/Spaces-1/tenants").await;
    assert!(list.contains("Acme") && list.contains("East"), "{list}");
    let filtered = admin.html("/app/Spaces-1/tenants?tag=Region%2FWest").await;
    assert!(!filtered.contains(">Acme<"), "{filtered}");
    assert!(filtered.contains("No tenants match"), "{filtered}");

    // A tenanted project with templates and a library set's common template.
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
                       {"Name": "Greeting", "DefaultValue": "Hello"}
                   ]}),
        )
        .await;
    let shop_id = id(&shop);
    let db_t = template_id(&shop["Templates"], "DbName");
    let pw_t = template_id(&shop["Templates"], "DbPassword");

    let page = admin.html(&made.location).await;
    assert!(page.contains("id=\"connect-project\""), "{page}");
    let r = admin
        .post(
            &format!("/app/Spaces-1/tenants/{tenant_id}/connect"),
            &[
                ("connect-project", &shop_id),
                ("connect-environments", &dev),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let t = s.get(&format!("{SP}/tenants/{tenant_id}")).await;
    assert_eq!(t["ProjectEnvironments"][&shop_id], json!([dev]));
    let page = admin.html(&made.location).await;
    assert!(
        page.contains("Shop") && page.contains("Development"),
        "{page}"
    );
    assert!(page.contains("class=\"missing\""), "{page}");
    assert!(page.contains("Missing"), "{page}");
    assert!(page.contains("Database name"), "{page}");

    // Values saved through the grid; the sensitive one never comes back.
    let secret = "s3cret-Sauce-42";
    let r = admin
        .post(
            &format!("/app/Spaces-1/tenants/{tenant_id}/variables"),
            &[
                (&format!("pv|{shop_id}|{dev}|{db_t}"), "shopdb"),
                (&format!("pv|{shop_id}|{dev}|{pw_t}"), secret),
                (&format!("lv|{}|{alias_t}", id(&common)), "acme"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let vars = s.get(&format!("{SP}/tenants/{tenant_id}/variables")).await;
    let pv = &vars["ProjectVariables"][&shop_id]["Variables"][&dev];
    assert_eq!(pv[&db_t], "shopdb");
    assert_eq!(pv[&pw_t]["HasValue"], true);
    let page = admin.html(&made.location).await;
    assert!(!page.contains(secret));
    assert!(page.contains("••••••"), "{page}");
    assert!(!page.contains("class=\"missing\""), "{page}");
    // Saved again with the sensitive field left empty: kept.
    let r = admin
        .post(
            &format!("/app/Spaces-1/tenants/{tenant_id}/variables"),
            &[
                (&format!("pv|{shop_id}|{dev}|{db_t}"), "shopdb2"),
                (&format!("pv|{shop_id}|{dev}|{pw_t}"), ""),
                (&format!("lv|{}|{alias_t}", id(&common)), ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let vars = s.get(&format!("{SP}/tenants/{tenant_id}/variables")).await;
    let pv = &vars["ProjectVariables"][&shop_id]["Variables"][&dev];
    assert_eq!(pv[&db_t], "shopdb2");
    assert_eq!(pv[&pw_t]["HasValue"], true);
    let page = admin.html(&made.location).await;
    assert!(
        page.contains("Missing"),
        "the cleared alias is missing: {page}"
    );

    // A subscription with a secret header value.
    let header_secret = "Bearer hush-hush-77";
    let subs = admin
        .html("/app/Spaces-1/configuration/subscriptions")
        .await;
    assert!(subs.contains("No subscriptions yet"), "{subs}");
    let r = admin
        .post(
            "/app/Spaces-1/configuration/subscriptions",
            &[
                ("sub-name", "Hook"),
                ("sub-url", "not a url"),
                ("sub-header-value", header_secret),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("id=\"sub-url-error\""), "{}", r.body);
    assert!(!r.body.contains(header_secret));
    let r = admin
        .post(
            "/app/Spaces-1/configuration/subscriptions",
            &[
                ("sub-name", "Hook"),
                ("sub-url", "https://hooks.example.com/ferry"),
                ("sub-categories", "Created"),
                ("sub-categories", "Deleted"),
                ("sub-header-key", "Authorization"),
                ("sub-header-value", header_secret),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let sub_page = r.location.clone();
    let sub_id = sub_page.rsplit('/').next().unwrap().to_string();
    let sub = s.get(&format!("{SP}/subscriptions/{sub_id}")).await;
    assert_eq!(
        sub["EventNotificationSubscription"]["Filter"]["EventCategories"],
        json!(["Created", "Deleted"])
    );
    let html = admin.html(&sub_page).await;
    assert!(
        html.contains("Delivery log") && html.contains("Authorization"),
        "{html}"
    );
    let r = admin.post(&format!("{sub_page}/toggle"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let sub = s.get(&format!("{SP}/subscriptions/{sub_id}")).await;
    assert_eq!(sub["IsDisabled"], true);
    assert_eq!(
        sub["EventNotificationSubscription"]["WebhookHeaderValue"]["HasValue"],
        true
    );

    // No page shows a secret.
    for path in [
        "/app/Spaces-1/tenants".to_string(),
        made.location.clone(),
        "/app/Spaces-1/configuration/subscriptions".to_string(),
        sub_page.clone(),
        "/app/configuration/audit?space=Spaces-1".to_string(),
        "/app/configuration/audit?space=Spaces-1&category=Modified".to_string(),
        "/app/configuration/audit?space=Spaces-1&category=Created".to_string(),
    ] {
        let html = admin.html(&path).await;
        assert!(!html.contains(secret), "{path} shows the tenant secret");
        assert!(
            !html.contains("hush-hush-77"),
            "{path} shows the header value"
        );
    }

    // The audit log filtered by a project's name.
    let by_project = admin
        .html("/app/configuration/audit?space=Spaces-1&project=Shop")
        .await;
    assert!(by_project.contains("Shop"), "{by_project}");
    assert!(!by_project.contains("Acme"), "{by_project}");
    let r = admin
        .get("/app/configuration/audit?space=Spaces-1&project=NoSuchProject")
        .await;
    assert!(r.body.contains("id=\"audit-filter-error\""), "{}", r.body);

    // Disconnect and delete.
    let r = admin
        .post(
            &format!("/app/Spaces-1/tenants/{tenant_id}/disconnect"),
            &[("project", &shop_id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let t = s.get(&format!("{SP}/tenants/{tenant_id}")).await;
    assert_eq!(t["ProjectEnvironments"], json!({}));
    let r = admin
        .post(&format!("/app/Spaces-1/tenants/{tenant_id}/delete"), &[])
        .await;
    assert_eq!(r.location, "/app/Spaces-1/tenants");
    let (st, _) = s
        .request("GET", &format!("{SP}/tenants/{tenant_id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
