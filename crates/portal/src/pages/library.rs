//! The library: the built-in feed's packages (upload with progress, versions, delete), step
//! templates (import of a community library file), library variable sets and their variables,
//! lifecycles with their phases, and tenant tag sets.

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request};
use axum::http::{HeaderMap, Method, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use ferry_server::routes::Permission;
use serde_json::{Value, json};

use super::infrastructure::{
    ListQuery, Pager, fetch, field_error, may, name_of, pager, pairs, split_list, status_of,
    with_status,
};
use super::{Chrome, page};
use crate::PortalState;
use crate::ctx::{ApiFailure, FormData, PageResult, Viewer, see_other};
use crate::view::{arr, b, n, s, short_time, strs, url_encode};

pub fn routes(r: Router<PortalState>) -> Router<PortalState> {
    r.route("/app/{space}/library/packages", get(packages))
        .route("/app/{space}/library/packages/upload", post(upload))
        .route("/app/{space}/library/packages/{package}", get(package))
        .route(
            "/app/{space}/library/packages/{package}/{id}/delete",
            post(delete_package),
        )
        .route("/app/{space}/library/steptemplates", get(step_templates))
        .route(
            "/app/{space}/library/steptemplates/import",
            post(import_template),
        )
        .route(
            "/app/{space}/library/steptemplates/{id}",
            get(step_template),
        )
        .route(
            "/app/{space}/library/steptemplates/{id}/delete",
            post(delete_template),
        )
        .route(
            "/app/{space}/library/variablesets",
            get(variable_sets).post(create_variable_set),
        )
        .route("/app/{space}/library/variablesets/{id}", get(variable_set))
        .route(
            "/app/{space}/library/variablesets/{id}/variables",
            post(add_variable),
        )
        .route(
            "/app/{space}/library/variablesets/{id}/variables/{var}/delete",
            post(delete_variable),
        )
        .route(
            "/app/{space}/library/variablesets/{id}/delete",
            post(delete_variable_set),
        )
        .route("/app/{space}/library/lifecycles", get(lifecycles))
        .route(
            "/app/{space}/library/lifecycles/new",
            get(new_lifecycle).post(create_lifecycle),
        )
        .route(
            "/app/{space}/library/lifecycles/{id}",
            get(lifecycle).post(edit_lifecycle),
        )
        .route(
            "/app/{space}/library/lifecycles/{id}/delete",
            post(delete_lifecycle),
        )
        .route(
            "/app/{space}/library/tagsets",
            get(tag_sets).post(create_tag_set),
        )
        .route(
            "/app/{space}/library/tagsets/{id}/delete",
            post(delete_tag_set),
        )
}

const PER_PAGE: i64 = 30;

/// `?q=` as an API filter parameter (`""` when there is none).
fn filter_param(name: &str, q: &str) -> String {
    if q.trim().is_empty() {
        String::new()
    } else {
        format!("&{name}={}", url_encode(q.trim()))
    }
}

/// The portal URL of a list, with its search.
fn list_base(space: &str, what: &str, q: &str) -> String {
    if q.trim().is_empty() {
        format!("/app/{space}/library/{what}")
    } else {
        format!("/app/{space}/library/{what}?q={}", url_encode(q.trim()))
    }
}

/// A package id as a path segment (ids are letters, digits, `.`, `-` and `_`: kept readable).
fn seg(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c.to_string()
            } else {
                url_encode(&c.to_string())
            }
        })
        .collect()
}

/// A size in bytes as `1.2 MB`.
fn size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b < 1024.0 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GB", b / 1024.0 / 1024.0 / 1024.0)
    }
}

async fn delete_and_return(viewer: &Viewer, api: &str, csrf: &str, back: String) -> PageResult {
    viewer.send(Method::DELETE, api, csrf, None).await?;
    Ok(see_other(&back))
}

// ---------------------------------------------------------------------------------------------
// Packages

pub struct PackageRow {
    pub package_id: String,
    pub version: String,
    pub size: String,
    pub published: String,
}

#[derive(Template)]
#[template(path = "library/packages.html")]
struct PackagesPage {
    chrome: Chrome,
    tab: &'static str,
    rows: Vec<PackageRow>,
    pager: Pager,
    q: String,
    can_push: bool,
    upload_error: String,
}

