//! Library variable sets: space-wide variable sets that projects include through
//! `IncludedLibraryVariableSetIds`. Creating one also creates its variable set
//! (`variableset-LibraryVariableSets-1`, owned by the library set), edited through
//! `/variables/{id}` like a project's. Deleting one that a project includes is refused.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::ids::variable_set_id;
use ferry_domain::{Project, VariableSet};
use ferry_store::{DocQuery, DocRow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

pub const C: &str = "LibraryVariableSets";

/// A library variable set as Octopus shows it. `ContentType` is `Variables` or `ScriptModule`
/// (a script module: `Octopus.Script.Module[Name]` and `Octopus.Script.Module.Language[Name]`
/// variables, written next to Bash and Python scripts; see `docs/scripts.md`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct LibraryVariableSet {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub description: String,
    pub variable_set_id: String,
    pub content_type: String,
    pub templates: Vec<Value>,
}

impl Default for LibraryVariableSet {
    fn default() -> Self {
        LibraryVariableSet {
            id: String::new(),
            space_id: String::new(),
            name: String::new(),
            description: String::new(),
            variable_set_id: String::new(),
            content_type: "Variables".to_string(),
            templates: Vec::new(),
        }
    }
}

/// Whether an id is a library variable set's (owner ids of variable sets are either that or a
/// project's).
pub fn is_library_id(id: &str) -> bool {
    id.starts_with("LibraryVariableSets-")
}

fn render(space: &str, l: &LibraryVariableSet) -> Value {
    with_links(
        l,
        links(
            format!("/api/{space}/libraryvariablesets/{}", l.id),
            &[(
                "Variables",
                format!("/api/{space}/variables/{}", l.variable_set_id),
            )],
        ),
    )
}

fn render_row(space: &str, d: &DocRow) -> ApiResult<Value> {
    Ok(render(space, &parse_body(d)?))
}

fn query(space: &str) -> DocQuery {
    DocQuery {
        space_id: Some(space.to_string()),
        ..DocQuery::new(C)
    }
}

/// Finds a library variable set by id or name within a space.
pub async fn resolve(
    st: &AppState,
    space: &str,
    key: &str,
) -> ApiResult<Option<LibraryVariableSet>> {
    Ok(find(st, C, space, None, key).await?.map(|(_, l)| l))
}

/// The `contentType` filter of a list, if any.
fn content_type_filter(params: &Params) -> Option<String> {
    params
        .get("contentType")
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().to_string())
}

/// The rows of a space whose content type is `ct`, rendered.
async fn rows_of_type(st: &AppState, space: &str, ct: &str) -> ApiResult<Vec<Value>> {
    let (rows, _) = st.db.list_docs(&query(space)).await?;
    let mut out = Vec::new();
    for r in &rows {
        let l: LibraryVariableSet = parse_body(r)?;
        if l.content_type.eq_ignore_ascii_case(ct) {
            out.push(render(space, &l));
        }
    }
    Ok(out)
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let params = Params::parse(raw.as_deref());
    let base = format!("/api/{space}/libraryvariablesets");
    let template = format!("{base}{{/id}}{{?skip,contentType,take,ids,partialName}}");
    if let Some(ct) = content_type_filter(&params) {
        let all = rows_of_type(&st, &space, &ct).await?;
        let total = all.len() as i64;
        let items = all
            .into_iter()
            .skip(usize::try_from(params.skip()).unwrap_or(0))
            .take(usize::try_from(params.take()).unwrap_or(usize::MAX))
            .collect();
        return Ok(Json(crate::query::page(
            "LibraryVariableSet",
            items,
            total,
            params.skip(),
            params.take(),
            &base,
            &template,
        )));
    }
    Ok(Json(
        list_page(
            &st,
            query(&space),
            &params,
            "LibraryVariableSet",
            &base,
            &template,
            |d| render_row(&space, d),
        )
        .await?,
    ))
}

pub async fn all(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    if let Some(ct) = content_type_filter(&Params::parse(raw.as_deref())) {
        return Ok(Json(Value::Array(rows_of_type(&st, &space, &ct).await?)));
    }
    Ok(Json(
        list_all(&st, query(&space), |d| render_row(&space, d)).await?,
    ))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    match resolve(&st, &space, &id).await? {
        Some(l) => Ok(Json(render(&space, &l))),
        None => Err(ApiError::not_found(format!(
            "Library variable set '{id}' was not found"
        ))),
    }
}

