//! The CLI through the real binary: the README's tours run exactly as written, and the exit
//! codes scripts rely on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{Server, ferry_bin};

fn readme() -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
        .unwrap()
}

/// The shell code of the README between `<!-- tour:NAME:start -->` and `<!-- …:end -->`.
fn tour(name: &str) -> String {
    let text = readme();
    let start = format!("<!-- tour:{name}:start -->");
    let end = format!("<!-- tour:{name}:end -->");
    let a = text
        .find(&start)
        .unwrap_or_else(|| panic!("README has no {start}"))
        + start.len();
    let b = text[a..].find(&end).unwrap() + a;
    text[a..b]
        .lines()
        .filter(|l| !l.trim_start().starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn bin_dir() -> PathBuf {
    Path::new(ferry_bin()).parent().unwrap().to_path_buf()
}

fn run_shell(s: &Server, script: &str) -> Output {
    let dir = std::env::temp_dir();
    run_shell_in(s, script, &dir)
}

fn run_shell_in(s: &Server, script: &str, dir: &Path) -> Output {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .current_dir(dir)
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .env("PATH", path)
        .env("FERRY_URL", &s.url)
        .env("FERRY_API_KEY", &s.api_key)
        .env_remove("FERRY_SPACE")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn readme_tours_work_as_written() {
    let s = Server::start();
    let cli = run_shell(&s, &tour("cli"));
    let out = text(&cli);
    assert!(cli.status.success(), "CLI tour failed:\n{out}");
    assert!(out.contains("Hello from"), "{out}");
    assert!(out.contains("ServerTasks-1"), "{out}");
    let t = s.get("/api/tasks/ServerTasks-2").await;
    assert_eq!(t["State"], "Success");
    assert!(t["Description"].as_str().unwrap().contains("to Test"));

    let vars = run_shell(&s, &tour("vars"));
    let out = text(&vars);
    assert!(vars.status.success(), "variables tour failed:\n{out}");
    assert!(
        out.contains("Connecting to dev-db.internal as Hello World with ********"),
        "{out}"
    );
    assert!(!out.contains("correct-horse-battery"), "{out}");

    let work = tempfile::tempdir().unwrap();
    let pkgs = run_shell_in(&s, &tour("packages"), work.path());
    let out = text(&pkgs);
    assert!(pkgs.status.success(), "packages tour failed:\n{out}");
    let installed = s.data_dir.join("applications/Development/Hello.Site/1.0.0");
    assert_eq!(
        std::fs::read_to_string(installed.join("index.html"))
            .unwrap()
            .trim(),
        "<h1>Development on dev-db.internal</h1>"
    );
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(installed.join("appsettings.json")).unwrap())
            .unwrap();
    assert_eq!(settings["Greeting"], "Hello from Ferry");
    assert_eq!(settings["Port"], 80);

    let lc = run_shell(&s, &tour("lifecycle"));
    let out = text(&lc);
    assert!(lc.status.success(), "lifecycle tour failed:\n{out}");
    assert!(
        out.contains("The lifecycle deploys it automatically to Development"),
        "{out}"
    );
    assert!(out.contains("Shop 1.0.0 in Development"), "{out}");
    assert!(
        out.contains("the lifecycle phase 'Test' must be completed first"),
        "{out}"
    );
    assert!(out.contains("Shop 1.0.0 in Test"), "{out}");
    assert!(out.contains("Shop 1.0.0 in Production"), "{out}");
    assert!(out.contains("at least 1"), "{out}");

    let tn = run_shell(&s, &tour("tenants"));
    let out = text(&tn);
    assert!(tn.status.success(), "tenants tour failed:\n{out}");
    assert!(out.contains("Portal for Acme (Tier/Gold)"), "{out}");
    assert!(out.contains("Portal for Initech (Tier/Gold)"), "{out}");
    assert!(!out.contains("Portal for Globex"), "{out}");

    let testers = run_shell(&s, &tour("testers"));
    let out = text(&testers);
    assert!(testers.status.success(), "testers tour failed:\n{out}");
    assert!(
        out.contains("Missing permission: DeploymentCreate"),
        "{out}"
    );
    assert!(out.contains("Testers"), "{out}");
    // Tess's own deployment to Test succeeded (followed by --wait).
    assert!(
        out.contains("Success: Deploy Hello World release 1.1.0 to Test"),
        "{out}"
    );

    let agent_dir = tempfile::tempdir().unwrap();
    let agent = run_shell_in(&s, &tour("agent"), agent_dir.path());
    let out = text(&agent);
    assert!(agent.status.success(), "agent tour failed:\n{out}");
    assert!(out.contains("hello from web01"), "{out}");
    assert!(
        out.contains("web01") && out.contains("TentaclePassive"),
        "{out}"
    );

    let curl = run_shell(&s, &tour("curl"));
    let out = text(&curl);
    assert!(curl.status.success(), "curl tour failed:\n{out}");
    assert!(out.contains("\"State\":\"Success\""), "{out}");
    assert!(out.contains("hello from curl"), "{out}");
}

fn ferry(s: &Server, args: &[&str]) -> Output {
    Command::new(ferry_bin())
        .args(args)
        .env("FERRY_URL", &s.url)
        .env("FERRY_API_KEY", &s.api_key)
        .env_remove("FERRY_SPACE")
        .output()
        .unwrap()
}

#[tokio::test]
async fn exit_codes_and_errors() {
    let s = Server::start();
    assert!(
        ferry(&s, &["environment", "create", "Development"])
            .status
            .success()
    );
    assert!(ferry(&s, &["project", "create", "Broken"]).status.success());
    assert!(
        ferry(
            &s,
            &[
                "process",
                "add-script",
                "--project",
                "Broken",
                "--name",
                "Fail",
                "--script",
                "echo about to fail; exit 7"
            ]
        )
        .status
        .success()
    );
    assert!(
        ferry(
            &s,
            &[
                "release",
                "create",
                "--project",
                "Broken",
                "--version",
                "1.0.0"
            ]
        )
        .status
        .success()
    );
    // A failed deployment with --wait exits 3 and shows the log.
    let o = ferry(
        &s,
        &[
            "release",
            "deploy",
            "--project",
            "Broken",
            "--version",
            "1.0.0",
            "--environment",
            "Development",
            "--wait",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("about to fail"));
    // The API's refusal is shown as it came, exit 1.
    let o = ferry(
        &s,
        &[
            "release",
            "create",
            "--project",
            "Broken",
            "--version",
            "1.0.0",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already exists"),
        "{}",
        text(&o)
    );
    let o = ferry(&s, &["project", "create", "Broken"]);
    assert_eq!(o.status.code(), Some(1));
    // JSON output is the API's JSON.
    let o = ferry(&s, &["--output", "json", "environment", "list"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["Name"], "Development");
    // No key: 1 with the server's message; unreachable server: 4.
    let o = Command::new(ferry_bin())
        .args(["project", "list"])
        .env("FERRY_URL", &s.url)
        .env_remove("FERRY_API_KEY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = Command::new(ferry_bin())
        .args([
            "project",
            "list",
            "--server",
            "http://127.0.0.1:9",
            "--api-key",
            "API-XXXXXXXXXXXXXXXXXXXXXXXXXX",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    // Usage errors: 2.
    let o = ferry(&s, &["release", "deploy", "--project", "Broken"]);
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test]
async fn release_management_commands() {
    let s = Server::start();
    let ok = |args: &[&str]| {
        let o = ferry(&s, args);
        let out = text(&o);
        assert!(o.status.success(), "ferry {args:?} failed:\n{out}");
        out
    };
    ok(&["environment", "create", "Development"]);
    ok(&["environment", "create", "Production"]);
    ok(&[
        "lifecycle",
        "create",
        "--name",
        "Two",
        "--phase",
        "Dev=Development",
        "--phase",
        "Prod=Production;optional",
        "--keep-releases",
        "5",
    ]);
    let out = ok(&["lifecycle", "show", "Two"]);
    assert!(out.contains("Releases: keep 5 items"), "{out}");
    assert!(out.contains("Prod") && out.contains("optional"), "{out}");
    let out = ok(&["lifecycle", "list"]);
    assert!(out.contains("Dev → Prod"), "{out}");
    // Bad phase syntax is a usage error naming the option.
    let o = ferry(
        &s,
        &[
            "lifecycle",
            "create",
            "--name",
            "X",
            "--phase",
            "A=Development;min=x",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("min=x"), "{}", text(&o));

    ok(&[
        "project",
        "create",
        "Web",
        "--lifecycle",
        "Two",
        "--tenanted",
        "both",
    ]);
    ok(&[
        "process",
        "add-package",
        "--project",
        "Web",
        "--name",
        "Deploy web",
        "--package",
        "Acme.Web",
    ]);
    ok(&[
        "channel",
        "create",
        "--project",
        "Web",
        "--name",
        "Beta",
        "--rule",
        "Deploy web|[1.0,2.0)|^beta",
    ]);
    let out = ok(&["channel", "list", "--project", "Web"]);
    assert!(
        out.contains("Beta") && out.contains("Deploy web: [1.0,2.0) ^beta"),
        "{out}"
    );
    // A rule naming no step of the process is refused by the server, naming it.
    let o = ferry(
        &s,
        &[
            "channel",
            "create",
            "--project",
            "Web",
            "--name",
            "Bad",
            "--rule",
            "Nope|[1.0,)|",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("Nope"), "{}", text(&o));
    ok(&["channel", "delete", "--project", "Web", "Beta"]);
    assert!(!ok(&["channel", "list", "--project", "Web"]).contains("Beta"));

    // Tenants: tags, connection and a tenant variable from a project template.
    ok(&[
        "tenant",
        "create-tag-set",
        "--name",
        "Region",
        "--tag",
        "East",
        "--tag",
        "West",
    ]);
    assert!(ok(&["tenant", "tag-sets"]).contains("Region/East, Region/West"));
    ok(&["tenant", "create", "--name", "Acme", "--tag", "Region/East"]);
    let o = ferry(
        &s,
        &["tenant", "create", "--name", "Bad", "--tag", "Region/North"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("Region/North"), "{}", text(&o));
    let mut p = s.get("/api/Spaces-1/projects/Web").await;
    p["Templates"] = serde_json::json!([{"Name": "DbName", "Label": "Database",
        "DisplaySettings": {"Octopus.ControlType": "SingleLineText"}}]);
    s.put(
        &format!("/api/Spaces-1/projects/{}", p["Id"].as_str().unwrap()),
        p,
    )
    .await;
    ok(&[
        "tenant",
        "connect",
        "Acme",
        "--project",
        "Web",
        "--environment",
        "Development",
    ]);
    let out = ok(&["tenant", "show", "Acme"]);
    assert!(
        out.contains("Region/East") && out.contains("Web") && out.contains("Development"),
        "{out}"
    );
    assert!(ok(&["tenant", "list", "--tag", "Region/East"]).contains("Acme"));
    assert!(!ok(&["tenant", "list", "--tag", "Region/West"]).contains("Acme"));
    ok(&[
        "tenant",
        "set-variable",
        "Acme",
        "--project",
        "Web",
        "--environment",
        "Development",
        "--template",
        "DbName",
        "--value",
        "acme_db",
    ]);
    let t = s.get("/api/Spaces-1/tenants/Acme").await;
    let vars = s
        .get(&format!(
            "/api/Spaces-1/tenants/{}/variables",
            t["Id"].as_str().unwrap()
        ))
        .await;
    assert!(vars.to_string().contains("acme_db"), "{vars}");
    let o = ferry(
        &s,
        &[
            "tenant",
            "set-variable",
            "Acme",
            "--project",
            "Web",
            "--environment",
            "Development",
            "--template",
            "Nope",
            "--value",
            "x",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("'Nope'"), "{}", text(&o));
    ok(&["tenant", "disconnect", "Acme", "--project", "Web"]);
    ok(&["tenant", "delete", "Acme"]);
    assert!(!ok(&["tenant", "list"]).contains("Acme"));
    ok(&["lifecycle", "create", "--name", "Spare"]);
    ok(&["lifecycle", "delete", "Spare"]);

    // Prevent and allow progression.
    ok(&["project", "create", "Gate"]);
    ok(&[
        "process",
        "add-script",
        "--project",
        "Gate",
        "--name",
        "Hi",
        "--script",
        "echo hi",
    ]);
    ok(&[
        "release",
        "create",
        "--project",
        "Gate",
        "--version",
        "1.0.0",
    ]);
    let out = ok(&[
        "release",
        "prevent-progression",
        "--project",
        "Gate",
        "--version",
        "1.0.0",
        "--reason",
        "broken login",
    ]);
    assert!(out.contains("may not progress"), "{out}");
    let o = ferry(
        &s,
        &[
            "release",
            "deploy",
            "--project",
            "Gate",
            "--version",
            "1.0.0",
            "--environment",
            "Development",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("broken login"), "{}", text(&o));
    ok(&[
        "release",
        "allow-progression",
        "--project",
        "Gate",
        "--version",
        "1.0.0",
    ]);
    ok(&[
        "release",
        "deploy",
        "--project",
        "Gate",
        "--version",
        "1.0.0",
        "--environment",
        "Development",
        "--wait",
    ]);
}