async fn packages_page(
    viewer: &Viewer,
    space: &str,
    q: &str,
    skip: i64,
    upload_error: String,
) -> PageResult {
    let api = format!(
        "/api/{space}/packages?latest=true&skip={skip}&take={PER_PAGE}{}",
        filter_param("filter", q)
    );
    let (chrome, list, checker) = tokio::join!(
        viewer.chrome(space, "library", "Packages"),
        viewer.get(&api),
        viewer.checker(),
    );
    let list = list?;
    let rows = arr(&list, "Items")
        .iter()
        .map(|p| PackageRow {
            package_id: s(p, "PackageId"),
            version: s(p, "Version"),
            size: size(n(p, "PackageSizeBytes")),
            published: short_time(&s(p, "Published")),
        })
        .collect();
    let checker = checker.ok();
    page(&PackagesPage {
        chrome,
        tab: "packages",
        rows,
        pager: pager(
            &list_base(space, "packages", q),
            skip,
            PER_PAGE,
            n(&list, "TotalResults"),
        ),
        q: q.to_string(),
        can_push: may(&checker, space, Permission::BuiltInFeedPush),
        upload_error,
    })
}

async fn packages(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    packages_page(&viewer, &space, &q.q, q.skip.max(0), String::new()).await
}

#[derive(serde::Deserialize, Default)]
struct CsrfQuery {
    #[serde(default)]
    csrf: String,
}

