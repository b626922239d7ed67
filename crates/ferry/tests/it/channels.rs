//! Channels with version rules, release versioning and notes, and prevent progression, against
//! the real server (`docs/channels.md`): the built-in feed holds `Acme.Web` 1.2.3 and
//! 2.0.0-beta; the default channel (`[1.0,2.0)`, `^$`) picks 1.2.3 and a beta channel (`^beta`)
//! picks 2.0.0-beta; explicit versions that break a rule are refused naming the rule unless
//! `IgnoreChannelRules`; the package trigger puts a beta push in the beta channel; versions
//! from templates and from a donor package; release notes from build information; a release
//! prevented from progressing is refused in new environments with the reason (automatic
//! deployments included), and allowed again; channels with bad rules are refused naming the
//! problem.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Server;
use crate::package_deploy::{make_package, push};

const STEP: &str = "Deploy web";

fn rule(range: &str, tag: &str) -> Value {
    json!({"VersionRange": range, "Tag": tag,
        "ActionPackages": [{"DeploymentAction": STEP, "PackageReference": ""}]})
}

/// A project deploying `Acme.Web` in the step "Deploy web" (plus a script step), with a feed
/// holding 1.2.3 and 2.0.0-beta.
async fn setup(s: &Server, project: &str, work: &std::path::Path) -> Value {
    for v in ["1.2.3", "2.0.0-beta"] {
        let st = push(s, &make_package(work, v)).await;
        assert!(st.is_success() || st == StatusCode::CONFLICT, "{v}: {st}");
    }
    let p = s.create_project(project).await;
    s.put(
        &format!("/api/Spaces-1/projects/{project}/deploymentprocesses"),
        json!({"Steps": [
            {"Name": STEP, "Actions": [{"Name": STEP, "ActionType": "Octopus.TentaclePackage",
                "Properties": {"Octopus.Action.RunOnServer": "true",
                    "Octopus.Action.Package.PackageId": "Acme.Web",
                    "Octopus.Action.Package.FeedId": "feeds-builtin"}}]},
            {"Name": "Notify", "Actions": [{"Name": "Notify", "ActionType": "Octopus.Script",
                "Properties": {"Octopus.Action.Script.ScriptBody": "echo hi",
                    "Octopus.Action.Script.Syntax": "Bash", "Octopus.Action.RunOnServer": "true"}}]}
        ]}),
    )
    .await;
    p
}

