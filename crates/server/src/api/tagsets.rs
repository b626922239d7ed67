//! Tag sets (`/api/{space}/tagsets`): ordered sets of coloured tags that tenants carry and that
//! deployments, targets, steps, variable scopes and channels filter tenants by. Tags are
//! referred to by their canonical name `Set/Tag`. Set names are unique per space, tag names
//! unique within their set. A tag that anything uses (a tenant, a target, an account, a
//! channel, a step of a deployment process or a variable scope) cannot be removed or renamed:
//! the refusal names who uses it.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::tenant::split_tag;
use ferry_domain::{Tag, TagSet};
use ferry_store::DocQuery;
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

pub const C: &str = "TagSets";

fn render(space: &str, t: &TagSet) -> Value {
    with_links(t, links(format!("/api/{space}/tagsets/{}", t.id), &[]))
}

fn query(space: &str) -> DocQuery {
    DocQuery {
        space_id: Some(space.to_string()),
        ..DocQuery::new(C)
    }
}

/// Every tag set of a space, in sort order.
pub async fn all_sets(st: &AppState, space: &str) -> ApiResult<Vec<TagSet>> {
    let (rows, _) = st.db.list_docs(&query(space)).await?;
    rows.iter().map(parse_body).collect()
}

/// Resolves tags given as `Set/Tag` (any case) to their canonical names, de-duplicated. Each
/// unknown tag adds an error naming `field` and the tag.
pub async fn canonical_tags(
    st: &AppState,
    space: &str,
    tags: &[String],
    field: &str,
    errors: &mut Vec<String>,
) -> ApiResult<Vec<String>> {
    let wanted: Vec<&str> = tags
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let sets = all_sets(st, space).await?;
    let mut out: Vec<String> = Vec::new();
    for t in wanted {
        match find_tag(&sets, t) {
            Some(c) => {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
            None => errors.push(format!(
                "{field}: the tag '{t}' does not exist (tags are written 'Tag set/Tag', and the tag set must have that tag)"
            )),
        }
    }
    Ok(out)
}

/// The canonical name of a tag given as `Set/Tag` (case-insensitively).
pub fn find_tag(sets: &[TagSet], tag: &str) -> Option<String> {
    let (set, name) = split_tag(tag)?;
    sets.iter()
        .filter(|s| s.name.eq_ignore_ascii_case(set))
        .flat_map(|s| s.tags.iter())
        .find(|t| t.name.eq_ignore_ascii_case(name))
        .map(|t| t.canonical_tag_name.clone())
}

/// Who uses any of `tags` (canonical names, compared ignoring case): "tenant Acme", "deployment
/// target web01", …
pub async fn tag_usages(st: &AppState, space: &str, tags: &[String]) -> ApiResult<Vec<String>> {
    if tags.is_empty() {
        return Ok(Vec::new());
    }
    let hit = |list: &[String]| {
        list.iter()
            .any(|x| tags.iter().any(|t| t.eq_ignore_ascii_case(x.trim())))
    };
    let in_space = |c: &str| DocQuery {
        space_id: Some(space.to_string()),
        ..DocQuery::new(c)
    };
    let mut out = Vec::new();
    for (collection, what) in [
        ("Tenants", "tenant"),
        ("Machines", "deployment target"),
        ("Accounts", "account"),
        ("Channels", "channel"),
    ] {
        let (rows, _) = st.db.list_docs(&in_space(collection)).await?;
        for r in rows {
            let v: Value = parse_body(&r)?;
            let list: Vec<String> = v
                .get("TenantTags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if hit(&list) {
                let name = v.get("Name").and_then(Value::as_str).unwrap_or(&r.id);
                out.push(format!("{what} '{name}'"));
            }
        }
    }
    let (rows, _) = st.db.list_docs(&in_space("DeploymentProcesses")).await?;
    for r in rows {
        let p: ferry_domain::DeploymentProcess = parse_body(&r)?;
        for s in &p.steps {
            if s.actions.iter().any(|a| hit(&a.tenant_tags)) {
                out.push(format!("step '{}' of {}", s.name, p.project_id));
            }
        }
    }
    let (rows, _) = st.db.list_docs(&in_space("VariableSets")).await?;
    for r in rows {
        let vs: ferry_domain::VariableSet = parse_body(&r)?;
        for v in &vs.variables {
            if hit(&v.scope.tenant_tag) {
                out.push(format!("variable '{}' of {}", v.name, vs.owner_id));
            }
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
    let base = format!("/api/{space}/tagsets");
    Ok(Json(
        list_page(
            &st,
            query(&space),
            &Params::parse(raw.as_deref()),
            "TagSet",
            &base,
            &list_template(&base),
            |d| Ok(render(&space, &parse_body(d)?)),
        )
        .await?,
    ))
}

pub async fn all(State(st): State<AppState>, Path(space): Path<String>) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    Ok(Json(
        list_all(&st, query(&space), |d| Ok(render(&space, &parse_body(d)?))).await?,
    ))
}

async fn resolve(
    st: &AppState,
    space: &str,
    key: &str,
) -> ApiResult<(ferry_store::DocRow, TagSet)> {
    find(st, C, space, None, key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Tag set '{key}' was not found")))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, t) = resolve(&st, &space, &id).await?;
    Ok(Json(render(&space, &t)))
}

/// Validates a tag set's name and tags and fills tag ids, colours, sort orders and canonical
/// names. Tags keep their ids when given one of this set (so renames are recognised); new tags
/// get the next free number.
fn prepare(t: &mut TagSet, old: Option<&TagSet>) -> ApiResult<()> {
    let name = require_name(&t.name, "tag set", 200)?;
    if name.contains('/') {
        return Err(ApiError::bad_request(format!(
            "The tag set name '{name}' must not contain '/' (tags are written 'Tag set/Tag')"
        )));
    }
    t.name = name;
    let mut errors = Vec::new();
    let mut next = old
        .into_iter()
        .flat_map(|o| o.tags.iter())
        .chain(t.tags.iter())
        .filter_map(|g| {
            g.id.rsplit_once("/Tags-")
                .and_then(|(_, n)| n.parse::<i64>().ok())
        })
        .max()
        .unwrap_or(0);
    let mut seen: Vec<String> = Vec::new();
    let prefix = format!("{}/Tags-", t.id);
    for (i, tag) in t.tags.iter_mut().enumerate() {
        let n = tag.name.trim().to_string();
        if n.is_empty() {
            errors.push(format!(
                "Tags: tag {} of '{}' has no name; please provide one",
                i + 1,
                t.name
            ));
            continue;
        }
        if seen.iter().any(|s| s.eq_ignore_ascii_case(&n)) {
            errors.push(format!(
                "Tags: the tag set '{}' has the tag '{n}' more than once; tag names must be unique within a set",
                t.name
            ));
            continue;
        }
        seen.push(n.clone());
        tag.name = n;
        let known = old.is_some_and(|o| o.tags.iter().any(|x| x.id == tag.id));
        if !known || !tag.id.starts_with(&prefix) {
            next += 1;
            tag.id = format!("{prefix}{next}");
        }
        if tag.color.trim().is_empty() {
            tag.color = Tag::default().color;
        }
        tag.sort_order = i64::try_from(i).unwrap_or(0);
        tag.canonical_tag_name = format!("{}/{}", t.name, tag.name);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        Err(e)
    }
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(mut t): Body<TagSet>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    require_name(&t.name, "tag set", 200)?;
    let seq = next_seq(&st, C).await?;
    t.id = format!("{C}-{seq}");
    t.space_id = space.clone();
    for tag in &mut t.tags {
        tag.id = String::new();
    }
    prepare(&mut t, None)?;
    if t.sort_order == 0 {
        t.sort_order = i64::try_from(all_sets(&st, &space).await?.len()).unwrap_or(0);
    }
    let row = doc_row(C, &t.id, &space, "", &t.name, "", t.sort_order, seq, &t)?;
    let name = t.name.clone();
    insert_audited(
        &st,
        &ctx,
        Named {
            what: "tag set",
            name: &name,
        },
        row,
        &t,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(render(&space, &t))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut t): Body<TagSet>,
) -> ApiResult<Json<Value>> {
    let (row, old) = resolve(&st, &space, &id).await?;
    t.id = old.id.clone();
    t.space_id = space.clone();
    prepare(&mut t, Some(&old))?;
    // Tags whose canonical name goes away (removed, renamed, or the set renamed) must be unused.
    let gone: Vec<String> = old
        .tags
        .iter()
        .map(|g| g.canonical_tag_name.clone())
        .filter(|c| !t.tags.iter().any(|n| n.canonical_tag_name == *c))
        .collect();
    let users = tag_usages(&st, &space, &gone).await?;
    if !users.is_empty() {
        return Err(ApiError::bad_request(format!(
            "The tags {} of tag set '{}' cannot be removed or renamed while they are used by {}; remove them there first",
            gone.join(", "),
            old.name,
            users.join(", ")
        )));
    }
    let new_row = doc_row(C, &t.id, &space, "", &t.name, "", t.sort_order, row.seq, &t)?;
    let name = t.name.clone();
    update_audited(
        &st,
        &ctx,
        Named {
            what: "tag set",
            name: &name,
        },
        &row,
        new_row,
        &old,
        &t,
    )
    .await?;
    Ok(Json(render(&space, &t)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, t) = resolve(&st, &space, &id).await?;
    let tags: Vec<String> = t
        .tags
        .iter()
        .map(|g| g.canonical_tag_name.clone())
        .collect();
    let users = tag_usages(&st, &space, &tags).await?;
    if !users.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Tag set '{}' cannot be deleted while its tags are used by {}; remove them there first",
            t.name,
            users.join(", ")
        )));
    }
    delete_audited(
        &st,
        &ctx,
        Named {
            what: "tag set",
            name: &t.name,
        },
        &space,
        &t.id,
        &t,
    )
    .await?;
    Ok(Json(json!({})))
}
