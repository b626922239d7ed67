//! The "Deploy a package" step end to end: push a package to the built-in feed, create a release
//! that picks its version, deploy it to two environments on the built-in worker, and check the
//! files on disk (structured configuration and substituted templates per environment), the
//! conventions' order in the log, the installation-directory output variable, the target's
//! package cache, and retention of earlier installations.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::Server;

pub(crate) fn make_package(dir: &Path, version: &str) -> std::path::PathBuf {
    let src = dir.join(format!("src-{version}"));
    std::fs::create_dir_all(src.join("config")).unwrap();
    std::fs::write(
        src.join("appsettings.json"),
        r#"{
  "Logging": { "LogLevel": { "Default": "Warning" } },
  "ConnectionStrings": { "Db": "Server=localhost" },
  "Port": 80,
  "Features": ["a", "b"]
}
"#,
    )
    .unwrap();
    std::fs::write(
        src.join("config/app.template"),
        "env=#{Octopus.Environment.Name} db=#{DbHost}\n",
    )
    .unwrap();
    std::fs::write(
        src.join("PreDeploy.sh"),
        "echo \"stage: PreDeploy in $(pwd | sed 's#.*/##')\"\ngrep -q '#{DbHost}' config/app.template && echo 'template not substituted yet'\n",
    )
    .unwrap();
    std::fs::write(
        src.join("Deploy.sh"),
        "echo \"stage: Deploy\"\necho \"rendered: $(cat config/app.template)\"\n",
    )
    .unwrap();
    std::fs::write(src.join("PostDeploy.py"), "print('stage: PostDeploy ' + get_octopusvariable('Octopus.Action.Package.PackageVersion'))\n").unwrap();
    let out = dir.join(format!("Acme.Web.{version}.zip"));
    ferry_packages::archive::pack(&src, &out, ferry_packages::filename::PackageFormat::Zip)
        .unwrap();
    out
}

pub(crate) async fn push(s: &Server, file: &Path) -> reqwest::StatusCode {
    let bytes = std::fs::read(file).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let form = reqwest::multipart::Form::new().part(
        "fileToUpload",
        reqwest::multipart::Part::bytes(bytes).file_name(name),
    );
    reqwest::Client::new()
        .post(format!("{}/api/Spaces-1/packages/raw", s.url))
        .header("X-Octopus-ApiKey", &s.api_key)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .status()
}