/// The canonical content type: `Variables` (the default) or `ScriptModule`.
fn check_content_type(l: &LibraryVariableSet) -> ApiResult<String> {
    if l.content_type.is_empty() || l.content_type.eq_ignore_ascii_case("Variables") {
        Ok("Variables".to_string())
    } else if l.content_type.eq_ignore_ascii_case("ScriptModule") {
        Ok("ScriptModule".to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "ContentType '{}' is not supported; library variable sets hold Variables or a ScriptModule",
            l.content_type
        )))
    }
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(mut l): Body<LibraryVariableSet>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    let name = require_name(&l.name, "library variable set", 200)?;
    let content_type = check_content_type(&l)?;
    // Common templates (tenant variables): ids given, names checked.
    super::tenants::prepare_templates(&mut l.templates, &format!("library variable set '{name}'"))?;
    let mut tx = st.db.begin().await?;
    let seq = tx.next_seq(C).await?;
    l.id = format!("{C}-{seq}");
    l.space_id = space.clone();
    l.name = name.clone();
    l.content_type = content_type;
    l.variable_set_id = variable_set_id(&l.id);
    tx.insert_doc(&doc_row(C, &l.id, &space, "", &l.name, "", 0, seq, &l)?)
        .await
        .map_err(|e| name_conflict(e, "library variable set", &name))?;
    let vars = VariableSet {
        id: l.variable_set_id.clone(),
        space_id: space.clone(),
        owner_id: l.id.clone(),
        version: 0,
        variables: Vec::new(),
    };
    tx.insert_doc(&doc_row(
        super::variables::C,
        &vars.id,
        &space,
        &l.id,
        &vars.id,
        "",
        0,
        seq,
        &vars,
    )?)
    .await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Created",
        format!("Library variable set {} was created", l.name),
        &[&l.id],
        json!({"Document": l}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(render(&space, &l))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut l): Body<LibraryVariableSet>,
) -> ApiResult<Json<Value>> {
    let (row, old): (_, LibraryVariableSet) =
        load(&st, C, &space, &id, "Library variable set").await?;
    let name = require_name(&l.name, "library variable set", 200)?;
    check_content_type(&l)?;
    // Common templates (tenant variables): ids given, names checked.
    super::tenants::prepare_templates(&mut l.templates, &format!("library variable set '{name}'"))?;
    l.id = old.id.clone();
    l.space_id = space.clone();
    l.name = name.clone();
    l.content_type = old.content_type.clone();
    l.variable_set_id = old.variable_set_id.clone();
    let new_row = doc_row(C, &l.id, &space, "", &l.name, "", 0, row.seq, &l)?;
    update_audited(
        &st,
        &ctx,
        Named {
            what: "library variable set",
            name: &name,
        },
        &row,
        new_row,
        &old,
        &l,
    )
    .await?;
    Ok(Json(render(&space, &l)))
}

/// The projects of a space that include a library set.
async fn including_projects(st: &AppState, space: &str, id: &str) -> ApiResult<Vec<Project>> {
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.to_string()),
            ..DocQuery::new("Projects")
        })
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let p: Project = parse_body(r)?;
        if p.included_library_variable_set_ids.iter().any(|i| i == id) {
            out.push(p);
        }
    }
    Ok(out)
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, l): (_, LibraryVariableSet) = load(&st, C, &space, &id, "Library variable set").await?;
    let users = including_projects(&st, &space, &l.id).await?;
    if !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|p| p.name.as_str()).collect();
        return Err(ApiError::bad_request(format!(
            "Library variable set '{}' is included by {}; remove it from {} first",
            l.name,
            names.join(", "),
            if names.len() == 1 {
                "that project"
            } else {
                "those projects"
            }
        )));
    }
    let mut tx = st.db.begin().await?;
    // Its variable set; release snapshots belong to their projects and stay readable.
    tx.delete_docs_owned_by(&l.id).await?;
    tx.delete_doc(&l.id).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Deleted",
        format!(
            "Library variable set {} was deleted, with its variables",
            l.name
        ),
        &[&l.id],
        json!({"Document": l}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}
