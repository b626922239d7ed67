//! The portal's releases, deployments and tasks over HTTP: creating a release through the form
//! (with a bad version refused next to the field), deploying it through the deploy form, the
//! task page (log, state, live stream), answering a manual intervention from the task page,
//! comparing releases, and Deploy buttons only where the user may deploy.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Server;
use crate::portal_client::{Portal, admin_password, create_user};

const SP: &str = "/api/Spaces-1";
const APP: &str = "/app/Spaces-1";

fn id(v: &Value) -> String {
    v["Id"]
        .as_str()
        .unwrap_or_else(|| panic!("no Id: {v}"))
        .to_string()
}

/// The first `attr="prefix…"` value in `html`.
fn attr_with_prefix(html: &str, prefix: &str) -> Option<String> {
    let start = html.find(prefix)?;
    let rest = &html[start..];
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

/// Polls a page until it contains `needle`.
async fn page_until(p: &Portal, path: &str, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let html = p.html(path).await;
        if html.contains(needle) {
            return html;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never showed {needle:?}:\n{html}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The text of the `#task-state` element.
fn task_state(html: &str) -> String {
    let Some(i) = html.find("id=\"task-state\"") else {
        return String::new();
    };
    let rest = &html[i..];
    let end = rest
        .find("</span></span>")
        .or_else(|| rest.find("</span>\n"))
        .unwrap_or(200.min(rest.len()));
    let seg = &rest[..end];
    // After the icon's closing tag.
    seg.rsplit("</span>")
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Signs in and returns the cookie header (for requests the portal client does not make).
async fn cookie_header(s: &Server, user: &str, pw: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("{}/app/sign-in", s.url))
        .form(&[("username", user), ("password", pw), ("next", "/app")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn create_release_deploy_and_follow_the_task() {
    let s = Server::start();
    let test = id(&s.create_environment("Test").await);
    let project = s.create_project("Web").await;
    let pid = id(&project);
    s.set_scripts(
        "Web",
        &[(
            "Say",
            "echo hello from the portal; echo report > out.txt; new_octopusartifact out.txt",
        )],
    )
    .await;
    let pw = admin_password(&s);
    let p = Portal::sign_in(&s, "admin", &pw).await;

    // No releases yet: the empty state offers to create one.
    let list = p.html(&format!("{APP}/projects/{pid}/releases")).await;
    assert!(list.contains("releases-empty"), "{list}");
    assert!(list.contains("project-tabs"), "{list}");

    // The form: channel, version prefilled with the next version.
    let form = p.html(&format!("{APP}/projects/{pid}/releases/new")).await;
    for needle in [
        "id=\"release-channel\"",
        "id=\"release-version\"",
        "value=\"0.0.1\"",
        "id=\"release-notes\"",
        "id=\"release-create\"",
    ] {
        assert!(form.contains(needle), "{needle} missing:\n{form}");
    }
    let channel = attr_with_prefix(&form, "Channels-").expect("a channel option");

    // A bad version: 400, the error next to the field, the values kept.
    let bad = p
        .post(
            &format!("{APP}/projects/{pid}/releases"),
            &[
                ("channel", &channel),
                ("version", "not a version!"),
                ("notes", "kept notes"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("release-version-error"), "{}", bad.body);
    assert!(bad.body.contains("not a valid version"), "{}", bad.body);
    assert!(bad.body.contains("kept notes"), "{}", bad.body);
    assert!(
        bad.body.contains("value=\"not a version!\""),
        "{}",
        bad.body
    );

    // Created: 303 to the release page; the API has it.
    let ok = p
        .post(
            &format!("{APP}/projects/{pid}/releases"),
            &[
                ("channel", &channel),
                ("version", "1.0.0"),
                ("notes", "First release"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let release = s.get(&format!("{SP}/projects/{pid}/releases/1.0.0")).await;
    let rid = id(&release);
    assert_eq!(ok.location, format!("{APP}/releases/{rid}"));
    assert_eq!(release["ReleaseNotes"], "First release");
    // The same version again: 409, named next to the version.
    let dup = p
        .post(
            &format!("{APP}/projects/{pid}/releases"),
            &[("channel", &channel), ("version", "1.0.0")],
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
    assert!(dup.body.contains("release-version-error"), "{}", dup.body);

    // The list shows it; the form now suggests 1.0.1.
    let list = p.html(&format!("{APP}/projects/{pid}/releases")).await;
    assert!(list.contains(&format!("{APP}/releases/{rid}")), "{list}");
    let form = p.html(&format!("{APP}/projects/{pid}/releases/new")).await;
    assert!(form.contains("value=\"1.0.1\""), "{form}");

    // The release page: version, snapshot, Deploy button for Test.
    let page = p.html(&format!("{APP}/releases/{rid}")).await;
    assert!(page.contains("First release"), "{page}");
    assert!(page.contains("Say"), "{page}");
    let deploy_href = format!("{APP}/releases/{rid}/deploy?environment={test}");
    assert!(page.contains(&format!("id=\"deploy-{test}\"")), "{page}");
    assert!(page.contains(&deploy_href), "{page}");

    // The deploy form.
    let form = p.html(&deploy_href).await;
    for needle in [
        format!("id=\"deploy-env-{test}\" checked"),
        "id=\"deploy-queue-time\"".to_string(),
        "id=\"deploy-guided-failure\"".to_string(),
        "id=\"deploy-now\"".to_string(),
    ] {
        assert!(form.contains(&needle), "{needle} missing:\n{form}");
    }
    // Nothing ticked: refused on the form.
    let none = p.post(&format!("{APP}/releases/{rid}/deploy"), &[]).await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST, "{}", none.body);
    assert!(none.body.contains("deploy-error"), "{}", none.body);

    let queued = p
        .post(
            &format!("{APP}/releases/{rid}/deploy"),
            &[("environment", &test)],
        )
        .await;
    assert_eq!(queued.status, StatusCode::SEE_OTHER, "{}", queued.body);
    assert!(
        queued
            .location
            .starts_with(&format!("{APP}/tasks/ServerTasks-")),
        "{}",
        queued.location
    );
    let task_path = queued.location.clone();
    let task_id = task_path.rsplit('/').next().unwrap().to_string();

    // The task page: log lines and, eventually, Succeeded.
    let html = page_until(
        &p,
        &task_path,
        "hello from the portal",
        Duration::from_secs(60),
    )
    .await;
    assert!(html.contains("data-live=\""), "{html}");
    assert!(html.contains("class=\"line lvl-"), "{html}");
    assert!(html.contains("<details id=\"log-"), "{html}");
    s.wait_task(&task_id, Duration::from_secs(60)).await;
    let html = p.html(&task_path).await;
    assert_eq!(task_state(&html), "Succeeded", "{html}");
    assert!(html.contains("id=\"task-link-release\""), "{html}");
    assert!(
        !html.contains("id=\"task-cancel\""),
        "finished: no cancel\n{html}"
    );
    assert!(!html.contains("http-equiv=\"refresh\""), "{html}");
    // The artifact, with a download link.
    assert!(html.contains("id=\"task-artifacts\""), "{html}");
    let link = attr_with_prefix(&html, "/api/Spaces-1/artifacts/").expect("a download link");
    assert!(link.ends_with("/content"), "{link}");
    let (st, body) = s.request("GET", &link, None).await;
    assert!(st.is_success(), "{st} {body}");
    assert!(body.to_string().contains("report"), "{body}");

    // The live stream of a finished task: a `task` event, then `done`, then it ends.
    let cookies = cookie_header(&s, "admin", &pw).await;
    let r = reqwest::Client::new()
        .get(format!("{}{task_path}/live", s.url))
        .header("cookie", cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = tokio::time::timeout(Duration::from_secs(20), r.text())
        .await
        .expect("the stream ends once the task is done")
        .unwrap();
    let t = body.find("event: task").expect("a task event");
    let d = body.find("event: done").expect("a done event");
    assert!(t < d, "{body}");
    assert!(body.contains("Succeeded"), "{body}");

    // The release page lists the deployment; the tasks list shows it and filters.
    let page = p.html(&format!("{APP}/releases/{rid}")).await;
    assert!(page.contains(&task_path), "{page}");
    assert!(page.contains("Succeeded"), "{page}");
    let tasks = p.html(&format!("{APP}/tasks")).await;
    assert!(tasks.contains(&format!("id=\"task-{task_id}\"")), "{tasks}");
    assert!(tasks.contains("Succeeded"), "{tasks}");
    let ok = p
        .html(&format!("{APP}/tasks?state=Success&project={pid}"))
        .await;
    assert!(ok.contains(&format!("id=\"task-{task_id}\"")), "{ok}");
    let bad_time = p
        .post(
            &format!("{APP}/releases/{rid}/deploy"),
            &[("environment", &test), ("queue_time", "soon")],
        )
        .await;
    assert_eq!(
        bad_time.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_time.body
    );
    assert!(
        bad_time.body.contains("deploy-queue-error"),
        "{}",
        bad_time.body
    );
    let failed = p.html(&format!("{APP}/tasks?state=Failed")).await;
    assert!(failed.contains("tasks-empty"), "{failed}");

    // A second release with a changed script: compare shows the lines.
    s.set_scripts("Web", &[("Say", "echo hello again")]).await;
    let ok = p
        .post(
            &format!("{APP}/projects/{pid}/releases"),
            &[("channel", &channel), ("version", "1.0.1")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let rid2 = ok.location.rsplit('/').next().unwrap().to_string();
    let page = p.html(&format!("{APP}/releases/{rid}")).await;
    assert!(page.contains("id=\"compare-with\""), "{page}");
    let diff = p
        .html(&format!("{APP}/releases/{rid}/compare?with={rid2}"))
        .await;
    assert!(diff.contains("diff-del"), "{diff}");
    assert!(diff.contains("diff-add"), "{diff}");
    assert!(diff.contains("echo hello again"), "{diff}");
}

#[tokio::test]
async fn manual_intervention_is_answered_on_the_task_page() {
    let s = Server::start();
    let prod = id(&s.create_environment("Production").await);
    s.create_project("Gated").await;
    s.put(
        &format!("{SP}/projects/Gated/deploymentprocesses"),
        json!({"Steps": [
            {"Name": "Approve", "Actions": [{"ActionType": "Octopus.Manual", "Properties": {
                "Octopus.Action.Manual.Instructions": "Check the dashboards first",
                "Octopus.Action.Manual.BlockConcurrentDeployments": "False"}}]},
            {"Name": "After", "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo \"approved notes=#{Octopus.Action[Approve].Output.Manual.Notes}\"",
                "Octopus.Action.RunOnServer": "true"}}]}
        ]}),
    )
    .await;
    let release = s.create_release("Gated", "1.0.0").await;
    let rid = release["ReleaseId"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| id(&release));
    let p = Portal::sign_in(&s, "admin", &admin_password(&s)).await;
    let queued = p
        .post(
            &format!("{APP}/releases/{rid}/deploy"),
            &[("environment", &prod)],
        )
        .await;
    assert_eq!(queued.status, StatusCode::SEE_OTHER, "{}", queued.body);
    let task_path = queued.location.clone();
    let task_id = task_path.rsplit('/').next().unwrap().to_string();

    let html = page_until(
        &p,
        &task_path,
        "id=\"interruption-Proceed\"",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(task_state(&html), "Waiting for input", "{html}");
    assert!(html.contains("id=\"interruption-Abort\""), "{html}");
    assert!(html.contains("id=\"interruption-notes\""), "{html}");
    assert!(html.contains("Check the dashboards first"), "{html}");
    assert!(html.contains("id=\"task-cancel\""), "{html}");
    // The live stream of a waiting task sends its state at once and stays open.
    let cookies = cookie_header(&s, "admin", &admin_password(&s)).await;
    let mut r = reqwest::Client::new()
        .get(format!("{}{task_path}/live", s.url))
        .header("cookie", cookies)
        .send()
        .await
        .unwrap();
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !got.contains("interruption-Proceed") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), r.chunk())
            .await
            .expect("a first event")
            .unwrap()
            .expect("the stream stays open");
        got.push_str(&String::from_utf8_lossy(&chunk));
        assert!(Instant::now() < deadline, "{got}");
    }
    assert!(got.starts_with("event: task"), "{got}");
    assert!(got.contains("Waiting for input"), "{got}");
    assert!(!got.contains("event: done"), "{got}");
    drop(r);
    let form_id = attr_with_prefix(&html, "interruption-Interruptions-").expect("the form");
    let iid = form_id.trim_start_matches("interruption-").to_string();

    // A made-up answer is refused and shown on the task page.
    let bad = p
        .post(
            &format!("{APP}/interruptions/{iid}"),
            &[("result", "Maybe"), ("notes", "")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("task-action-error"), "{}", bad.body);

    let done = p
        .post(
            &format!("{APP}/interruptions/{iid}"),
            &[("result", "Proceed"), ("notes", "looks fine")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location, task_path);
    let t = s.wait_task(&task_id, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Success", "{t}");
    let html = p.html(&task_path).await;
    assert_eq!(task_state(&html), "Succeeded", "{html}");
    assert!(html.contains("approved notes=looks fine"), "{html}");
    assert!(!html.contains("id=\"interruption-Proceed\""), "{html}");
}

#[tokio::test]
async fn deploy_buttons_only_where_the_user_may_deploy() {
    let s = Server::start();
    let test = id(&s.create_environment("Test").await);
    let prod = id(&s.create_environment("Production").await);
    let pid = id(&s.create_project("Web").await);
    s.set_scripts("Web", &[("Say", "echo hi")]).await;
    s.create_release("Web", "1.0.0").await;
    // Test done, so the lifecycle offers Production too.
    let task = s.deploy("Web", "1.0.0", "Test").await;
    s.wait_task(&task, Duration::from_secs(60)).await;
    let rid = id(&s.get(&format!("{SP}/projects/{pid}/releases/1.0.0")).await);

    let tess = create_user(&s, "tess", "correct horse battery").await;
    let testers = id(&s
        .post(
            &format!("{SP}/teams"),
            json!({"Name": "Testers", "MemberUserIds": [tess]}),
        )
        .await);
    for (role, scope) in [
        (
            "userroles-projectdeployer",
            json!({"EnvironmentIds": [test]}),
        ),
        ("userroles-projectviewer", json!({})),
    ] {
        let mut body = json!({"TeamId": testers, "UserRoleId": role, "SpaceId": "Spaces-1"});
        for (k, v) in scope.as_object().unwrap() {
            body[k] = v.clone();
        }
        s.post(&format!("{SP}/scopeduserroles"), body).await;
    }

    // The admin sees both buttons.
    let admin = Portal::sign_in(&s, "admin", &admin_password(&s)).await;
    let page = admin.html(&format!("{APP}/releases/{rid}")).await;
    assert!(page.contains(&format!("id=\"deploy-{test}\"")), "{page}");
    assert!(page.contains(&format!("id=\"deploy-{prod}\"")), "{page}");

    let p = Portal::sign_in(&s, "tess", "correct horse battery").await;
    let page = p.html(&format!("{APP}/releases/{rid}")).await;
    assert!(page.contains(&format!("id=\"deploy-{test}\"")), "{page}");
    assert!(
        page.contains(&format!("id=\"deploy-denied-{prod}\"")),
        "{page}"
    );
    assert!(!page.contains(&format!("id=\"deploy-{prod}\"")), "{page}");
    assert!(
        !page.contains(&format!("deploy?environment={prod}")),
        "{page}"
    );
    assert!(page.contains("needs DeploymentCreate"), "{page}");
    // The deploy form offers only Test.
    let form = p
        .html(&format!("{APP}/releases/{rid}/deploy?environment={prod}"))
        .await;
    assert!(
        form.contains(&format!("id=\"deploy-env-{test}\"")),
        "{form}"
    );
    assert!(
        !form.contains(&format!("id=\"deploy-env-{prod}\"")),
        "{form}"
    );
    // Posting Production anyway: the API refuses, shown on the form.
    let refused = p
        .post(
            &format!("{APP}/releases/{rid}/deploy"),
            &[("environment", &prod)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("deploy-error"), "{}", refused.body);
    // A deployer does not create releases: no Create button.
    let list = p.html(&format!("{APP}/projects/{pid}/releases")).await;
    assert!(!list.contains("id=\"release-new\""), "{list}");
    let list = admin.html(&format!("{APP}/projects/{pid}/releases")).await;
    assert!(list.contains("id=\"release-new\""), "{list}");
}

#[tokio::test]
async fn package_versions_follow_the_channel_rules() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    s.create_environment("Test").await;
    for v in ["1.0.0", "1.1.0", "2.0.0"] {
        let st =
            crate::package_deploy::push(&s, &crate::package_deploy::make_package(work.path(), v))
                .await;
        assert!(st.is_success(), "push {v}: {st}");
    }
    let pid = id(&s.create_project("Shop").await);
    s.put(
        &format!("{SP}/projects/Shop/deploymentprocesses"),
        json!({"Steps": [{"Name": "Deploy web", "Actions": [{"Name": "Deploy web", "ActionType": "Octopus.TentaclePackage",
            "Properties": {"Octopus.Action.RunOnServer": "true", "Octopus.Action.Package.PackageId": "Acme.Web", "Octopus.Action.Package.FeedId": "feeds-builtin"}}]}]}),
    )
    .await;
    let stable = id(&s
        .post(
            &format!("{SP}/channels"),
            json!({"ProjectId": pid, "Name": "Stable", "Rules": [{"VersionRange": "[1.0,2.0)", "Tag": "",
                "ActionPackages": [{"DeploymentAction": "Deploy web", "PackageReference": ""}]}]}),
        )
        .await);
    let p = Portal::sign_in(&s, "admin", &admin_password(&s)).await;

    // The default channel: the latest version; the datalist offers every version.
    let form = p.html(&format!("{APP}/projects/{pid}/releases/new")).await;
    assert!(form.contains("id=\"package-Deploy web\""), "{form}");
    assert!(
        form.contains("name=\"package:Deploy web\" value=\"2.0.0\""),
        "{form}"
    );
    assert!(form.contains("<option value=\"1.0.0\">"), "{form}");
    // The Stable channel: the latest its rule allows.
    let form = p
        .html(&format!(
            "{APP}/projects/{pid}/releases/new?channel={stable}"
        ))
        .await;
    assert!(
        form.contains(&format!("value=\"{stable}\" selected")),
        "{form}"
    );
    assert!(
        form.contains("name=\"package:Deploy web\" value=\"1.1.0\""),
        "{form}"
    );
    assert!(form.contains("[1.0,2.0)"), "{form}");

    // A version the rule refuses: 400, the error next to the package field.
    let bad = p
        .post(
            &format!("{APP}/projects/{pid}/releases"),
            &[
                ("channel", &stable),
                ("version", "1.0.0"),
                ("package:Deploy web", "2.0.0"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("package-error-1"), "{}", bad.body);
    assert!(
        bad.body
            .contains("name=\"package:Deploy web\" value=\"2.0.0\""),
        "{}",
        bad.body
    );

    let ok = p
        .post(
            &format!("{APP}/projects/{pid}/releases"),
            &[
                ("channel", &stable),
                ("version", "1.0.0"),
                ("package:Deploy web", "1.0.0"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let r = s.get(&format!("{SP}/projects/{pid}/releases/1.0.0")).await;
    assert_eq!(r["ChannelId"], json!(stable));
    assert_eq!(r["SelectedPackages"][0]["Version"], "1.0.0", "{r}");
    let page = p.html(&ok.location).await;
    assert!(page.contains("Stable"), "{page}");
    assert!(page.contains("Acme") || page.contains("1.0.0"), "{page}");
}

#[tokio::test]
async fn prompted_variables_are_asked_on_the_deploy_form() {
    let s = Server::start();
    let test = id(&s.create_environment("Test").await);
    let project = s.create_project("Asker").await;
    s.set_scripts("Asker", &[("Greet", "echo \"greeting=#{Greeting}\"")])
        .await;
    let vs = project["VariableSetId"].as_str().unwrap().to_string();
    let mut body = s.get(&format!("{SP}/variables/{vs}")).await;
    body["Variables"] = json!([{"Name": "Greeting", "Value": "",
        "Prompt": {"Label": "Say what", "Description": "Shown in the log", "Required": true}}]);
    s.put(&format!("{SP}/variables/{vs}"), body).await;
    s.create_release("Asker", "1.0.0").await;
    let rid = id(&s
        .get(&format!("{SP}/projects/{}/releases/1.0.0", id(&project)))
        .await);
    let p = Portal::sign_in(&s, "admin", &admin_password(&s)).await;
    let form = p
        .html(&format!("{APP}/releases/{rid}/deploy?environment={test}"))
        .await;
    assert!(form.contains("name=\"form:Greeting\""), "{form}");
    assert!(form.contains("Say what"), "{form}");
    assert!(form.contains("Shown in the log"), "{form}");
    // Missing: refused on the form, nothing queued.
    let bad = p
        .post(
            &format!("{APP}/releases/{rid}/deploy"),
            &[("environment", &test), ("form:Greeting", "")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("Say what"), "{}", bad.body);
    assert!(bad.body.contains("prompt-error-1"), "{}", bad.body);
    assert!(bad.body.contains("deploy-error"), "{}", bad.body);
    let ok = p
        .post(
            &format!("{APP}/releases/{rid}/deploy"),
            &[
                ("environment", &test),
                ("form:Greeting", "hello there"),
                ("guided_failure", "true"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let task_id = ok.location.rsplit('/').next().unwrap().to_string();
    s.wait_task(&task_id, Duration::from_secs(60)).await;
    let html = p.html(&ok.location).await;
    assert!(html.contains("greeting=hello there"), "{html}");
    let deps = s.get(&format!("{SP}/releases/{rid}/deployments")).await;
    assert_eq!(deps["Items"][0]["UseGuidedFailure"], true, "{deps}");
}

#[tokio::test]
async fn a_running_task_is_cancelled_from_its_page() {
    let s = Server::start();
    s.create_environment("Test").await;
    s.create_project("Slow").await;
    s.set_scripts("Slow", &[("Wait", "echo waiting; sleep 60")])
        .await;
    s.create_release("Slow", "1.0.0").await;
    let task = s.deploy("Slow", "1.0.0", "Test").await;
    let p = Portal::sign_in(&s, "admin", &admin_password(&s)).await;
    let path = format!("{APP}/tasks/{task}");
    let html = page_until(&p, &path, "waiting", Duration::from_secs(60)).await;
    assert_eq!(task_state(&html), "Running", "{html}");
    assert!(html.contains("id=\"task-cancel\""), "{html}");
    assert!(html.contains("http-equiv=\"refresh\""), "{html}");
    let tasks = p.html(&format!("{APP}/tasks?state=Executing")).await;
    assert!(tasks.contains(&format!("id=\"task-{task}\"")), "{tasks}");
    let r = p.post(&format!("{path}/cancel"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location, path);
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Canceled", "{t}");
    let html = p.html(&path).await;
    assert_eq!(task_state(&html), "Cancelled", "{html}");
    assert!(!html.contains("id=\"task-cancel\""), "{html}");
    // Without the CSRF token the API refuses, shown on the task page.
    let r = p.post_raw(&format!("{path}/cancel"), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

#[tokio::test]
async fn only_responsible_teams_get_the_interruption_buttons() {
    let s = Server::start();
    s.create_environment("Production").await;
    s.create_project("Gated").await;
    let ann = create_user(&s, "ann", "correct horse battery").await;
    let bob = create_user(&s, "bob", "correct horse battery").await;
    let approvers = id(&s
        .post(
            &format!("{SP}/teams"),
            json!({"Name": "Approvers", "MemberUserIds": [ann]}),
        )
        .await);
    let deployers = id(&s
        .post(
            &format!("{SP}/teams"),
            json!({"Name": "Deployers", "MemberUserIds": [ann, bob]}),
        )
        .await);
    s.post(
        &format!("{SP}/scopeduserroles"),
        json!({"TeamId": deployers, "UserRoleId": "userroles-projectdeployer", "SpaceId": "Spaces-1"}),
    )
    .await;
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
    let path = format!("{APP}/tasks/{task}");

    let bp = Portal::sign_in(&s, "bob", "correct horse battery").await;
    let html = page_until(&bp, &path, "Approve it", Duration::from_secs(60)).await;
    assert!(html.contains("id=\"interruption-denied-"), "{html}");
    assert!(!html.contains("id=\"interruption-Proceed\""), "{html}");
    let iid = attr_with_prefix(&html, "interruption-denied-Interruptions-")
        .unwrap()
        .trim_start_matches("interruption-denied-")
        .to_string();
    // Posting anyway: the API's refusal is shown on the task page.
    let r = bp
        .post(
            &format!("{APP}/interruptions/{iid}"),
            &[("result", "Proceed"), ("notes", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("task-action-error"), "{}", r.body);
    assert!(r.body.contains("Approvers"), "{}", r.body);

    let ap = Portal::sign_in(&s, "ann", "correct horse battery").await;
    let html = ap.html(&path).await;
    assert!(html.contains("id=\"interruption-Proceed\""), "{html}");
    let r = ap
        .post(
            &format!("{APP}/interruptions/{iid}"),
            &[("result", "Proceed"), ("notes", "fine")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Success", "{t}");
}

#[tokio::test]
async fn tenanted_deployments_choose_tenants() {
    let s = Server::start();
    let dev = id(&s.create_environment("Development").await);
    let shop = s
        .post(
            &format!("{SP}/projects"),
            json!({"Name": "Shop", "TenantedDeploymentMode": "Tenanted"}),
        )
        .await;
    let shop_id = id(&shop);
    s.set_scripts(
        "Shop",
        &[("Hi", "echo hi #{Octopus.Deployment.Tenant.Name}")],
    )
    .await;
    let mut tenants = Vec::new();
    for name in ["Acme", "Globex"] {
        tenants.push(id(&s
            .post(
                &format!("{SP}/tenants"),
                json!({"Name": name, "ProjectEnvironments": {&shop_id: [dev]}}),
            )
            .await));
    }
    s.create_release("Shop", "1.0.0").await;
    let rid = id(&s
        .get(&format!("{SP}/projects/{shop_id}/releases/1.0.0"))
        .await);
    let p = Portal::sign_in(&s, "admin", &admin_password(&s)).await;
    let page = p.html(&format!("{APP}/releases/{rid}")).await;
    assert!(page.contains(&format!("id=\"deploy-{dev}\"")), "{page}");
    let form = p
        .html(&format!("{APP}/releases/{rid}/deploy?environment={dev}"))
        .await;
    for t in &tenants {
        assert!(
            form.contains(&format!("id=\"deploy-tenant-{t}\"")),
            "{form}"
        );
    }
    // Two tenants: two tasks, back to the release page, which lists both.
    let r = p
        .post(
            &format!("{APP}/releases/{rid}/deploy"),
            &[
                ("environment", &dev),
                ("tenant", &tenants[0]),
                ("tenant", &tenants[1]),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location, format!("{APP}/releases/{rid}"));
    let page = p.html(&r.location).await;
    assert!(page.contains("Acme") && page.contains("Globex"), "{page}");
    let deps = s.get(&format!("{SP}/releases/{rid}/deployments")).await;
    assert_eq!(deps["TotalResults"], 2, "{deps}");
}