async fn default_channel(s: &Server, project: &str) -> Value {
    let list = s
        .get(&format!("/api/Spaces-1/projects/{project}/channels"))
        .await;
    list["Items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["IsDefault"] == json!(true))
        .cloned()
        .unwrap()
}

/// The default channel gets `[1.0,2.0)` / `^$`; a "Beta" channel `^beta`. Returns the ids.
async fn two_channels(s: &Server, project: &Value) -> (String, String) {
    let name = project["Name"].as_str().unwrap();
    let mut default = default_channel(s, name).await;
    default["Rules"] = json!([rule("[1.0,2.0)", "^$")]);
    let id = default["Id"].as_str().unwrap().to_string();
    let saved = s
        .put(&format!("/api/Spaces-1/channels/{id}"), default)
        .await;
    assert!(
        !saved["Rules"][0]["Id"].as_str().unwrap().is_empty(),
        "{saved}"
    );
    let beta = s
        .post(
            "/api/Spaces-1/channels",
            json!({"ProjectId": project["Id"], "Name": "Beta", "Rules": [rule("", "^beta")]}),
        )
        .await;
    (id, beta["Id"].as_str().unwrap().to_string())
}

async fn create(s: &Server, body: Value) -> (StatusCode, Value) {
    s.request("POST", "/api/Spaces-1/releases/create/v1", Some(body))
        .await
}

async fn releases(s: &Server, project_id: &str) -> Value {
    s.get(&format!("/api/Spaces-1/projects/{project_id}/releases"))
        .await
}

async fn release(s: &Server, id: &Value) -> Value {
    s.get(&format!("/api/Spaces-1/releases/{}", id.as_str().unwrap()))
        .await
}

fn message(e: &Value) -> String {
    format!("{} {}", e["ErrorMessage"], e["Errors"])
}

#[tokio::test]
async fn channel_rules_pick_package_versions() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    let p = setup(&s, "Shop", work.path()).await;
    let (default_id, beta_id) = two_channels(&s, &p).await;

    // Default channel: the latest stable version in [1.0,2.0).
    let (st, r) = create(
        &s,
        json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.0"}),
    )
    .await;
    assert!(st.is_success(), "{st} {r}");
    let r = release(&s, &r["ReleaseId"]).await;
    assert_eq!(r["ChannelId"], json!(default_id));
    assert_eq!(r["SelectedPackages"][0]["Version"], "1.2.3", "{r}");

    // Beta channel: pre-releases compete; 2.0.0-beta wins.
    let (st, r) = create(
        &s,
        json!({"ProjectName": "Shop", "ChannelName": "Beta", "ReleaseVersion": "1.0.1-beta"}),
    )
    .await;
    assert!(st.is_success(), "{st} {r}");
    let r = release(&s, &r["ReleaseId"]).await;
    assert_eq!(r["ChannelId"], json!(beta_id));
    assert_eq!(r["SelectedPackages"][0]["Version"], "2.0.0-beta", "{r}");

    // An explicit version that breaks the default channel's rule: refused naming it all.
    let (st, e) = create(
        &s,
        json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.2", "Packages": ["Deploy web:2.0.0-beta"]}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let m = message(&e);
    for part in [
        "Acme.Web",
        "2.0.0-beta",
        "'Default'",
        "[1.0,2.0)",
        "^$",
        "rule 1",
    ] {
        assert!(m.contains(part), "{part} in {m}");
    }
    // The same with PackageVersion (the default for every package), and SelectedPackages on
    // the native endpoint.
    let (st, e) = create(
        &s,
        json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.2", "PackageVersion": "2.0.0-beta"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let (st, e) = s
        .request(
            "POST",
            "/api/Spaces-1/releases",
            Some(json!({"ProjectId": p["Id"], "Version": "1.0.2",
                "SelectedPackages": [{"ActionName": STEP, "Version": "2.0.0-beta"}]})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert!(message(&e).contains("[1.0,2.0)"), "{e}");

    // ... accepted with IgnoreChannelRules.
    let (st, r) = create(
        &s,
        json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.2", "Packages": ["Deploy web:2.0.0-beta"],
            "IgnoreChannelRules": true}),
    )
    .await;
    assert!(st.is_success(), "{st} {r}");
    let r = release(&s, &r["ReleaseId"]).await;
    assert_eq!(r["SelectedPackages"][0]["Version"], "2.0.0-beta");
    assert_eq!(r["IgnoreChannelRules"], json!(true));

    // A version the rule allows is fine when given explicitly too.
    let (st, r) = create(
        &s,
        json!({"ProjectName": "Shop", "ReleaseVersion": "1.0.3", "Packages": ["Acme.Web:1.2.3"]}),
    )
    .await;
    assert!(st.is_success(), "{st} {r}");

    // No version satisfies the rule: 400 naming the package, channel and rule.
    let mut beta = s.get(&format!("/api/Spaces-1/channels/{beta_id}")).await;
    beta["Rules"] = json!([rule("[3.0,)", "^beta")]);
    s.put(&format!("/api/Spaces-1/channels/{beta_id}"), beta)
        .await;
    let (st, e) = create(
        &s,
        json!({"ProjectName": "Shop", "ChannelName": "Beta", "ReleaseVersion": "1.0.4-beta"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let m = message(&e);
    for part in ["Acme.Web", "'Beta'", "[3.0,)", "^beta", "No version"] {
        assert!(m.contains(part), "{part} in {m}");
    }

    // The rule test endpoint.
    let t = s
        .get("/api/Spaces-1/channels/rule-test?version=2.0.0-beta&versionRange=%5B1.0,2.0)&preReleaseTag=%5E%24")
        .await;
    assert_eq!(t["SatisfiesVersionRange"], json!(true), "{t}");
    assert_eq!(t["SatisfiesPreReleaseTag"], json!(false), "{t}");
    assert_eq!(t["Errors"], json!([]));
    let t = s
        .post(
            "/api/Spaces-1/channels/rule-test",
            json!({"Version": "not a version", "VersionRange": "[1.0", "PreReleaseTag": "("}),
        )
        .await;
    let errors = t["Errors"].to_string();
    assert!(errors.contains("Invalid Version Number"), "{t}");
    assert!(errors.contains("missing ']' or ')'"), "{t}");
    assert!(
        errors.contains("not a valid pre-release tag pattern"),
        "{t}"
    );
}

#[tokio::test]
async fn channels_with_bad_rules_are_refused() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    let p = setup(&s, "Valid", work.path()).await;
    let new_channel =
        |rules: Value| json!({"ProjectId": p["Id"], "Name": "Checked", "Rules": rules});
    let cases: Vec<(Value, &[&str])> = vec![
        (
            json!([rule("[1.0,2.0", "")]),
            &["rule 1", "[1.0,2.0", "missing ']' or ')'", "position 9"],
        ),
        (
            json!([rule("", "^$"), rule("", "(beta")]),
            &["rule 2", "(beta", "not a valid pre-release tag pattern"],
        ),
        (
            json!([{"VersionRange": "1.0", "Tag": "", "ActionPackages": [{"DeploymentAction": "Deploy api", "PackageReference": ""}]}]),
            &[
                "rule 1",
                "'Deploy api'",
                "not in the project's deployment process",
            ],
        ),
        (
            json!([{"VersionRange": "1.0", "Tag": "", "ActionPackages": [{"DeploymentAction": "Notify", "PackageReference": ""}]}]),
            &["rule 1", "'Notify'", "deploys no package"],
        ),
        (
            json!([{"VersionRange": "1.0", "Tag": "", "ActionPackages": []}]),
            &["rule 1", "names no package step"],
        ),
    ];
    for (rules, parts) in cases {
        let (st, e) = s
            .request(
                "POST",
                "/api/Spaces-1/channels",
                Some(new_channel(rules.clone())),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{rules}: {e}");
        let m = message(&e);
        for part in parts {
            assert!(m.contains(part), "{part} in {m}");
        }
    }
    // A lifecycle that does not exist.
    let (st, e) = s
        .request(
            "POST",
            "/api/Spaces-1/channels",
            Some(json!({"ProjectId": p["Id"], "Name": "Checked", "LifecycleId": "Lifecycles-999"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert!(message(&e).contains("Lifecycles-999"), "{e}");
    // The same checks on update; nothing was written by the refused requests.
    let mut default = default_channel(&s, "Valid").await;
    default["Rules"] = json!([rule("(1.0)", "")]);
    let id = default["Id"].as_str().unwrap().to_string();
    let (st, e) = s
        .request(
            "PUT",
            &format!("/api/Spaces-1/channels/{id}"),
            Some(default),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert!(message(&e).contains("[1.0]"), "{e}");
    let list = s.get("/api/Spaces-1/projects/Valid/channels").await;
    assert_eq!(list["TotalResults"], 1, "{list}");

    // At most one default: making another channel the default moves the flag; the default
    // cannot just be unset.
    let other = s
        .post(
            "/api/Spaces-1/channels",
            json!({"ProjectId": p["Id"], "Name": "Other", "IsDefault": true}),
        )
        .await;
    assert_eq!(other["IsDefault"], json!(true));
    let old = s.get(&format!("/api/Spaces-1/channels/{id}")).await;
    assert_eq!(old["IsDefault"], json!(false), "{old}");
    let mut other_body = other.clone();
    other_body["IsDefault"] = json!(false);
    let (st, e) = s
        .request(
            "PUT",
            &format!("/api/Spaces-1/channels/{}", other["Id"].as_str().unwrap()),
            Some(other_body),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert!(message(&e).contains("default"), "{e}");
    let defaults = s.get("/api/Spaces-1/projects/Valid/channels").await["Items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["IsDefault"] == json!(true))
        .count();
    assert_eq!(defaults, 1);
}

#[tokio::test]
async fn the_package_trigger_picks_the_channel_that_accepts_the_version() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    let p = setup(&s, "Auto", work.path()).await;
    let (default_id, beta_id) = two_channels(&s, &p).await;
    let id = p["Id"].as_str().unwrap();
    let mut body = s.get(&format!("/api/Spaces-1/projects/{id}")).await;
    body["AutoCreateRelease"] = json!(true);
    body["ReleaseCreationStrategy"] = json!({
        "ReleaseCreationPackage": {"DeploymentAction": STEP, "PackageReference": ""},
        "ChannelId": default_id});
    s.put(&format!("/api/Spaces-1/projects/{id}"), body).await;

    // A stable push: the configured (default) channel accepts it.
    assert_eq!(
        push(&s, &make_package(work.path(), "1.5.0")).await,
        StatusCode::CREATED
    );
    let rels = releases(&s, id).await;
    assert_eq!(rels["TotalResults"], 1, "{rels}");
    assert_eq!(rels["Items"][0]["ChannelId"], json!(default_id));
    assert_eq!(rels["Items"][0]["SelectedPackages"][0]["Version"], "1.5.0");
    // A beta push: the default channel's rule refuses it, the beta channel takes it.
    assert_eq!(
        push(&s, &make_package(work.path(), "2.1.0-beta.1")).await,
        StatusCode::CREATED
    );
    let rels = releases(&s, id).await;
    assert_eq!(rels["TotalResults"], 2, "{rels}");
    let newest = &rels["Items"][0];
    assert_eq!(newest["ChannelId"], json!(beta_id), "{newest}");
    assert_eq!(newest["SelectedPackages"][0]["Version"], "2.1.0-beta.1");
    // An rc push: no channel accepts it; no release, and an event says why.
    assert_eq!(
        push(&s, &make_package(work.path(), "2.1.0-rc.1")).await,
        StatusCode::CREATED
    );
    assert_eq!(releases(&s, id).await["TotalResults"], 2);
    let events = s
        .get("/api/Spaces-1/events?eventCategories=ReleaseCreationSkipped")
        .await;
    let m = events["Items"][0]["Message"].as_str().unwrap_or_default();
    assert!(m.contains("2.1.0-rc.1") && m.contains("Auto"), "{events}");
}

#[tokio::test]
async fn release_versions_from_templates_and_donor_packages() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    let p = setup(&s, "Ver", work.path()).await;
    let id = p["Id"].as_str().unwrap().to_string();
    let set_strategy = |strategy: Value| {
        let s = &s;
        let id = id.clone();
        async move {
            let mut body = s.get(&format!("/api/Spaces-1/projects/{id}")).await;
            body["VersioningStrategy"] = strategy;
            s.put(&format!("/api/Spaces-1/projects/{id}"), body).await
        }
    };
    set_strategy(json!({"Template":
        "#{Octopus.Version.LastMajor}.#{Octopus.Version.NextMinor}.#{Octopus.Version.LastPatch}-#{Octopus.Release.Channel.Name}.#{Octopus.Date.Year}#{Octopus.Date.Month}#{Octopus.Date.Day}",
        "DonorPackage": null, "DonorPackageStepId": null}))
    .await;
    let (st, r) = create(&s, json!({"ProjectName": "Ver", "ReleaseVersion": "3.4.5"})).await;
    assert!(st.is_success(), "{st} {r}");
    let before = chrono::Utc::now().format("%Y%m%d").to_string();
    let (st, r) = create(&s, json!({"ProjectName": "Ver"})).await;
    let after = chrono::Utc::now().format("%Y%m%d").to_string();
    assert!(st.is_success(), "{st} {r}");
    let v = r["ReleaseVersion"].as_str().unwrap();
    assert!(
        v == format!("3.5.5-Default.{before}") || v == format!("3.5.5-Default.{after}"),
        "{v}"
    );
    // A mask.
    set_strategy(json!({"Template": "3.c.i"})).await;
    let (_, r) = create(&s, json!({"ProjectName": "Ver"})).await;
    assert_eq!(r["ReleaseVersion"], "3.5.6", "{r}");

    // The version of a donor package: the package version the release selects.
    set_strategy(json!({"Template": null,
        "DonorPackage": {"DeploymentAction": STEP, "PackageReference": ""}}))
    .await;
    let (st, r) = create(&s, json!({"ProjectName": "Ver"})).await;
    assert!(st.is_success(), "{st} {r}");
    assert_eq!(r["ReleaseVersion"], "1.2.3", "{r}");
    let (st, r) = create(
        &s,
        json!({"ProjectName": "Ver", "Packages": ["Deploy web:2.0.0-beta"]}),
    )
    .await;
    assert!(st.is_success(), "{st} {r}");
    assert_eq!(r["ReleaseVersion"], "2.0.0-beta", "{r}");
    // A donor action that does not exist, or deploys no package: refused naming it.
    for (action, expected) in [
        ("Deploy api", "not in the deployment process"),
        ("Notify", "deploys no package"),
    ] {
        set_strategy(json!({"Template": null,
            "DonorPackage": {"DeploymentAction": action, "PackageReference": ""}}))
        .await;
        let (st, e) = create(&s, json!({"ProjectName": "Ver"})).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
        let m = message(&e);
        assert!(m.contains(action) && m.contains(expected), "{m}");
    }
}

#[tokio::test]
async fn release_notes_are_rendered_from_build_information() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    let p = setup(&s, "Notes", work.path()).await;
    s.post(
        "/api/Spaces-1/build-information",
        json!({"PackageId": "Acme.Web", "Version": "1.2.3", "OctopusBuildInformation": {
            "BuildNumber": "77", "BuildUrl": "https://ci/77", "Branch": "main",
            "VcsType": "Git", "VcsRoot": "https://github.com/o/r", "VcsCommitNumber": "abc123",
            "Commits": [{"Id": "abc123", "Comment": "Fix the login"}],
            "WorkItems": [{"Id": "JIRA-7", "Description": "Login broken", "LinkUrl": "https://jira/7"},
                          {"Id": "JIRA-9", "Description": "Faster", "LinkUrl": "https://jira/9"}]}}),
    )
    .await;
    let id = p["Id"].as_str().unwrap();
    let mut body = s.get(&format!("/api/Spaces-1/projects/{id}")).await;
    let template = "Release #{Octopus.Release.Number}\n#{each package in Octopus.Release.Package}- #{package.PackageId} #{package.Version}#{each workItem in package.WorkItems} #{workItem.Id}#{/each}#{each commit in package.Commits} (#{commit.CommitId}: #{commit.Comment} #{commit.LinkUrl})#{/each}#{/each}";
    body["ReleaseNotesTemplate"] = json!(template);
    let saved = s.put(&format!("/api/Spaces-1/projects/{id}"), body).await;
    assert_eq!(saved["ReleaseNotesTemplate"], template);
    assert_eq!(
        s.get(&format!("/api/Spaces-1/projects/{id}")).await["ReleaseNotesTemplate"],
        template
    );

    let (st, r) = create(
        &s,
        json!({"ProjectName": "Notes", "ReleaseVersion": "1.0.0"}),
    )
    .await;
    assert!(st.is_success(), "{st} {r}");
    let r = release(&s, &r["ReleaseId"]).await;
    assert_eq!(
        r["ReleaseNotes"],
        "Release 1.0.0\n- Acme.Web 1.2.3 JIRA-7 JIRA-9 (abc123: Fix the login https://github.com/o/r/commit/abc123)",
        "{r}"
    );
    let bi = &r["BuildInformation"][0];
    assert_eq!(bi["PackageId"], "Acme.Web", "{r}");
    assert_eq!(bi["Version"], "1.2.3");
    assert_eq!(bi["BuildNumber"], "77");
    assert_eq!(bi["VcsCommitNumber"], "abc123");
    // Notes given with the release win over the template.
    let (_, r) = create(
        &s,
        json!({"ProjectName": "Notes", "ReleaseVersion": "1.0.1", "ReleaseNotes": "by hand"}),
    )
    .await;
    assert_eq!(
        release(&s, &r["ReleaseId"]).await["ReleaseNotes"],
        "by hand"
    );
    // ... and may use the same variables; what cannot be resolved stays as written.
    let (_, r) = create(
        &s,
        json!({"ProjectName": "Notes", "ReleaseVersion": "1.0.2",
            "ReleaseNotes": "#{Octopus.Release.Number} of #{Octopus.Project.Name}: #{Octopus.Release.Package[0].WorkItems[1].Id} #{Unknown}"}),
    )
    .await;
    assert_eq!(
        release(&s, &r["ReleaseId"]).await["ReleaseNotes"],
        "1.0.2 of Notes: JIRA-9 #{Unknown}"
    );
}

#[tokio::test]
async fn prevented_releases_do_not_progress_until_allowed() {
    let s = Server::start();
    s.create_environment("Development").await;
    s.create_environment("Test").await;
    s.create_project("Gate").await;
    s.set_scripts("Gate", &[("Say", "echo hello")]).await;
    let r = s.create_release("Gate", "1.0.0").await;
    let rid = r["ReleaseId"].as_str().unwrap().to_string();
    let task = s.deploy("Gate", "1.0.0", "Development").await;
    assert_eq!(
        s.wait_task(&task, Duration::from_secs(60)).await["State"],
        "Success"
    );

    let (st, e) = s
        .request(
            "POST",
            &format!("/api/Spaces-1/releases/{rid}/defects"),
            Some(json!({"ReleaseId": rid, "Description": ""})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let d = s
        .post(
            &format!("/api/Spaces-1/releases/{rid}/defects"),
            json!({"ReleaseId": rid, "Description": "Login is broken"}),
        )
        .await;
    assert_eq!(d["Status"], "Unresolved", "{d}");
    assert_eq!(d["Description"], "Login is broken");
    let r = s.get(&format!("/api/Spaces-1/releases/{rid}")).await;
    assert_eq!(r["HasUnresolvedDefect"], json!(true), "{r}");
    assert!(r.get("Defects").is_none(), "{r}");
    let prog = s
        .get(&format!("/api/Spaces-1/releases/{rid}/progression"))
        .await;
    assert_eq!(prog["HasUnresolvedDefect"], json!(true));
    assert!(
        !prog["NextDeployments"]
            .to_string()
            .contains("Environments-2"),
        "{prog}"
    );

    // A new environment: refused with the reason.
    let deploy = |env: &str| json!({"ProjectName": "Gate", "ReleaseVersion": "1.0.0", "EnvironmentNames": [env]});
    let (st, e) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(deploy("Test")),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let m = message(&e);
    assert!(
        m.contains("Login is broken") && m.contains("Test") && m.contains("prevented"),
        "{m}"
    );
    // Where it already went: allowed.
    let (st, e) = s
        .request(
            "POST",
            "/api/Spaces-1/deployments/create/untenanted/v1",
            Some(deploy("Development")),
        )
        .await;
    assert!(st.is_success(), "{e}");
    let redeploy = e["DeploymentServerTasks"][0]["ServerTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_task(&redeploy, Duration::from_secs(60)).await;

    let list = s
        .get(&format!("/api/Spaces-1/releases/{rid}/defects"))
        .await;
    assert_eq!(list["Items"][0]["Status"], "Unresolved", "{list}");

    // Allow progression again: Test can be deployed.
    let d = s
        .post(
            &format!("/api/Spaces-1/releases/{rid}/defects/resolve"),
            json!({"ReleaseId": rid}),
        )
        .await;
    assert_eq!(d["Status"], "Resolved", "{d}");
    let (st, e) = s
        .request(
            "POST",
            &format!("/api/Spaces-1/releases/{rid}/defects/resolve"),
            Some(json!({"ReleaseId": rid})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(
        s.get(&format!("/api/Spaces-1/releases/{rid}")).await["HasUnresolvedDefect"],
        json!(false)
    );
    let task = s.deploy("Gate", "1.0.0", "Test").await;
    assert_eq!(
        s.wait_task(&task, Duration::from_secs(60)).await["State"],
        "Success"
    );
    // Both actions are audited.
    for category in ["ReleaseProgressionPrevented", "ReleaseProgressionAllowed"] {
        let ev = s
            .get(&format!("/api/Spaces-1/events?eventCategories={category}"))
            .await;
        assert!(
            ev["Items"][0]["Message"]
                .as_str()
                .is_some_and(|m| m.contains("Login is broken") || m.contains("1.0.0")),
            "{category}: {ev}"
        );
    }
}

#[tokio::test]
async fn automatic_deployments_do_not_take_a_prevented_release_further() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    let flag = work.path().join("ok");
    let dev = s.create_environment("Development").await["Id"].clone();
    let test = s.create_environment("Test").await["Id"].clone();
    s.create_project("Gate").await;
    // Fails until the flag file exists.
    s.set_scripts(
        "Gate",
        &[("Check", &format!("test -f '{}'", flag.display()))],
    )
    .await;
    let lc = s
        .post(
            "/api/Spaces-1/lifecycles",
            json!({"Name": "Gate lifecycle", "Phases": [
                {"Name": "Dev", "OptionalDeploymentTargets": [dev]},
                {"Name": "Test", "AutomaticDeploymentTargets": [test]}]}),
        )
        .await;
    let mut p = s.get("/api/Spaces-1/projects/Gate").await;
    p["LifecycleId"] = lc["Id"].clone();
    let pid = p["Id"].as_str().unwrap().to_string();
    s.put(&format!("/api/Spaces-1/projects/{pid}"), p).await;
    let rid = s.create_release("Gate", "1.0.0").await["ReleaseId"]
        .as_str()
        .unwrap()
        .to_string();
    // A failed deployment to Development leaves the Dev phase incomplete.
    let task = s.deploy("Gate", "1.0.0", "Development").await;
    assert_eq!(
        s.wait_task(&task, Duration::from_secs(60)).await["State"],
        "Failed"
    );
    s.post(
        &format!("/api/Spaces-1/releases/{rid}/defects"),
        json!({"ReleaseId": rid, "Description": "Do not ship"}),
    )
    .await;
    // The redeploy to Development is allowed and succeeds, completing the phase; the
    // automatic deployment to Test is refused, with the reason recorded.
    std::fs::write(&flag, "").unwrap();
    let task = s.deploy("Gate", "1.0.0", "Development").await;
    assert_eq!(
        s.wait_task(&task, Duration::from_secs(60)).await["State"],
        "Success"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ev = s
            .get("/api/Spaces-1/events?eventCategories=AutoDeployFailed")
            .await;
        if ev["Items"][0]["Message"]
            .as_str()
            .is_some_and(|m| m.contains("Do not ship"))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ev}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deps = s
        .get(&format!("/api/Spaces-1/releases/{rid}/deployments"))
        .await;
    assert!(
        deps["Items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["EnvironmentId"] == dev),
        "{deps}"
    );
}
