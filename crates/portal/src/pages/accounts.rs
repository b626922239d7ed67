//! Infrastructure → Accounts: the credentials SSH targets log in with (an SSH key pair, or a
//! user name and password). Secrets are write-only: the form sends them once, the API seals
//! them, and no page ever shows them (the list says only whether one is set).

use askama::Template;
use axum::Router;
use axum::extract::Path;
use axum::http::Method;
use axum::routing::{get, post};
use ferry_server::authz::Target;
use ferry_server::routes::Permission;
use serde_json::{Value, json};

use super::{Chrome, render, with_status};
use crate::PortalState;
use crate::ctx::{ApiFailure, FormData, PageResult, Viewer, see_other};
use crate::view::{arr, pairs, s, strs};

pub fn routes(r: Router<PortalState>) -> Router<PortalState> {
    r.route(
        "/app/{space}/infrastructure/accounts",
        get(list).post(create),
    )
    .route(
        "/app/{space}/infrastructure/accounts/{id}/delete",
        post(delete),
    )
}

pub struct AccountRow {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub username: String,
    pub environments: Vec<String>,
}

#[derive(Template)]
#[template(path = "infrastructure/accounts.html")]
struct AccountsPage {
    chrome: Chrome,
    tab: &'static str,
    rows: Vec<AccountRow>,
    environments: Vec<(String, String)>,
    can_create: bool,
    can_delete: bool,
    error: String,
    name_error: String,
    username_error: String,
    secret_error: String,
    f_name: String,
    f_kind: String,
    f_username: String,
    f_environments: Vec<String>,
}

async fn list_page(
    viewer: &Viewer,
    space: &str,
    form: Option<&FormData>,
    failure: Option<ApiFailure>,
) -> PageResult {
    let accounts_path = format!("/api/{space}/accounts/all");
    let envs_path = format!("/api/{space}/environments/all");
    let (chrome, accounts, envs, checker) = tokio::join!(
        viewer.chrome(space, "infrastructure", "Accounts"),
        viewer.get(&accounts_path),
        viewer.get(&envs_path),
        viewer.checker(),
    );
    let accounts = accounts?;
    let environments = envs.map(|e| pairs(&e)).unwrap_or_default();
    let name_of = |id: &str| {
        environments
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let list = match &accounts {
        Value::Array(a) => a.as_slice(),
        other => arr(other, "Items"),
    };
    let rows = list
        .iter()
        .map(|a| AccountRow {
            id: s(a, "Id"),
            name: s(a, "Name"),
            kind: if s(a, "AccountType") == "SshKeyPair" {
                "SSH key pair"
            } else {
                "User name and password"
            },
            username: s(a, "Username"),
            environments: strs(a, "EnvironmentIds")
                .iter()
                .map(|e| name_of(e))
                .collect(),
        })
        .collect();
    let may = |p| {
        checker
            .as_ref()
            .is_ok_and(|c| c.can(Some(space), p, &Target::ANY))
    };
    let f = |name: &str| form.map(|f| f.get(name)).unwrap_or_default();
    let (error, name_error, username_error, secret_error, status) = match &failure {
        Some(fl) => (
            fl.text(),
            fl.for_field("Name").unwrap_or_default(),
            fl.for_field("Username").unwrap_or_default(),
            fl.for_field("PrivateKeyFile")
                .or_else(|| fl.for_field("Password"))
                .unwrap_or_default(),
            Some(fl.status),
        ),
        None => Default::default(),
    };
    let page_html = render(&AccountsPage {
        chrome,
        tab: "accounts",
        rows,
        environments,
        can_create: may(Permission::AccountCreate),
        can_delete: may(Permission::AccountDelete),
        error,
        name_error,
        username_error,
        secret_error,
        f_name: f("name"),
        f_kind: form
            .map(|f| f.get("kind"))
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "SshKeyPair".to_string()),
        f_username: f("username"),
        f_environments: form.map(|f| f.all("environments")).unwrap_or_default(),
    });
    Ok(match status {
        Some(st) => with_status(page_html, st),
        None => page_html,
    })
}

async fn list(viewer: Viewer, Path(space): Path<String>) -> PageResult {
    list_page(&viewer, &space, None, None).await
}

async fn create(
    viewer: Viewer,
    Path(space): Path<String>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let kind = form.get("kind");
    let mut body = json!({
        "Name": form.get("name"),
        "AccountType": kind,
        "Username": form.get("username"),
        "EnvironmentIds": form.all("environments"),
    });
    if kind == "SshKeyPair" {
        body["PrivateKeyFile"] =
            json!({"HasValue": true, "NewValue": form.raw("private_key").trim()});
        let passphrase = form.raw("passphrase");
        if !passphrase.is_empty() {
            body["PrivateKeyPassphrase"] = json!({"HasValue": true, "NewValue": passphrase});
        }
    } else {
        body["Password"] = json!({"HasValue": true, "NewValue": form.raw("password")});
    }
    match viewer
        .send(
            Method::POST,
            &format!("/api/{space}/accounts"),
            &form.csrf(),
            Some(&body),
        )
        .await
    {
        Ok(_) => Ok(see_other(&format!("/app/{space}/infrastructure/accounts"))),
        Err(f) => list_page(&viewer, &space, Some(&form), Some(f)).await,
    }
}

async fn delete(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    match viewer
        .send(
            Method::DELETE,
            &format!("/api/{space}/accounts/{}", crate::view::url_encode(&id)),
            &form.csrf(),
            None,
        )
        .await
    {
        Ok(_) => Ok(see_other(&format!("/app/{space}/infrastructure/accounts"))),
        Err(f) => list_page(&viewer, &space, None, Some(f)).await,
    }
}