/// The upload form's body, passed to the API as the browser sent it (streamed, not buffered).
async fn upload(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<CsrfQuery>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let csrf = if q.csrf.is_empty() {
        headers
            .get(ferry_server::authn::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    } else {
        q.csrf
    };
    let ct = headers.get(header::CONTENT_TYPE).cloned();
    match viewer
        .forward(
            Method::POST,
            &format!("/api/{space}/packages/raw"),
            &csrf,
            ct,
            body,
        )
        .await
    {
        Ok(p) => Ok(see_other(&format!(
            "/app/{space}/library/packages/{}",
            seg(&s(&p, "PackageId"))
        ))),
        // The page's script sent it: it shows the API's error next to the form itself.
        Err(e) if headers.get("x-ferry-upload").is_some_and(|v| v == "xhr") => Ok(with_status(
            status_of(&e),
            axum::Json(json!({"ErrorMessage": e.message, "Errors": e.errors})).into_response(),
        )),
        Err(e) => {
            let r = packages_page(&viewer, &space, "", 0, e.text()).await?;
            Ok(with_status(status_of(&e), r))
        }
    }
}

pub struct VersionRow {
    pub id: String,
    pub version: String,
    pub size: String,
    pub published: String,
    pub extension: String,
}

#[derive(Template)]
#[template(path = "library/package.html")]
struct PackagePage {
    chrome: Chrome,
    tab: &'static str,
    package_id: String,
    rows: Vec<VersionRow>,
    pager: Pager,
    can_delete: bool,
}

async fn package(
    viewer: Viewer,
    Path((space, package_id)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let skip = q.skip.max(0);
    let api = format!(
        "/api/{space}/packages?nuGetPackageId={}&skip={skip}&take={PER_PAGE}",
        url_encode(&package_id)
    );
    let (chrome, list, checker) = tokio::join!(
        viewer.chrome(&space, "library", package_id.clone()),
        viewer.get(&api),
        viewer.checker(),
    );
    let list = list?;
    let rows: Vec<VersionRow> = arr(&list, "Items")
        .iter()
        .map(|p| VersionRow {
            id: s(p, "Id"),
            version: s(p, "Version"),
            size: size(n(p, "PackageSizeBytes")),
            published: short_time(&s(p, "Published")),
            extension: s(p, "FileExtension"),
        })
        .collect();
    if rows.is_empty() && skip == 0 {
        return Err(ApiFailure::new(
            404,
            format!("The package '{package_id}' is not in the built-in feed"),
        )
        .into());
    }
    let checker = checker.ok();
    page(&PackagePage {
        chrome,
        tab: "packages",
        pager: pager(
            &format!("/app/{space}/library/packages/{}", seg(&package_id)),
            skip,
            PER_PAGE,
            n(&list, "TotalResults"),
        ),
        package_id,
        rows,
        can_delete: may(&checker, &space, Permission::BuiltInFeedAdminister),
    })
}

async fn delete_package(
    viewer: Viewer,
    Path((space, package_id, id)): Path<(String, String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    viewer
        .send(
            Method::DELETE,
            &format!("/api/{space}/packages/{}", url_encode(&id)),
            &form.csrf(),
            None,
        )
        .await?;
    // Back to the package while it has versions left, else to the list.
    let left = viewer
        .get(&format!(
            "/api/{space}/packages?nuGetPackageId={}&take=1",
            url_encode(&package_id)
        ))
        .await
        .map(|v| n(&v, "TotalResults"))
        .unwrap_or(0);
    if left > 0 {
        Ok(see_other(&format!(
            "/app/{space}/library/packages/{}",
            seg(&package_id)
        )))
    } else {
        Ok(see_other(&format!("/app/{space}/library/packages")))
    }
}

// ---------------------------------------------------------------------------------------------
// Step templates

pub struct TemplateRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub action_type: String,
    pub version: i64,
}

#[derive(Template)]
#[template(path = "library/steptemplates.html")]
struct TemplatesPage {
    chrome: Chrome,
    tab: &'static str,
    rows: Vec<TemplateRow>,
    pager: Pager,
    q: String,
    can_create: bool,
    error: String,
    f_json: String,
}

async fn templates_page(
    viewer: &Viewer,
    space: &str,
    q: &str,
    skip: i64,
    failed: Option<(&str, &ApiFailure)>,
) -> PageResult {
    let api = format!(
        "/api/{space}/actiontemplates?skip={skip}&take={PER_PAGE}{}",
        filter_param("partialName", q)
    );
    let (chrome, list, checker) = tokio::join!(
        viewer.chrome(space, "library", "Step templates"),
        viewer.get(&api),
        viewer.checker(),
    );
    let list = list?;
    let rows = arr(&list, "Items")
        .iter()
        .map(|t| TemplateRow {
            id: s(t, "Id"),
            name: s(t, "Name"),
            description: s(t, "Description"),
            action_type: s(t, "ActionType"),
            version: n(t, "Version"),
        })
        .collect();
    let checker = checker.ok();
    let (f_json, error) = match failed {
        Some((j, e)) => (j.to_string(), e.text()),
        None => Default::default(),
    };
    page(&TemplatesPage {
        chrome,
        tab: "steptemplates",
        rows,
        pager: pager(
            &list_base(space, "steptemplates", q),
            skip,
            PER_PAGE,
            n(&list, "TotalResults"),
        ),
        q: q.to_string(),
        can_create: may(&checker, space, Permission::ActionTemplateCreate),
        error,
        f_json,
    })
}

async fn step_templates(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    templates_page(&viewer, &space, &q.q, q.skip.max(0), None).await
}

/// The import form: multipart (a file or the pasted JSON) or a plain form (the pasted JSON).
async fn import_template(viewer: Viewer, Path(space): Path<String>, req: Request) -> PageResult {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    let (mut text, mut csrf) = (String::new(), String::new());
    if multipart {
        let mut mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiFailure::new(400, e.body_text()))?;
        let mut file_text = String::new();
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| ApiFailure::new(400, e.body_text()))?
        {
            let name = field.name().unwrap_or_default().to_string();
            let value = field
                .text()
                .await
                .map_err(|e| ApiFailure::new(400, e.body_text()))?;
            match name.as_str() {
                "csrf" => csrf = value.trim().to_string(),
                "json" => text = value,
                "file" => file_text = value,
                _ => {}
            }
        }
        if !file_text.trim().is_empty() {
            text = file_text;
        }
    } else {
        let axum::Form(form) = axum::Form::<FormData>::from_request(req, &())
            .await
            .map_err(|e| ApiFailure::new(400, e.body_text()))?;
        text = form.raw("json");
        csrf = form.csrf();
    }
    let parsed: Result<Value, ApiFailure> = if text.trim().is_empty() {
        Err(ApiFailure::new(
            400,
            "Paste a step template's JSON or choose its file.",
        ))
    } else {
        serde_json::from_str(&text)
            .map_err(|e| ApiFailure::new(400, format!("That is not JSON: {e}")))
    };
    let result = match parsed {
        Ok(v) => {
            viewer
                .send(
                    Method::POST,
                    &format!("/api/{space}/actiontemplates"),
                    &csrf,
                    Some(&v),
                )
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(t) => Ok(see_other(&format!(
            "/app/{space}/library/steptemplates/{}",
            s(&t, "Id")
        ))),
        Err(e) => {
            let r = templates_page(&viewer, &space, "", 0, Some((&text, &e))).await?;
            Ok(with_status(status_of(&e), r))
        }
    }
}

pub struct ParamRow {
    pub name: String,
    pub label: String,
    pub help: String,
    pub default: String,
    pub control: String,
    pub sensitive: bool,
}

#[derive(Template)]
#[template(path = "library/steptemplate.html")]
struct TemplatePage {
    chrome: Chrome,
    tab: &'static str,
    id: String,
    name: String,
    description: String,
    action_type: String,
    version: i64,
    syntax: String,
    script: String,
    params: Vec<ParamRow>,
    properties: Vec<(String, String)>,
    can_delete: bool,
}

async fn step_template(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    let (chrome, t, checker) = tokio::join!(
        viewer.chrome(&space, "library", "Step template"),
        fetch(
            &viewer,
            format!("/api/{space}/actiontemplates/{}", url_encode(&id))
        ),
        viewer.checker(),
    );
    let t = t?;
    let props = t.get("Properties").cloned().unwrap_or(Value::Null);
    let params = arr(&t, "Parameters")
        .iter()
        .map(|p| {
            let control = p
                .get("DisplaySettings")
                .map(|d| s(d, "Octopus.ControlType"))
                .unwrap_or_default();
            let sensitive = control == "Sensitive";
            ParamRow {
                name: s(p, "Name"),
                label: s(p, "Label"),
                help: s(p, "HelpText"),
                default: if sensitive {
                    String::new()
                } else {
                    s(p, "DefaultValue")
                },
                control,
                sensitive,
            }
        })
        .collect();
    let properties = props
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    k.as_str() != "Octopus.Action.Script.ScriptBody"
                        && k.as_str() != "Octopus.Action.Script.Syntax"
                })
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let checker = checker.ok();
    let mut chrome = chrome;
    chrome.title = s(&t, "Name");
    page(&TemplatePage {
        chrome,
        tab: "steptemplates",
        id: s(&t, "Id"),
        name: s(&t, "Name"),
        description: s(&t, "Description"),
        action_type: s(&t, "ActionType"),
        version: n(&t, "Version"),
        syntax: s(&props, "Octopus.Action.Script.Syntax"),
        script: s(&props, "Octopus.Action.Script.ScriptBody"),
        params,
        properties,
        can_delete: may(&checker, &space, Permission::ActionTemplateDelete),
    })
}

