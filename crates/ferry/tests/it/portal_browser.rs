//! The portal in a real browser: Debian's headless Chromium driven through ChromeDriver
//! (fantoccini, plain W3C WebDriver). Walks the getting-started journey with no API call a user
//! would make (the test only reads ids through the API to find elements), and the testers
//! scenario. Every page visited is saved as a screenshot under
//! `target/tmp/portal-screenshots/<test>/NN-name.png`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::harness::{Server, skip_or_fail};
use crate::portal_client::{admin_password, create_user};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a page element may take to appear (live updates, deployments).
const WAIT: Duration = Duration::from_secs(60);

/// A ChromeDriver process and one browser session, which saves screenshots as it goes.
pub struct Browser {
    pub c: Client,
    driver: Child,
    base: String,
    shots: PathBuf,
    n: usize,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session; `None` when they are not installed
    /// here (and not under CI, where that fails).
    pub async fn start(test: &str, base: &str) -> Option<Browser> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists()
                && skip_or_fail(
                    test,
                    &format!("{bin} is not installed (apt-get install chromium chromium-driver)"),
                )
            {
                return None;
            }
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--disable-quic".to_string(),
            "--window-size=1280,900".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_string(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let c = loop {
            match ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("could not start a Chromium session: {e}"),
            }
        };
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("portal-screenshots")
            .join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        Some(Browser {
            c,
            driver,
            base: base.to_string(),
            shots,
            n: 0,
            _profile: profile,
        })
    }

    /// Saves a screenshot of the page as it is now, after checking that every visible form
    /// control has a label and every button a name.
    pub async fn shot(&mut self, name: &str) {
        let unlabelled = self
            .c
            .execute(
                r#"return Array.from(document.querySelectorAll(
                    'input:not([type=hidden]), select, textarea, button'))
                  .filter(e => e.tagName === 'BUTTON'
                      ? !(e.textContent.trim() || e.getAttribute('aria-label'))
                      : !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                        && !e.getAttribute('aria-labelledby'))
                  .map(e => e.outerHTML.slice(0, 120));"#,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            unlabelled,
            json!([]),
            "controls without a label on {} ({name})",
            self.path().await
        );
        self.n += 1;
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{:02}-{name}.png", self.n)), png).unwrap();
    }

    pub async fn goto(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    pub async fn path(&self) -> String {
        let u = self.c.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Waits for an element (by CSS selector).
    pub async fn wait(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let src = self.c.source().await.unwrap_or_default();
                panic!(
                    "waited for {css} on {}: {e}\n{}",
                    self.path().await,
                    &src[src.find("<main").unwrap_or(0)..]
                )
            }
        }
    }

    /// Whether an element exists now.
    pub async fn has(&self, css: &str) -> bool {
        !self.c.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    /// Types into the field with this id (after clearing it). Tries again when the live page
    /// replaced the element meanwhile.
    pub async fn fill(&self, id: &str, text: &str) {
        for attempt in 0.. {
            let e = self.wait(&format!("#{id}")).await;
            let done = async {
                e.clear().await?;
                e.send_keys(text).await
            };
            match done.await {
                Ok(()) => return,
                Err(e) if attempt < 5 => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("typing into #{id}: {e}"),
            }
        }
    }

    pub async fn click(&self, css: &str) {
        for attempt in 0.. {
            match self.wait(css).await.click().await {
                Ok(()) => return,
                Err(e) if attempt < 5 => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    }

    /// Selects the option with this visible text in the select with this id.
    pub async fn choose(&self, id: &str, label: &str) {
        self.wait(&format!("#{id}"))
            .await
            .select_by_label(label)
            .await
            .unwrap();
    }

    pub async fn text(&self, css: &str) -> String {
        self.wait(css).await.text().await.unwrap()
    }

    /// Waits until the element's text contains `want`.
    pub async fn wait_text(&self, css: &str, want: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let t = match self.c.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if t.contains(want) {
                return t;
            }
            if Instant::now() > deadline {
                let src = self.c.source().await.unwrap_or_default();
                panic!("waited for {css} to say {want:?}; it says {t:?}\n{src}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Signs in through the sign-in form.
    pub async fn sign_in(&mut self, user: &str, password: &str) {
        self.goto("/app").await;
        self.wait("#username").await;
        self.fill("username", user).await;
        self.fill("password", password).await;
        self.click("#sign-in").await;
        self.wait("#main h1").await;
    }

    /// Signs out through the user menu.
    pub async fn sign_out(&mut self) {
        self.click("#user-menu").await;
        self.click("#sign-out").await;
        self.wait("#username").await;
    }

    pub async fn finish(mut self) {
        let _ = self.c.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn id(v: &Value) -> String {
    v["Id"].as_str().unwrap().to_string()
}

/// Looks an object's id up by name through the API (the test finds buttons by id with it).
async fn id_by_name(s: &Server, collection: &str, name: &str) -> String {
    let all = s.get(&format!("/api/Spaces-1/{collection}/all")).await;
    all.as_array()
        .unwrap()
        .iter()
        .find(|x| x["Name"] == name)
        .map(id)
        .unwrap_or_else(|| panic!("no {collection} named {name}: {all}"))
}

/// The getting-started journey, in the browser only, then the testers scenario on the same
/// data.
#[tokio::test]
async fn getting_started_journey_and_testers_in_chromium() {
    let s = Server::start();
    let Some(mut b) = Browser::start("journey", &s.url).await else {
        return;
    };
    let password = admin_password(&s);

    // Sign in.
    b.goto("/app/Spaces-1/dashboard").await;
    b.wait("#username").await;
    assert!(b.path().await.starts_with("/app/sign-in?next="));
    b.shot("sign-in").await;
    b.fill("username", "admin").await;
    b.fill("password", &password).await;
    b.click("#sign-in").await;
    b.wait("#dashboard-empty").await;
    assert_eq!(b.path().await, "/app/Spaces-1/dashboard");
    b.shot("empty-dashboard").await;

    // Environments.
    b.goto("/app/Spaces-1/infrastructure/environments").await;
    for name in ["Development", "Test", "Production"] {
        b.fill("env-name", name).await;
        b.click("#env-create").await;
        b.wait_text("#main", name).await;
    }
    b.shot("environments").await;
    let dev = id_by_name(&s, "environments", "Development").await;
    let test = id_by_name(&s, "environments", "Test").await;
    let prod = id_by_name(&s, "environments", "Production").await;

    // Upload a package.
    let dir = tempfile::tempdir().unwrap();
    let pkg = crate::package_deploy::make_package(dir.path(), "1.0.0");
    b.goto("/app/Spaces-1/library/packages").await;
    b.shot("packages-empty").await;
    b.wait("#package-file")
        .await
        .send_keys(pkg.to_str().unwrap())
        .await
        .unwrap();
    b.click("#package-upload").await;
    b.wait_text("#main", "1.0.0").await;
    assert!(b.path().await.contains("/library/packages/Acme.Web"));
    b.shot("package-uploaded").await;

    // A project with a script step, a package step and a manual intervention in Test.
    b.goto("/app/Spaces-1/projects").await;
    b.shot("projects-empty").await;
    b.click("#add-project").await;
    b.fill("project-name", "Hello World").await;
    b.shot("project-new").await;
    b.click("#project-create").await;
    b.wait("#add-step-script").await;
    let project = id_by_name(&s, "projects", "Hello World").await;

    b.click("#add-step-script").await;
    b.fill("step-name", "Say hello").await;
    b.click("#step-run-on-server").await;
    b.fill(
        "step-script",
        "echo \"Hello from #{Octopus.Environment.Name}\"",
    )
    .await;
    b.shot("step-script").await;
    b.click("#step-save").await;
    b.wait_text("#main", "Say hello").await;

    b.click("#add-step-package").await;
    b.fill("step-name", "Deploy Acme.Web").await;
    b.click("#step-run-on-server").await;
    b.fill("step-package-id", "Acme.Web").await;
    b.shot("step-package").await;
    b.click("#step-save").await;
    b.wait_text("#main", "Deploy Acme.Web").await;

    b.click("#add-step-manual").await;
    b.fill("step-name", "Approve for Test").await;
    b.fill("step-instructions", "Check the Test release notes.")
        .await;
    b.choose("step-environments", "Test").await;
    b.click("#step-save").await;
    b.wait_text("#main", "Approve for Test").await;
    b.shot("process").await;

    // A release.
    b.goto(&format!("/app/Spaces-1/projects/{project}")).await;
    b.shot("project-overview-empty").await;
    b.click("#create-release").await;
    b.fill("release-version", "1.0.0").await;
    b.shot("release-new").await;
    b.click("#release-create").await;
    b.wait(&format!("#deploy-{dev}")).await;
    let release_page = b.path().await;
    assert!(release_page.starts_with("/app/Spaces-1/releases/"));
    b.shot("release").await;

    // Deploy to Development and watch the live log finish.
    b.click(&format!("#deploy-{dev}")).await;
    b.wait("#deploy-now").await;
    b.shot("deploy-form").await;
    b.click("#deploy-now").await;
    b.wait("#task-live").await;
    assert!(b.path().await.starts_with("/app/Spaces-1/tasks/"));
    b.shot("task-running").await;
    b.wait("#task-live[data-finished=true]").await;
    b.wait_text("#task-state", "Succeeded").await;
    b.wait_text("#task-live", "Hello from Development").await;
    b.shot("task-succeeded").await;

    // Promote to Test: the manual intervention appears live and is approved in place.
    b.goto(&release_page).await;
    b.click(&format!("#deploy-{test}")).await;
    b.click("#deploy-now").await;
    b.wait("#interruption-Proceed").await;
    b.shot("manual-intervention").await;
    b.fill("interruption-notes", "Release notes checked").await;
    b.click("#interruption-Proceed").await;
    b.wait("#task-live").await;
    b.wait_text("#task-state", "Succeeded").await;
    b.shot("test-succeeded").await;

    // The dashboard shows both deployments.
    b.goto("/app/Spaces-1/dashboard").await;
    let table = b.text("#dashboard").await;
    assert!(table.contains("Hello World"), "{table}");
    assert_eq!(table.matches("1.0.0").count(), 2, "{table}");
    assert_eq!(table.matches("Succeeded").count(), 2, "{table}");
    b.shot("dashboard").await;

    // The project overview offers the next step of the lifecycle: Production.
    b.goto(&format!("/app/Spaces-1/projects/{project}")).await;
    b.wait("a.promote[aria-label='Deploy 1.0.0 to Production']")
        .await;
    assert!(!b.has("a.promote[aria-label='Deploy 1.0.0 to Test']").await);

    // The other pages a user visits on the way, for the screenshots (each must render).
    for (path, name) in [
        (
            format!("/app/Spaces-1/projects/{project}"),
            "project-overview",
        ),
        (
            format!("/app/Spaces-1/projects/{project}/variables"),
            "variables",
        ),
        ("/app/Spaces-1/tasks".to_string(), "tasks"),
        (
            "/app/Spaces-1/infrastructure/targets".to_string(),
            "targets",
        ),
        ("/app/Spaces-1/library/lifecycles".to_string(), "lifecycles"),
        ("/app/Spaces-1/tenants".to_string(), "tenants"),
        ("/app/configuration/users".to_string(), "users"),
        ("/app/configuration/audit".to_string(), "audit"),
    ] {
        b.goto(&path).await;
        b.wait("#main h1").await;
        b.shot(name).await;
    }

    // Testers: Tess may deploy to Development and Test, not Production. The release page
    // offers her Test's button, and no Production button, only the reason.
    let tess = create_user(&s, "tess", "tess-password-1").await;
    let team = s
        .post(
            "/api/Spaces-1/teams",
            json!({"Name": "Testers", "MemberUserIds": [tess]}),
        )
        .await;
    for (role, scope) in [
        (
            "userroles-projectdeployer",
            json!({"EnvironmentIds": [dev, test]}),
        ),
        ("userroles-projectviewer", json!({})),
    ] {
        let mut body = json!({"TeamId": id(&team), "UserRoleId": role, "SpaceId": "Spaces-1"});
        for (k, v) in scope.as_object().unwrap() {
            body[k] = v.clone();
        }
        s.post("/api/Spaces-1/scopeduserroles", body).await;
    }
    b.sign_out().await;
    b.sign_in("tess", "tess-password-1").await;
    b.goto(&release_page).await;
    b.wait(&format!("#deploy-denied-{prod}")).await;
    assert!(b.has(&format!("#deploy-{test}")).await);
    assert!(!b.has(&format!("#deploy-{prod}")).await);
    let denied = b.text(&format!("#deploy-denied-{prod}")).await;
    assert!(denied.contains("Production"), "{denied}");
    b.shot("tester-release").await;
    // Nor does the project overview offer her Production.
    b.goto(&format!("/app/Spaces-1/projects/{project}")).await;
    b.wait("#main h1").await;
    assert!(
        !b.has("a.promote[aria-label='Deploy 1.0.0 to Production']")
            .await
    );
    b.shot("tester-overview").await;
    // Going to the deploy form for Production directly does not get her a deployment either.
    b.goto(&format!("{release_page}/deploy?environment={prod}"))
        .await;
    b.wait("#main").await;
    assert!(!b.has(&format!("#deploy-env-{prod}")).await);
    b.shot("tester-production-refused").await;

    // Down to a tablet: the page itself never scrolls sideways (wide tables scroll in their own
    // box).
    b.c.set_window_size(800, 1024).await.unwrap();
    for (path, name) in [
        ("/app/Spaces-1/dashboard".to_string(), "tablet-dashboard"),
        (release_page.clone(), "tablet-release"),
    ] {
        b.goto(&path).await;
        b.wait("#main h1").await;
        let overflow = b
            .c
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{path} scrolls sideways by {overflow} px at 800 px"
        );
        b.shot(name).await;
    }

    let shots = std::fs::read_dir(&b.shots).unwrap().count();
    eprintln!(
        "portal journey: {shots} screenshots in {}",
        b.shots.display()
    );
    b.finish().await;
}
