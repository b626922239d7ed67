//! The portal's infrastructure and library pages over HTTP: environments created through the
//! form and reordered, errors next to the field, a package uploaded through the upload form
//! (multipart, streamed to the API), a community step template imported, the agent registration
//! command, every page answering, and a user without permissions seeing no create forms.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Server;
use crate::portal_client::{Portal, admin_password, create_user};

/// The admin password, once the server has printed it (its output is read by another thread).
async fn password(s: &Server) -> String {
    for _ in 0..100 {
        if s.output_text().contains("Admin password:") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    admin_password(s)
}

/// The session and CSRF cookies of a browser signed in as `username` (for multipart posts,
/// which the form client does not send).
async fn cookies(s: &Server, username: &str, password: &str) -> (String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("{}/app/sign-in", s.url))
        .form(&[
            ("username", username),
            ("password", password),
            ("next", "/app"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (mut session, mut csrf) = (String::new(), String::new());
    for c in r.headers().get_all("set-cookie") {
        let kv = c.to_str().unwrap().split(';').next().unwrap();
        if let Some(v) = kv.strip_prefix("OctopusIdentificationToken=") {
            session = v.to_string();
        }
        if let Some(v) = kv.strip_prefix("Octopus-Csrf-Token=") {
            csrf = v.to_string();
        }
    }
    (
        format!("OctopusIdentificationToken={session}; Octopus-Csrf-Token={csrf}"),
        csrf,
    )
}

/// Posts a multipart form as a browser would; returns status, location and body.
async fn post_multipart(
    s: &Server,
    cookie: &str,
    path: &str,
    form: reqwest::multipart::Form,
) -> (StatusCode, String, String) {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}{path}", s.url))
        .header("cookie", cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location, r.text().await.unwrap())
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn environments_created_reordered_and_errors_shown() {
    let s = Server::start();
    let p = Portal::sign_in(&s, "admin", &password(&s).await).await;
    let list = p.html("/app/Spaces-1/infrastructure/environments").await;
    assert!(list.contains("No environments yet"), "{list}");
    assert!(list.contains("id=\"env-create\""), "{list}");
    assert!(list.contains("class=\"tabs\""), "{list}");

    for name in ["Development", "Test", "Production"] {
        let r = p
            .post(
                "/app/Spaces-1/infrastructure/environments",
                &[
                    ("name", name),
                    ("description", ""),
                    ("guided_failure", "true"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(r.location, "/app/Spaces-1/infrastructure/environments");
    }
    let all = s.get("/api/Spaces-1/environments/all").await;
    assert_eq!(names(&all), ["Development", "Test", "Production"]);
    assert_eq!(all[0]["UseGuidedFailure"], json!(true));
    let list = p.html("/app/Spaces-1/infrastructure/environments").await;
    assert!(list.contains("Move up") && list.contains("Move down"));
    assert!(list.contains("data-confirm"));

    // Production up one: Development, Production, Test.
    let prod = all[2]["Id"].as_str().unwrap();
    let r = p
        .post(
            &format!("/app/Spaces-1/infrastructure/environments/{prod}/move"),
            &[("dir", "up")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let all = s.get("/api/Spaces-1/environments/all").await;
    assert_eq!(names(&all), ["Development", "Production", "Test"]);
    // Development down one: Production, Development, Test.
    let dev = all[0]["Id"].as_str().unwrap();
    p.post(
        &format!("/app/Spaces-1/infrastructure/environments/{dev}/move"),
        &[("dir", "down")],
    )
    .await;
    let all = s.get("/api/Spaces-1/environments/all").await;
    assert_eq!(names(&all), ["Production", "Development", "Test"]);

    // An empty name and a duplicate: the form again, the error next to the name, values kept.
    let r = p
        .post(
            "/app/Spaces-1/infrastructure/environments",
            &[("name", ""), ("description", "kept")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("id=\"env-name-error\""), "{}", r.body);
    assert!(r.body.contains("value=\"kept\""), "{}", r.body);
    let r = p
        .post(
            "/app/Spaces-1/infrastructure/environments",
            &[("name", "Test")],
        )
        .await;
    assert!(
        r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::CONFLICT,
        "{}",
        r.status
    );
    assert!(r.body.contains("id=\"env-name-error\""), "{}", r.body);
    assert!(r.body.contains("already exists"), "{}", r.body);
    assert_eq!(
        s.get("/api/Spaces-1/environments/all")
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Edit and delete.
    let test = all[2]["Id"].as_str().unwrap();
    let r = p
        .post(
            &format!("/app/Spaces-1/infrastructure/environments/{test}"),
            &[("name", "QA"), ("description", "quality")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let qa = s.get(&format!("/api/Spaces-1/environments/{test}")).await;
    assert_eq!(qa["Name"], "QA");
    let r = p
        .post(
            &format!("/app/Spaces-1/infrastructure/environments/{test}/delete"),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let all = s.get("/api/Spaces-1/environments/all").await;
    assert_eq!(names(&all), ["Production", "Development"]);
}

#[tokio::test]
async fn package_upload_and_step_template_import() {
    let s = Server::start();
    let pw = password(&s).await;
    let p = Portal::sign_in(&s, "admin", &pw).await;
    let page = p.html("/app/Spaces-1/library/packages").await;
    assert!(page.contains("data-upload"), "{page}");
    assert!(page.contains("id=\"package-file\""), "{page}");
    assert!(
        page.contains(&format!(
            "action=\"/app/Spaces-1/library/packages/upload?csrf={}\"",
            p.csrf
        )),
        "{page}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = crate::package_deploy::make_package(dir.path(), "1.2.3");
    let bytes = std::fs::read(&file).unwrap();
    let (cookie, csrf) = cookies(&s, "admin", &pw).await;
    let form = || {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name("Acme.Web.1.2.3.zip"),
        )
    };
    let upload = format!("/app/Spaces-1/library/packages/upload?csrf={csrf}");
    let (status, location, body) = post_multipart(&s, &cookie, &upload, form()).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, "/app/Spaces-1/library/packages/Acme.Web");
    let pkg = p.html("/app/Spaces-1/library/packages/Acme.Web").await;
    assert!(pkg.contains("1.2.3"), "{pkg}");
    assert!(pkg.contains("Delete"), "{pkg}");
    let list = p.html("/app/Spaces-1/library/packages?q=Acme").await;
    assert!(
        list.contains("Acme.Web") && list.contains("1.2.3"),
        "{list}"
    );

    // The same version again: the packages page with the API's error.
    let (status, _, body) = post_multipart(&s, &cookie, &upload, form()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("id=\"upload-error\""), "{body}");
    // Sent by the page's script: the API's error as JSON, for the form's status line.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}{upload}", s.url))
        .header("cookie", &cookie)
        .header("X-Ferry-Upload", "xhr")
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let err: Value = r.json().await.unwrap();
    assert!(err["ErrorMessage"].as_str().unwrap().len() > 5, "{err}");
    // Without the CSRF token the API refuses.
    let (status, _, _) =
        post_multipart(&s, &cookie, "/app/Spaces-1/library/packages/upload", form()).await;
    assert_ne!(status, StatusCode::SEE_OTHER);

    // A community step template, pasted.
    let template = json!({
        "Id": "7a3c1f7e-2b4d-4c1a-9f0e-1d2c3b4a5e6f",
        "Name": "Portal - Say hello",
        "Description": "Says hello.",
        "ActionType": "Octopus.Script",
        "Version": 2,
        "CommunityActionTemplateId": null,
        "Packages": [],
        "Properties": {
            "Octopus.Action.Script.ScriptSource": "Inline",
            "Octopus.Action.Script.Syntax": "Bash",
            "Octopus.Action.Script.ScriptBody": "echo \"hello $(get_octopusvariable \"Hello.Name\")\""
        },
        "Parameters": [
            {"Id": "a1", "Name": "Hello.Name", "Label": "Name", "HelpText": "Who to greet.",
             "DefaultValue": "world", "DisplaySettings": {"Octopus.ControlType": "SingleLineText"}},
            {"Id": "a2", "Name": "Hello.Key", "Label": "Key", "HelpText": "",
             "DefaultValue": "secret-default-42", "DisplaySettings": {"Octopus.ControlType": "Sensitive"}}
        ],
        "$Meta": {"ExportedAt": "2026-01-01T00:00:00.000Z", "OctopusVersion": "2025.2.0", "Type": "ActionTemplate"},
        "LastModifiedBy": "someone",
        "Category": "other"
    });
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("json", template.to_string());
    let (status, location, body) = post_multipart(
        &s,
        &cookie,
        "/app/Spaces-1/library/steptemplates/import",
        form,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert!(
        location.starts_with("/app/Spaces-1/library/steptemplates/"),
        "{location}"
    );
    let list = p.html("/app/Spaces-1/library/steptemplates").await;
    assert!(list.contains("Portal - Say hello"), "{list}");
    let page = p.html(&location).await;
    assert!(page.contains("Hello.Name") && page.contains("get_octopusvariable"));
    assert!(!page.contains("secret-default-42"), "{page}");
    // Not JSON: the form again with the error and what was pasted.
    let r = p
        .post(
            "/app/Spaces-1/library/steptemplates/import",
            &[("json", "{not json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("template-json-error"), "{}", r.body);
    assert!(r.body.contains("{not json"), "{}", r.body);
}

#[tokio::test]
async fn every_page_answers_and_permissions_hide_forms() {
    let s = Server::start();
    let p = Portal::sign_in(&s, "admin", &password(&s).await).await;
    let env = s.create_environment("Development").await;
    let env_id = env["Id"].as_str().unwrap().to_string();

    // The agent command carries this server's URL and thumbprint and the chosen environment.
    let new = p
        .html(&format!(
            "/app/Spaces-1/infrastructure/targets/new?environment={env_id}&roles=web,api"
        ))
        .await;
    assert!(new.contains("id=\"agent-command\""), "{new}");
    assert!(new.contains("data-copy=\"agent-command\""), "{new}");
    assert!(new.contains("ferry agent register"), "{new}");
    assert!(new.contains(&s.thumbprint()), "{new}");
    assert!(new.contains("--environment Development"), "{new}");
    assert!(new.contains("--role web --role api"), "{new}");

    // A listening agent through the form: a bad thumbprint shows next to the field.
    let r = p
        .post(
            "/app/Spaces-1/infrastructure/targets/new/listening",
            &[
                ("name", "web01"),
                ("environments", &env_id),
                ("roles", "web"),
                ("url", "https://web01.example:10933/"),
                ("thumbprint", "nope"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("field-error"), "{}", r.body);
    assert!(r.body.contains("value=\"web01\""), "{}", r.body);
    let tp = "AB".repeat(32);
    let r = p
        .post(
            "/app/Spaces-1/infrastructure/targets/new/listening",
            &[
                ("name", "web01"),
                ("environments", &env_id),
                ("roles", "web, api"),
                ("url", "https://web01.example:10933/"),
                ("thumbprint", &tp),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let target = r.location.clone();
    let page = p.html(&target).await;
    assert!(
        page.contains("Unknown") && page.contains("target-health"),
        "{page}"
    );
    let list = p.html("/app/Spaces-1/infrastructure/targets").await;
    assert!(
        list.contains("web01") && list.contains("Listening agent"),
        "{list}"
    );
    let list = p.html("/app/Spaces-1/infrastructure/targets?role=db").await;
    assert!(list.contains("No deployment targets match"), "{list}");

    // A variable set with a sensitive variable: masked, never sent.
    let r = p
        .post("/app/Spaces-1/library/variablesets", &[("name", "Shared")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set = r.location.clone();
    let r = p
        .post(
            &format!("{set}/variables"),
            &[
                ("name", "Db.Password"),
                ("value", "hunter2-very-secret"),
                ("sensitive", "true"),
                ("environments", &env_id),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    p.post(
        &format!("{set}/variables"),
        &[("name", "Db.Host"), ("value", "db.internal")],
    )
    .await;
    let page = p.html(&set).await;
    assert!(
        page.contains("Db.Password") && page.contains("••••••"),
        "{page}"
    );
    assert!(!page.contains("hunter2-very-secret"), "{page}");
    assert!(page.contains("db.internal") && page.contains("Environment: Development"));

    // A lifecycle and a tag set through their forms.
    let r = p
        .post(
            "/app/Spaces-1/library/lifecycles/new",
            &[
                ("name", "Fast"),
                ("phases", "2"),
                ("phase-0-name", "Dev"),
                ("phase-0-auto", &env_id),
                ("phase-1-name", ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let lcs = p.html("/app/Spaces-1/library/lifecycles").await;
    assert!(lcs.contains("Fast") && lcs.contains("Automatic"), "{lcs}");
    let r = p
        .post(
            "/app/Spaces-1/library/tagsets",
            &[("name", "Tier"), ("tags", "Gold #D4A017\nSilver")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let tags = p.html("/app/Spaces-1/library/tagsets").await;
    assert!(tags.contains("Gold") && tags.contains("#D4A017") && tags.contains("Silver"));

    let policies = s.get("/api/Spaces-1/machinepolicies/all").await;
    let policy = policies[0]["Id"].as_str().unwrap().to_string();
    let pages = [
        "/app/Spaces-1/infrastructure/environments".to_string(),
        format!("/app/Spaces-1/infrastructure/environments/{env_id}"),
        "/app/Spaces-1/infrastructure/targets".to_string(),
        "/app/Spaces-1/infrastructure/targets/new".to_string(),
        target.clone(),
        "/app/Spaces-1/infrastructure/workers".to_string(),
        "/app/Spaces-1/infrastructure/workerpools".to_string(),
        "/app/Spaces-1/infrastructure/machinepolicies".to_string(),
        format!("/app/Spaces-1/infrastructure/machinepolicies/{policy}"),
        "/app/Spaces-1/library/packages".to_string(),
        "/app/Spaces-1/library/steptemplates".to_string(),
        "/app/Spaces-1/library/variablesets".to_string(),
        set.clone(),
        "/app/Spaces-1/library/lifecycles".to_string(),
        "/app/Spaces-1/library/lifecycles/new".to_string(),
        "/app/Spaces-1/library/tagsets".to_string(),
    ];
    for path in &pages {
        let html = p.html(path).await;
        assert!(html.contains("class=\"tabs\""), "{path}: {html}");
    }
    // The machine policy's basic fields: a too-short interval is refused next to the field.
    let policy_page = format!("/app/Spaces-1/infrastructure/machinepolicies/{policy}");
    let r = p
        .post(
            &policy_page,
            &[("name", "Default Machine Policy"), ("interval", "00:00:10")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("field-error"), "{}", r.body);
    let r = p
        .post(
            &policy_page,
            &[("name", "Default Machine Policy"), ("interval", "00:20:00")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let saved = s
        .get(&format!("/api/Spaces-1/machinepolicies/{policy}"))
        .await;
    assert_eq!(
        saved["MachineHealthCheckPolicy"]["HealthCheckInterval"],
        "00:20:00"
    );

    // A health check queues a task.
    let r = p.post(&format!("{target}/health"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        r.location.starts_with("/app/Spaces-1/tasks/"),
        "{}",
        r.location
    );

    // A worker pool through the form.
    let r = p
        .post(
            "/app/Spaces-1/infrastructure/workerpools",
            &[("name", "Linux pool")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        p.html("/app/Spaces-1/infrastructure/workerpools")
            .await
            .contains("Linux pool")
    );

    // A user in no team, and a viewer (Project viewer in a team): no create forms, no
    // delete buttons; the viewer reads every page.
    create_user(&s, "nobody", "Nobody-Passw0rd!").await;
    let nobody = Portal::sign_in(&s, "nobody", "Nobody-Passw0rd!").await;
    let viewer_id = create_user(&s, "vera", "Vera-Passw0rd!").await;
    let team = s
        .post(
            "/api/Spaces-1/teams",
            json!({"Name": "Readers", "MemberUserIds": [viewer_id]}),
        )
        .await;
    s.post(
        "/api/Spaces-1/scopeduserroles",
        json!({"TeamId": team["Id"], "UserRoleId": "userroles-projectviewer", "SpaceId": "Spaces-1"}),
    )
    .await;
    let vera = Portal::sign_in(&s, "vera", "Vera-Passw0rd!").await;
    for (path, ids) in [
        (
            "/app/Spaces-1/infrastructure/environments",
            &["env-create", "Move up", "Delete"][..],
        ),
        (target.as_str(), &["target-health", "target-delete"][..]),
        (set.as_str(), &["var-add", "varset-delete"][..]),
        ("/app/Spaces-1/infrastructure/targets", &["target-add"][..]),
        (
            "/app/Spaces-1/infrastructure/targets/new",
            &["ssh-create", "listening-create"][..],
        ),
        ("/app/Spaces-1/library/packages", &["package-upload"][..]),
        (
            "/app/Spaces-1/library/steptemplates",
            &["template-import"][..],
        ),
        ("/app/Spaces-1/library/variablesets", &["varset-create"][..]),
        ("/app/Spaces-1/library/lifecycles", &["lifecycle-new"][..]),
        ("/app/Spaces-1/library/tagsets", &["tagset-create"][..]),
        (
            "/app/Spaces-1/infrastructure/workerpools",
            &["pool-create"][..],
        ),
    ] {
        let page = nobody.get(path).await;
        for id in ids {
            assert!(!page.body.contains(id), "{path} shows {id} to nobody");
        }
        let page = vera.html(path).await;
        for id in ids {
            assert!(!page.contains(id), "{path} shows {id} to a viewer");
        }
    }
}