async fn delete_template(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    delete_and_return(
        &viewer,
        &format!("/api/{space}/actiontemplates/{}", url_encode(&id)),
        &form.csrf(),
        format!("/app/{space}/library/steptemplates"),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Library variable sets

#[derive(Template)]
#[template(path = "library/variablesets.html")]
struct VarSetsPage {
    chrome: Chrome,
    tab: &'static str,
    rows: Vec<(String, String, String)>,
    pager: Pager,
    q: String,
    can_create: bool,
    error: String,
    name_error: String,
    f_name: String,
    f_description: String,
}

async fn varsets_page(
    viewer: &Viewer,
    space: &str,
    q: &str,
    skip: i64,
    failed: Option<(&FormData, &ApiFailure)>,
) -> PageResult {
    let api = format!(
        "/api/{space}/libraryvariablesets?skip={skip}&take={PER_PAGE}{}",
        filter_param("partialName", q)
    );
    let (chrome, list, checker) = tokio::join!(
        viewer.chrome(space, "library", "Variable sets"),
        viewer.get(&api),
        viewer.checker(),
    );
    let list = list?;
    let rows = arr(&list, "Items")
        .iter()
        .map(|v| (s(v, "Id"), s(v, "Name"), s(v, "Description")))
        .collect();
    let checker = checker.ok();
    let (error, name_error, f_name, f_description) = match failed {
        Some((f, e)) => (
            e.text(),
            field_error(e, &["Name"]),
            f.get("name"),
            f.get("description"),
        ),
        None => Default::default(),
    };
    page(&VarSetsPage {
        chrome,
        tab: "variablesets",
        rows,
        pager: pager(
            &list_base(space, "variablesets", q),
            skip,
            PER_PAGE,
            n(&list, "TotalResults"),
        ),
        q: q.to_string(),
        can_create: may(&checker, space, Permission::LibraryVariableSetCreate),
        error,
        name_error,
        f_name,
        f_description,
    })
}

async fn variable_sets(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    varsets_page(&viewer, &space, &q.q, q.skip.max(0), None).await
}

async fn create_variable_set(
    viewer: Viewer,
    Path(space): Path<String>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let body = json!({"Name": form.get("name"), "Description": form.get("description")});
    match viewer
        .send(
            Method::POST,
            &format!("/api/{space}/libraryvariablesets"),
            &form.csrf(),
            Some(&body),
        )
        .await
    {
        Ok(v) => Ok(see_other(&format!(
            "/app/{space}/library/variablesets/{}",
            s(&v, "Id")
        ))),
        Err(e) => {
            let r = varsets_page(&viewer, &space, "", 0, Some((&form, &e))).await?;
            Ok(with_status(status_of(&e), r))
        }
    }
}

pub struct VarRow {
    pub id: String,
    pub name: String,
    /// The value ("" for a sensitive one: it never reaches the browser).
    pub value: String,
    pub sensitive: bool,
    pub scopes: Vec<String>,
}

#[derive(Template)]
#[template(path = "library/variableset.html")]
struct VarSetPage {
    chrome: Chrome,
    tab: &'static str,
    id: String,
    name: String,
    description: String,
    vars: Vec<VarRow>,
    all_environments: Vec<(String, String)>,
    can_edit: bool,
    can_delete: bool,
    error: String,
    name_error: String,
    f_name: String,
    f_value: String,
    f_sensitive: bool,
    f_environments: Vec<String>,
}

async fn varset_page(
    viewer: &Viewer,
    space: &str,
    id: &str,
    failed: Option<(&FormData, &ApiFailure)>,
) -> PageResult {
    let (chrome, set, envs, checker) = tokio::join!(
        viewer.chrome(space, "library", "Variable set"),
        fetch(
            viewer,
            format!("/api/{space}/libraryvariablesets/{}", url_encode(id))
        ),
        fetch(viewer, format!("/api/{space}/environments/all")),
        viewer.checker(),
    );
    let set = set?;
    let envs = pairs(&envs);
    let vars_doc = viewer
        .get(&format!(
            "/api/{space}/variables/{}",
            url_encode(&s(&set, "VariableSetId"))
        ))
        .await?;
    let vars = arr(&vars_doc, "Variables")
        .iter()
        .map(|v| {
            let sensitive = b(v, "IsSensitive");
            let mut scopes = Vec::new();
            if let Some(Value::Object(sc)) = v.get("Scope") {
                for (k, vals) in sc {
                    for x in vals.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                        let x = x.as_str().unwrap_or_default();
                        let shown = if k == "Environment" {
                            name_of(&envs, x)
                        } else {
                            x.to_string()
                        };
                        scopes.push(format!("{k}: {shown}"));
                    }
                }
            }
            VarRow {
                id: s(v, "Id"),
                name: s(v, "Name"),
                value: if sensitive {
                    String::new()
                } else {
                    s(v, "Value")
                },
                sensitive,
                scopes,
            }
        })
        .collect();
    let checker = checker.ok();
    let (error, name_error, f_name, f_value, f_sensitive, f_environments) = match failed {
        Some((f, e)) => (
            e.text(),
            field_error(e, &["Name"]),
            f.get("name"),
            if f.checked("sensitive") {
                String::new()
            } else {
                f.raw("value")
            },
            f.checked("sensitive"),
            f.all("environments"),
        ),
        None => Default::default(),
    };
    let mut chrome = chrome;
    chrome.title = s(&set, "Name");
    page(&VarSetPage {
        chrome,
        tab: "variablesets",
        id: s(&set, "Id"),
        name: s(&set, "Name"),
        description: s(&set, "Description"),
        vars,
        all_environments: envs,
        can_edit: may(&checker, space, Permission::LibraryVariableSetEdit),
        can_delete: may(&checker, space, Permission::LibraryVariableSetDelete),
        error,
        name_error,
        f_name,
        f_value,
        f_sensitive,
        f_environments,
    })
}

async fn variable_set(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    varset_page(&viewer, &space, &id, None).await
}

/// Reads a set's variables, changes them with `change`, and writes them back (sensitive values
/// go back as `null`, which keeps them).
async fn change_variables(
    viewer: &Viewer,
    space: &str,
    id: &str,
    csrf: &str,
    change: impl FnOnce(&mut Vec<Value>),
) -> Result<(), ApiFailure> {
    let set = viewer
        .get(&format!(
            "/api/{space}/libraryvariablesets/{}",
            url_encode(id)
        ))
        .await?;
    let path = format!(
        "/api/{space}/variables/{}",
        url_encode(&s(&set, "VariableSetId"))
    );
    let mut doc = viewer.get(&path).await?;
    let mut vars: Vec<Value> = arr(&doc, "Variables").to_vec();
    change(&mut vars);
    doc["Variables"] = Value::Array(vars);
    viewer.send(Method::PUT, &path, csrf, Some(&doc)).await?;
    Ok(())
}

async fn add_variable(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    let sensitive = form.checked("sensitive");
    let var = json!({
        "Name": form.get("name"),
        "Value": form.raw("value"),
        "IsSensitive": sensitive,
        "Type": if sensitive { "Sensitive" } else { "String" },
        "Scope": {"Environment": form.all("environments")},
    });
    let r = if form.get("name").is_empty() {
        Err(ApiFailure::new(400, "Name: give the variable a name"))
    } else {
        change_variables(&viewer, &space, &id, &form.csrf(), |vars| vars.push(var)).await
    };
    match r {
        Ok(()) => Ok(see_other(&format!(
            "/app/{space}/library/variablesets/{}",
            url_encode(&id)
        ))),
        Err(e) => {
            let r = varset_page(&viewer, &space, &id, Some((&form, &e))).await?;
            Ok(with_status(status_of(&e), r))
        }
    }
}

async fn delete_variable(
    viewer: Viewer,
    Path((space, id, var)): Path<(String, String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    change_variables(&viewer, &space, &id, &form.csrf(), |vars| {
        vars.retain(|v| s(v, "Id") != var)
    })
    .await?;
    Ok(see_other(&format!(
        "/app/{space}/library/variablesets/{}",
        url_encode(&id)
    )))
}

async fn delete_variable_set(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    delete_and_return(
        &viewer,
        &format!("/api/{space}/libraryvariablesets/{}", url_encode(&id)),
        &form.csrf(),
        format!("/app/{space}/library/variablesets"),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Lifecycles

pub struct PhaseView {
    pub name: String,
    pub automatic: Vec<String>,
    pub manual: Vec<String>,
    pub minimum: i64,
    pub optional: bool,
}

pub struct LifecycleRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub phases: Vec<PhaseView>,
}

#[derive(Template)]
#[template(path = "library/lifecycles.html")]
struct LifecyclesPage {
    chrome: Chrome,
    tab: &'static str,
    rows: Vec<LifecycleRow>,
    pager: Pager,
    can_create: bool,
    can_delete: bool,
}

async fn lifecycles(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let skip = q.skip.max(0);
    let (chrome, list, envs, checker) = tokio::join!(
        viewer.chrome(&space, "library", "Lifecycles"),
        fetch(
            &viewer,
            format!("/api/{space}/lifecycles?skip={skip}&take={PER_PAGE}")
        ),
        fetch(&viewer, format!("/api/{space}/environments/all")),
        viewer.checker(),
    );
    let list = list?;
    let envs = pairs(&envs);
    let names = |v: &Value, k: &str| -> Vec<String> {
        strs(v, k).iter().map(|e| name_of(&envs, e)).collect()
    };
    let rows = arr(&list, "Items")
        .iter()
        .map(|l| LifecycleRow {
            id: s(l, "Id"),
            name: s(l, "Name"),
            description: s(l, "Description"),
            phases: arr(l, "Phases")
                .iter()
                .map(|p| PhaseView {
                    name: s(p, "Name"),
                    automatic: names(p, "AutomaticDeploymentTargets"),
                    manual: names(p, "OptionalDeploymentTargets"),
                    minimum: n(p, "MinimumEnvironmentsBeforePromotion"),
                    optional: b(p, "IsOptionalPhase"),
                })
                .collect(),
        })
        .collect();
    let checker = checker.ok();
    page(&LifecyclesPage {
        chrome,
        tab: "lifecycles",
        rows,
        pager: pager(
            &format!("/app/{space}/library/lifecycles"),
            skip,
            PER_PAGE,
            n(&list, "TotalResults"),
        ),
        can_create: may(&checker, &space, Permission::LifecycleCreate),
        can_delete: may(&checker, &space, Permission::LifecycleDelete),
    })
}

/// One environment in a phase row: id, name, automatic, manual.
pub struct PhaseEnv {
    pub id: String,
    pub name: String,
    pub automatic: bool,
    pub manual: bool,
}

pub struct PhaseRow {
    pub idx: usize,
    pub id: String,
    pub name: String,
    pub minimum: i64,
    pub optional: bool,
    pub envs: Vec<PhaseEnv>,
}

#[derive(Template)]
#[template(path = "library/lifecycle.html")]
struct LifecyclePage {
    chrome: Chrome,
    tab: &'static str,
    /// "" for a new lifecycle.
    id: String,
    f_name: String,
    f_description: String,
    phases: Vec<PhaseRow>,
    can_save: bool,
    can_delete: bool,
    error: String,
    name_error: String,
}

/// Empty phase rows offered after the existing ones.
const SPARE_PHASES: usize = 2;

/// The phases as the form's rows: `phases` (JSON phases), then spare empty rows.
fn phase_rows(phases: &[Value], envs: &[(String, String)]) -> Vec<PhaseRow> {
    let mut rows: Vec<PhaseRow> = phases
        .iter()
        .enumerate()
        .map(|(idx, p)| {
            let auto = strs(p, "AutomaticDeploymentTargets");
            let manual = strs(p, "OptionalDeploymentTargets");
            PhaseRow {
                idx,
                id: s(p, "Id"),
                name: s(p, "Name"),
                minimum: n(p, "MinimumEnvironmentsBeforePromotion"),
                optional: b(p, "IsOptionalPhase"),
                envs: envs
                    .iter()
                    .map(|(id, name)| PhaseEnv {
                        id: id.clone(),
                        name: name.clone(),
                        automatic: auto.contains(id),
                        manual: manual.contains(id),
                    })
                    .collect(),
            }
        })
        .collect();
    let start = rows.len();
    for idx in start..start + SPARE_PHASES.max(3usize.saturating_sub(start)) {
        rows.push(PhaseRow {
            idx,
            id: String::new(),
            name: String::new(),
            minimum: 0,
            optional: false,
            envs: envs
                .iter()
                .map(|(id, name)| PhaseEnv {
                    id: id.clone(),
                    name: name.clone(),
                    automatic: false,
                    manual: false,
                })
                .collect(),
        });
    }
    rows
}

/// The phases posted by the form (rows with no name and no environments are left out), each
/// merged into the existing phase with the same id (its retention settings kept).
fn phases_from_form(form: &FormData, old: &[Value]) -> Vec<Value> {
    let count: usize = form.get("phases").parse().unwrap_or(0).min(100);
    let mut out = Vec::new();
    for i in 0..count {
        let name = form.get(&format!("phase-{i}-name"));
        let auto = form.all(&format!("phase-{i}-auto"));
        let manual: Vec<String> = form
            .all(&format!("phase-{i}-manual"))
            .into_iter()
            .filter(|m| !auto.contains(m))
            .collect();
        if name.is_empty() && auto.is_empty() && manual.is_empty() {
            continue;
        }
        let id = form.get(&format!("phase-{i}-id"));
        let mut p = old
            .iter()
            .find(|p| !id.is_empty() && s(p, "Id") == id)
            .cloned()
            .unwrap_or_else(|| json!({}));
        p["Name"] = json!(name);
        p["AutomaticDeploymentTargets"] = json!(auto);
        p["OptionalDeploymentTargets"] = json!(manual);
        p["MinimumEnvironmentsBeforePromotion"] = json!(
            form.get(&format!("phase-{i}-min"))
                .parse::<i64>()
                .unwrap_or(0)
        );
        p["IsOptionalPhase"] = json!(form.checked(&format!("phase-{i}-optional")));
        out.push(p);
    }
    out
}

async fn lifecycle_form(
    viewer: &Viewer,
    space: &str,
    id: &str,
    failed: Option<(&FormData, &ApiFailure)>,
) -> PageResult {
    let lc_path = format!("/api/{space}/lifecycles/{}", url_encode(id));
    let (chrome, envs, checker, lc) = tokio::join!(
        viewer.chrome(space, "library", "Lifecycle"),
        fetch(viewer, format!("/api/{space}/environments/all")),
        viewer.checker(),
        async {
            if id.is_empty() {
                Ok(json!({}))
            } else {
                viewer.get(&lc_path).await
            }
        },
    );
    let lc = lc?;
    let envs = pairs(&envs);
    let checker = checker.ok();
    let (f_name, f_description, phases, error, name_error) = match failed {
        Some((f, e)) => {
            let posted = phases_from_form(f, &[]);
            (
                f.get("name"),
                f.get("description"),
                phase_rows(&posted, &envs),
                e.text(),
                field_error(e, &["Name"]),
            )
        }
        None => (
            s(&lc, "Name"),
            s(&lc, "Description"),
            phase_rows(arr(&lc, "Phases"), &envs),
            String::new(),
            String::new(),
        ),
    };
    let mut chrome = chrome;
    chrome.title = if id.is_empty() {
        "New lifecycle".to_string()
    } else {
        s(&lc, "Name")
    };
    page(&LifecyclePage {
        chrome,
        tab: "lifecycles",
        id: id.to_string(),
        f_name,
        f_description,
        phases,
        can_save: if id.is_empty() {
            may(&checker, space, Permission::LifecycleCreate)
        } else {
            may(&checker, space, Permission::LifecycleEdit)
        },
        can_delete: !id.is_empty() && may(&checker, space, Permission::LifecycleDelete),
        error,
        name_error,
    })
}

async fn new_lifecycle(viewer: Viewer, Path(space): Path<String>) -> PageResult {
    lifecycle_form(&viewer, &space, "", None).await
}

async fn lifecycle(viewer: Viewer, Path((space, id)): Path<(String, String)>) -> PageResult {
    lifecycle_form(&viewer, &space, &id, None).await
}

async fn save_lifecycle(viewer: Viewer, space: String, id: String, form: FormData) -> PageResult {
    let result = if id.is_empty() {
        let body = json!({
            "Name": form.get("name"),
            "Description": form.get("description"),
            "Phases": phases_from_form(&form, &[]),
        });
        viewer
            .send(
                Method::POST,
                &format!("/api/{space}/lifecycles"),
                &form.csrf(),
                Some(&body),
            )
            .await
    } else {
        let path = format!("/api/{space}/lifecycles/{}", url_encode(&id));
        match viewer.get(&path).await {
            Ok(mut lc) => {
                let old = arr(&lc, "Phases").to_vec();
                lc["Name"] = json!(form.get("name"));
                lc["Description"] = json!(form.get("description"));
                lc["Phases"] = Value::Array(phases_from_form(&form, &old));
                viewer
                    .send(Method::PUT, &path, &form.csrf(), Some(&lc))
                    .await
            }
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(_) => Ok(see_other(&format!("/app/{space}/library/lifecycles"))),
        Err(e) => {
            let r = lifecycle_form(&viewer, &space, &id, Some((&form, &e))).await?;
            Ok(with_status(status_of(&e), r))
        }
    }
}

async fn create_lifecycle(
    viewer: Viewer,
    Path(space): Path<String>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    save_lifecycle(viewer, space, String::new(), form).await
}

async fn edit_lifecycle(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    save_lifecycle(viewer, space, id, form).await
}

async fn delete_lifecycle(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    delete_and_return(
        &viewer,
        &format!("/api/{space}/lifecycles/{}", url_encode(&id)),
        &form.csrf(),
        format!("/app/{space}/library/lifecycles"),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Tag sets

pub struct TagSetRow {
    pub id: String,
    pub name: String,
    pub description: String,
    /// (name, colour)
    pub tags: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "library/tagsets.html")]
struct TagSetsPage {
    chrome: Chrome,
    tab: &'static str,
    rows: Vec<TagSetRow>,
    pager: Pager,
    can_create: bool,
    can_delete: bool,
    error: String,
    name_error: String,
    tags_error: String,
    f_name: String,
    f_tags: String,
}

/// A colour safe to put in a `style` attribute (`#` and hex digits), else grey.
fn safe_colour(c: &str) -> String {
    let ok = c.len() <= 9
        && c.starts_with('#')
        && c.len() > 1
        && c[1..].chars().all(|x| x.is_ascii_hexdigit());
    if ok {
        c.to_string()
    } else {
        "#333333".to_string()
    }
}

async fn tagsets_page(
    viewer: &Viewer,
    space: &str,
    skip: i64,
    failed: Option<(&FormData, &ApiFailure)>,
) -> PageResult {
    let (chrome, list, checker) = tokio::join!(
        viewer.chrome(space, "library", "Tenant tag sets"),
        fetch(
            viewer,
            format!("/api/{space}/tagsets?skip={skip}&take={PER_PAGE}")
        ),
        viewer.checker(),
    );
    let list = list?;
    let rows = arr(&list, "Items")
        .iter()
        .map(|t| TagSetRow {
            id: s(t, "Id"),
            name: s(t, "Name"),
            description: s(t, "Description"),
            tags: arr(t, "Tags")
                .iter()
                .map(|g| (s(g, "Name"), safe_colour(&s(g, "Color"))))
                .collect(),
        })
        .collect();
    let checker = checker.ok();
    let (error, name_error, tags_error, f_name, f_tags) = match failed {
        Some((f, e)) => (
            e.text(),
            field_error(e, &["Name"]),
            field_error(e, &["Tags"]),
            f.get("name"),
            f.raw("tags"),
        ),
        None => Default::default(),
    };
    page(&TagSetsPage {
        chrome,
        tab: "tagsets",
        rows,
        pager: pager(
            &format!("/app/{space}/library/tagsets"),
            skip,
            PER_PAGE,
            n(&list, "TotalResults"),
        ),
        can_create: may(&checker, space, Permission::TagSetCreate),
        can_delete: may(&checker, space, Permission::TagSetDelete),
        error,
        name_error,
        tags_error,
        f_name,
        f_tags,
    })
}

async fn tag_sets(
    viewer: Viewer,
    Path(space): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    tagsets_page(&viewer, &space, q.skip.max(0), None).await
}

async fn create_tag_set(
    viewer: Viewer,
    Path(space): Path<String>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    // One tag a line: "Name" or "Name #RRGGBB".
    let tags: Vec<Value> = split_list(&form.raw("tags").replace(',', "\n"))
        .iter()
        .map(|line| match line.rsplit_once(' ') {
            Some((name, c)) if c.starts_with('#') => {
                json!({"Name": name.trim(), "Color": c.to_uppercase()})
            }
            _ => json!({"Name": line}),
        })
        .collect();
    let body = json!({"Name": form.get("name"), "Tags": tags});
    match viewer
        .send(
            Method::POST,
            &format!("/api/{space}/tagsets"),
            &form.csrf(),
            Some(&body),
        )
        .await
    {
        Ok(_) => Ok(see_other(&format!("/app/{space}/library/tagsets"))),
        Err(e) => {
            let r = tagsets_page(&viewer, &space, 0, Some((&form, &e))).await?;
            Ok(with_status(status_of(&e), r))
        }
    }
}

async fn delete_tag_set(
    viewer: Viewer,
    Path((space, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<FormData>,
) -> PageResult {
    delete_and_return(
        &viewer,
        &format!("/api/{space}/tagsets/{}", url_encode(&id)),
        &form.csrf(),
        format!("/app/{space}/library/tagsets"),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_colours() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(2048), "2.0 KB");
        assert_eq!(safe_colour("#FFD700"), "#FFD700");
        assert_eq!(safe_colour("red;background:url(x)"), "#333333");
    }

    #[test]
    fn phases_from_the_form() {
        let f = FormData(vec![
            ("phases".into(), "3".into()),
            ("phase-0-name".into(), "Dev".into()),
            ("phase-0-auto".into(), "Environments-1".into()),
            ("phase-1-name".into(), "".into()),
            ("phase-2-name".into(), "Prod".into()),
            ("phase-2-manual".into(), "Environments-2".into()),
            ("phase-2-optional".into(), "true".into()),
        ]);
        let p = phases_from_form(&f, &[]);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0]["AutomaticDeploymentTargets"],
            json!(["Environments-1"])
        );
        assert_eq!(p[1]["IsOptionalPhase"], json!(true));
    }
}
