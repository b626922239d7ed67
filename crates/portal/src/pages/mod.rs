//! The pages. Each module adds its routes; `Chrome` is what the layout (`base.html`) shows
//! around every page: the navigation, the space switcher and the user menu.

pub mod accounts;
pub mod configuration;
pub mod dashboard;
pub mod infrastructure;
pub mod library;
pub mod process;
pub mod projects;
pub mod releases;
pub mod signin;
pub mod tasks;
pub mod tenants;

use askama::Template;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;

use crate::PortalState;
use crate::ctx::{ApiFailure, PageResult, Viewer};
use crate::view::s;

/// Every page's routes.
pub fn routes() -> Router<PortalState> {
    let r = Router::new();
    let r = signin::routes(r);
    let r = dashboard::routes(r);
    let r = projects::routes(r);
    let r = process::routes(r);
    let r = releases::routes(r);
    let r = tasks::routes(r);
    let r = infrastructure::routes(r);
    let r = accounts::routes(r);
    let r = library::routes(r);
    let r = tenants::routes(r);
    configuration::routes(r)
}

/// A link in the main navigation.
pub struct NavItem {
    pub label: &'static str,
    pub href: String,
    pub active: bool,
}

/// The frame around every page.
pub struct Chrome {
    pub title: String,
    /// The user's display name, and user name.
    pub user: String,
    pub username: String,
    pub user_id: String,
    pub csrf: String,
    pub space_id: String,
    pub space_name: String,
    /// (id, name) of every space the user can see.
    pub spaces: Vec<(String, String)>,
    pub nav: Vec<NavItem>,
    pub asset_v: &'static str,
    /// A one-line message after an action ("Release 1.0.0 created").
    pub flash: String,
}

/// The sections of the main navigation: label, path under the space (or absolute), key.
const SECTIONS: &[(&str, &str, &str)] = &[
    ("Dashboard", "dashboard", "dashboard"),
    ("Projects", "projects", "projects"),
    ("Tasks", "tasks", "tasks"),
    (
        "Infrastructure",
        "infrastructure/environments",
        "infrastructure",
    ),
    ("Library", "library/packages", "library"),
    ("Tenants", "tenants", "tenants"),
    ("Configuration", "/app/configuration/users", "configuration"),
];

impl Viewer {
    /// The frame for a page in `space`, with `active` (a `SECTIONS` key) highlighted.
    pub async fn chrome(&self, space: &str, active: &str, title: impl Into<String>) -> Chrome {
        let mut spaces: Vec<(String, String)> = match self.get("/api/spaces/all").await {
            Ok(Value::Array(a)) => a.iter().map(|sp| (s(sp, "Id"), s(sp, "Name"))).collect(),
            _ => Vec::new(),
        };
        if !spaces.iter().any(|(id, _)| id == space) {
            spaces.insert(0, (space.to_string(), space.to_string()));
        }
        let space_name = spaces
            .iter()
            .find(|(id, _)| id == space)
            .map(|(_, n)| n.clone())
            .unwrap_or_default();
        let nav = SECTIONS
            .iter()
            .map(|(label, path, key)| NavItem {
                label,
                href: if path.starts_with('/') {
                    format!("{path}?space={space}")
                } else {
                    format!("/app/{space}/{path}")
                },
                active: *key == active,
            })
            .collect();
        Chrome {
            title: title.into(),
            user: self.principal.display_name.clone(),
            username: self.principal.username.clone(),
            user_id: self.principal.user_id.clone(),
            csrf: self.csrf.clone(),
            space_id: space.to_string(),
            space_name,
            spaces,
            nav,
            asset_v: crate::asset_version(),
            flash: String::new(),
        }
    }
}

/// Renders a template into a page (a 500 page if rendering fails).
pub fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a portal template failed to render");
            error_page(&ApiFailure::new(500, "This page could not be shown."))
        }
    }
}

/// A page answered with the API's status (400, 403, 409 …) instead of 200.
pub fn with_status(mut r: Response, status: u16) -> Response {
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r
}

/// Renders a template into a page result.
pub fn page(t: &impl Template) -> PageResult {
    Ok(render(t))
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    heading: &'a str,
    message: &'a str,
    errors: &'a [String],
    asset_v: &'static str,
}

/// The page shown when the API refused or failed, with its status.
pub fn error_page(f: &ApiFailure) -> Response {
    let heading = match f.status {
        403 => "You may not do that",
        404 => "Not found",
        400..=499 => "That did not work",
        _ => "Something went wrong",
    };
    let body = ErrorPage {
        heading,
        message: &f.message,
        errors: &f.errors,
        asset_v: crate::asset_version(),
    }
    .render()
    .unwrap_or_else(|_| f.message.clone());
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Html(body)).into_response()
}