async fn put_variables(s: &Server, project: &str, vars: Value) {
    let id = s.get(&format!("/api/Spaces-1/projects/{project}")).await["VariableSetId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut body = s.get(&format!("/api/Spaces-1/variables/{id}")).await;
    body["Variables"] = vars;
    s.put(&format!("/api/Spaces-1/variables/{id}"), body).await;
}

#[tokio::test]
async fn deploy_a_package_step_end_to_end() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    let dev = s.create_environment("Development").await["Id"].clone();
    let test = s.create_environment("Test").await["Id"].clone();
    assert!(
        push(&s, &make_package(work.path(), "1.0.0"))
            .await
            .is_success()
    );
    assert!(
        push(&s, &make_package(work.path(), "1.1.0"))
            .await
            .is_success()
    );
    s.create_project("Web").await;
    put_variables(
        &s,
        "Web",
        json!([
            {"Name": "Logging:LogLevel:Default", "Value": "Debug", "Scope": {"Environment": [dev]}},
            {"Name": "Logging:LogLevel:Default", "Value": "Error", "Scope": {"Environment": [test]}},
            {"Name": "Port", "Value": "8080"},
            {"Name": "DbHost", "Value": "dev-db", "Scope": {"Environment": [dev]}},
            {"Name": "DbHost", "Value": "test-db", "Scope": {"Environment": [test]}}
        ]),
    )
    .await;
    let steps = json!([
        {
            "Name": "Deploy web",
            "Actions": [{
                "ActionType": "Octopus.TentaclePackage",
                "Packages": [{"Name": "", "PackageId": "Acme.Web", "FeedId": "feeds-builtin", "AcquisitionLocation": "Server"}],
                "Properties": {
                    "Octopus.Action.RunOnServer": "true",
                    "Octopus.Action.Package.PackageId": "Acme.Web",
                    "Octopus.Action.Package.FeedId": "feeds-builtin",
                    "Octopus.Action.EnabledFeatures": "Octopus.Features.SubstituteInFiles,Octopus.Features.JsonConfigurationVariables",
                    "Octopus.Action.SubstituteInFiles.TargetFiles": "config/*.template",
                    "Octopus.Action.Package.JsonConfigurationVariablesTargets": "appsettings.json"
                }
            }]
        },
        {
            "Name": "Report",
            "Actions": [{"ActionType": "Octopus.Script", "Properties": {
                "Octopus.Action.Script.ScriptBody": "echo \"installed at #{Octopus.Action[Deploy web].Output.Package.InstallationDirectoryPath}\"",
                "Octopus.Action.RunOnServer": "true"
            }}]
        }
    ]);
    s.put(
        "/api/Spaces-1/projects/Web/deploymentprocesses",
        json!({"Steps": steps}),
    )
    .await;
    // The release picks the latest version in the feed unless told otherwise.
    let r = s
        .post(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Web", "ReleaseVersion": "2.0.0"}),
        )
        .await;
    let rel = s
        .get(&format!(
            "/api/Spaces-1/releases/{}",
            r["ReleaseId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rel["SelectedPackages"][0]["Version"], "1.1.0", "{rel}");
    let r = s
        .post("/api/Spaces-1/releases/create/v1", json!({"ProjectName": "Web", "ReleaseVersion": "1.0.0", "Packages": ["Deploy web:1.0.0"]}))
        .await;
    let rel = s
        .get(&format!(
            "/api/Spaces-1/releases/{}",
            r["ReleaseId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rel["SelectedPackages"][0]["Version"], "1.0.0");
    // A version that is not in the feed is refused.
    let (st, body) = s
        .request(
            "POST",
            "/api/Spaces-1/releases/create/v1",
            Some(
                json!({"ProjectName": "Web", "ReleaseVersion": "3.0.0", "PackageVersion": "9.9.9"}),
            ),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert!(body["Errors"][0].as_str().unwrap().contains("9.9.9"));

    let task = s.deploy("Web", "1.0.0", "Development").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Success", "{raw}");
    let install = s.data_dir.join("applications/Development/Acme.Web/1.0.0");
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(install.join("appsettings.json")).unwrap())
            .unwrap();
    assert_eq!(settings["Logging"]["LogLevel"]["Default"], "Debug");
    assert_eq!(settings["Port"], 8080, "numbers stay numbers");
    assert_eq!(settings["Features"], json!(["a", "b"]));
    assert_eq!(
        std::fs::read_to_string(install.join("config/app.template")).unwrap(),
        "env=Development db=dev-db\n"
    );
    // Octopus's order: PreDeploy (before substitution), substitution, structured config, Deploy, PostDeploy.
    let pos = |needle: &str| {
        raw.find(needle)
            .unwrap_or_else(|| panic!("'{needle}' missing from:\n{raw}"))
    };
    assert!(pos("stage: PreDeploy in 1.0.0") < pos("template not substituted yet"));
    assert!(pos("template not substituted yet") < pos("Substituted variables in"));
    assert!(pos("Substituted variables in") < pos("Structured configuration variables applied"));
    assert!(pos("Structured configuration variables applied") < pos("stage: Deploy"));
    assert!(pos("rendered: env=Development db=dev-db") < pos("stage: PostDeploy 1.0.0"));
    assert!(
        raw.contains(&format!("installed at {}", install.display())),
        "{raw}"
    );
    assert!(raw.contains("Acquired package Acme.Web 1.0.0"));

    // Promote to Test: its own values; the package is already in the target's cache.
    let task = s.deploy("Web", "1.0.0", "Test").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Success", "{raw}");
    assert!(raw.contains("already on the target"), "{raw}");
    let install = s.data_dir.join("applications/Test/Acme.Web/1.0.0");
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(install.join("appsettings.json")).unwrap())
            .unwrap();
    assert_eq!(settings["Logging"]["LogLevel"]["Default"], "Error");
    assert_eq!(
        std::fs::read_to_string(install.join("config/app.template")).unwrap(),
        "env=Test db=test-db\n"
    );

    // Redeploys get fresh directories; retention keeps the last three.
    for _ in 0..4 {
        let task = s.deploy("Web", "1.0.0", "Development").await;
        assert_eq!(
            s.wait_task(&task, Duration::from_secs(60)).await["State"],
            "Success"
        );
    }
    let mut dirs: Vec<String> =
        std::fs::read_dir(s.data_dir.join("applications/Development/Acme.Web"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
    dirs.sort();

    assert_eq!(
        dirs,
        vec![".ferry-installations", "1.0.0_2", "1.0.0_3", "1.0.0_4"],
        "the last three, the current among them"
    );
}

#[tokio::test]
async fn a_failing_package_deployment_runs_deploy_failed() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    s.create_environment("Development").await;
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("Deploy.sh"), "echo deploying; exit 4\n").unwrap();
    std::fs::write(
        src.join("DeployFailed.sh"),
        "echo cleaning up after failure\n",
    )
    .unwrap();
    let pkg = work.path().join("Broken.App.1.0.0.tar.gz");
    ferry_packages::archive::pack(&src, &pkg, ferry_packages::filename::PackageFormat::TarGz)
        .unwrap();
    assert!(push(&s, &pkg).await.is_success());
    s.create_project("Broken").await;
    s.put(
        "/api/Spaces-1/projects/Broken/deploymentprocesses",
        json!({"Steps": [{"Name": "Install", "Actions": [{"ActionType": "Octopus.TentaclePackage",
            "Properties": {"Octopus.Action.RunOnServer": "true", "Octopus.Action.Package.PackageId": "Broken.App", "Octopus.Action.Package.FeedId": "feeds-builtin"}}]}]}),
    )
    .await;
    s.create_release("Broken", "1.0.0").await;
    let task = s.deploy("Broken", "1.0.0", "Development").await;
    let t = s.wait_task(&task, Duration::from_secs(60)).await;
    let raw = s.raw(&format!("/api/tasks/{task}/raw")).await;
    assert_eq!(t["State"], "Failed", "{raw}");
    assert!(
        t["ErrorMessage"].as_str().unwrap().contains("exit code 4"),
        "{t}"
    );
    assert!(
        raw.find("deploying").unwrap() < raw.find("cleaning up after failure").unwrap(),
        "{raw}"
    );
}

#[tokio::test]
async fn pushing_a_new_version_creates_a_release_when_the_trigger_is_on() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    s.create_environment("Development").await;
    assert!(
        push(&s, &make_package(work.path(), "1.0.0"))
            .await
            .is_success()
    );
    let p = s.create_project("Auto").await;
    s.put(
        "/api/Spaces-1/projects/Auto/deploymentprocesses",
        json!({"Steps": [{"Name": "Deploy web", "Actions": [{"ActionType": "Octopus.TentaclePackage",
            "Properties": {"Octopus.Action.RunOnServer": "true", "Octopus.Action.Package.PackageId": "Acme.Web", "Octopus.Action.Package.FeedId": "feeds-builtin"}}]}]}),
    )
    .await;
    let mut body = p.clone();
    body["AutoCreateRelease"] = json!(true);
    body["ReleaseCreationStrategy"] = json!({"ReleaseCreationPackage": {"DeploymentAction": "Deploy web", "PackageReference": ""}, "ChannelId": null});
    s.put(
        &format!("/api/Spaces-1/projects/{}", p["Id"].as_str().unwrap()),
        body,
    )
    .await;
    // A new version: a release that uses it, versioned by the project's template.
    assert_eq!(
        push(&s, &make_package(work.path(), "1.2.0")).await,
        reqwest::StatusCode::CREATED
    );
    let rels = s.get("/api/Spaces-1/projects/Auto/releases").await;
    assert_eq!(rels["TotalResults"], 1, "{rels}");
    assert_eq!(rels["Items"][0]["SelectedPackages"][0]["Version"], "1.2.0");
    assert_eq!(rels["Items"][0]["Version"], "0.0.1");
    // The same version pushed again (ignored) does not fire.
    let bytes = std::fs::read(work.path().join("Acme.Web.1.2.0.zip")).unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name("Acme.Web.1.2.0.zip"),
    );
    let st = reqwest::Client::new()
        .post(format!(
            "{}/api/Spaces-1/packages/raw?overwriteMode=IgnoreIfExists",
            s.url
        ))
        .header("X-Octopus-ApiKey", &s.api_key)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, reqwest::StatusCode::OK);
    assert_eq!(
        s.get("/api/Spaces-1/projects/Auto/releases").await["TotalResults"],
        1
    );
}

/// Installed directories of Acme.Web in an environment, sorted, without the journal.
fn installations(s: &Server, env: &str) -> Vec<String> {
    let mut dirs: Vec<String> =
        std::fs::read_dir(s.data_dir.join(format!("applications/{env}/Acme.Web")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| !n.starts_with('.'))
            .collect();
    dirs.sort();
    dirs
}

#[tokio::test]
async fn target_retention_follows_the_lifecycle_and_its_phases() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    let dev = s.create_environment("Development").await["Id"].clone();
    let test = s.create_environment("Test").await["Id"].clone();
    assert!(
        push(&s, &make_package(work.path(), "1.0.0"))
            .await
            .is_success()
    );
    // Test's phase (first) has no policy of its own, so the lifecycle's applies: one day of
    // installations. Development's phase keeps one installation. (A phase without a policy
    // inherits from the nearest earlier phase that has one, so Test comes first here.)
    let lc = s
        .post(
            "/api/Spaces-1/lifecycles",
            json!({"Name": "Lean", "Phases": [
                {"Name": "Test", "OptionalDeploymentTargets": [test], "IsOptionalPhase": true},
                {"Name": "Dev", "OptionalDeploymentTargets": [dev], "IsOptionalPhase": true,
                 "TentacleRetentionPolicy": {"Unit": "Items", "QuantityToKeep": 1, "ShouldKeepForever": false}}],
             "TentacleRetentionPolicy": {"Unit": "Days", "QuantityToKeep": 1, "ShouldKeepForever": false}}),
        )
        .await;
    let mut p = s.create_project("Lean").await;
    p["LifecycleId"] = lc["Id"].clone();
    s.put(
        &format!("/api/Spaces-1/projects/{}", p["Id"].as_str().unwrap()),
        p,
    )
    .await;
    s.put(
        "/api/Spaces-1/projects/Lean/deploymentprocesses",
        json!({"Steps": [{"Name": "Deploy web", "Actions": [{
            "ActionType": "Octopus.TentaclePackage",
            "Packages": [{"Name": "", "PackageId": "Acme.Web", "FeedId": "feeds-builtin"}],
            "Properties": {"Octopus.Action.RunOnServer": "true",
                "Octopus.Action.Package.PackageId": "Acme.Web",
                "Octopus.Action.Package.FeedId": "feeds-builtin"}}]}]}),
    )
    .await;
    s.create_release("Lean", "1.0.0").await;
    let deploy_ok = |env: &'static str| {
        let s = &s;
        async move {
            let task = s.deploy("Lean", "1.0.0", env).await;
            let t = s.wait_task(&task, Duration::from_secs(60)).await;
            assert_eq!(t["State"], "Success", "{t}");
            s.raw(&format!("/api/tasks/{task}/raw")).await
        }
    };
    for _ in 0..3 {
        deploy_ok("Development").await;
    }
    assert_eq!(installations(&s, "Development"), vec!["1.0.0_2"]);

    // By age: two installations in Test, the first made to look three days old.
    deploy_ok("Test").await;
    deploy_ok("Test").await;
    assert_eq!(installations(&s, "Test"), vec!["1.0.0", "1.0.0_1"]);
    let old = s.data_dir.join("applications/Test/Acme.Web/1.0.0");
    let st = std::process::Command::new("touch")
        .args(["-d", "3 days ago"])
        .arg(&old)
        .status()
        .unwrap();
    assert!(st.success());
    let log = deploy_ok("Test").await;
    assert!(log.contains("keeping the last 1 day(s)"), "{log}");
    assert_eq!(installations(&s, "Test"), vec!["1.0.0_1", "1.0.0_2"]);
}
