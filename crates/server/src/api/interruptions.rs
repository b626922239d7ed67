//! Interruptions (Octopus's API): a deployment waiting for a person. `GET /interruptions`
//! (`regarding`, `pendingOnly`, `ids`, paging), `GET /interruptions/{id}`,
//! `PUT|GET /interruptions/{id}/responsible` (take responsibility / who has it) and
//! `POST /interruptions/{id}/submit` (`{"Result": "Proceed"|"Abort", "Notes": "…"}`).
//!
//! Rules: only a pending interruption can be taken or submitted; one user holds
//! responsibility at a time (taking it over from someone else is allowed and audited, as in
//! Octopus's "assign to me"); a submit by a caller when someone else holds responsibility is
//! refused — take responsibility first; a submit when nobody holds it takes it implicitly. The
//! answer must be one of the offered choices. When the step names responsible teams
//! (`ResponsibleTeamIds`), only their members (and holders of `AdministerSystem`) may take
//! responsibility or submit; the refusal names the teams.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use ferry_domain::interruption::{COLLECTION, Interruption, PENDING, Responder};
use ferry_domain::time::{format_ms, now_ms};
use ferry_store::DocQuery;
use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::auth::{Ctx, Principal};
use crate::input::Body;

fn responder(p: &Principal) -> Responder {
    Responder {
        id: p.user_id.clone(),
        username: p.username.clone(),
        display_name: p.display_name.clone(),
        email_address: String::new(),
    }
}

/// The Interruption resource, as the caller sees it.
pub fn render(space: &str, i: &Interruption, caller: &Principal) -> Value {
    let mut elements = Vec::new();
    if let Some(text) = &i.instructions {
        elements.push(json!({"Name": "Instructions", "Control": {"Type": "Paragraph", "Text": text, "ResolveLinks": false}, "IsValueRequired": false}));
    }
    elements.push(json!({"Name": "Notes", "Control": {"Type": "TextArea", "Label": "Notes"}, "IsValueRequired": false}));
    // Octopus names the answer `Result` for manual interventions and `Guidance` for guided
    // failure; submit accepts either.
    let answer = if i.kind == "GuidedFailure" {
        "Guidance"
    } else {
        "Result"
    };
    elements.push(json!({"Name": answer, "Control": {"Type": "SubmitButtonGroup", "Buttons": i.choices.iter().map(|c| json!({"Text": c.text, "Value": c.value, "RequiresConfirmation": c.requires_confirmation})).collect::<Vec<_>>()}, "IsValueRequired": false}));
    let has = i
        .responsible
        .as_ref()
        .is_some_and(|r| r.id == caller.user_id);
    let base = format!("/api/{space}/interruptions/{}", i.id);
    json!({
        "Id": i.id,
        "SpaceId": i.space_id,
        "Title": i.title,
        "Type": i.kind,
        "Created": i.created,
        "IsPending": i.is_pending,
        "Form": {
            "Values": {"Instructions": Value::Null, "Notes": i.notes, answer: i.result},
            "Elements": elements,
        },
        "RelatedDocumentIds": i.related_document_ids,
        "ResponsibleTeamIds": i.responsible_team_ids,
        "ResponsibleUserId": i.responsible.as_ref().map(|r| r.id.clone()),
        "CanTakeResponsibility": i.is_pending,
        "HasResponsibility": has,
        "TaskId": i.task_id,
        "CorrelationId": i.correlation_id,
        "IsLinkedToOtherInterruption": false,
        "Links": {
            "Self": base,
            "Submit": format!("{base}/submit"),
            "Responsible": format!("{base}/responsible"),
        },
    })
}

/// The task ids (of `tasks`) that have a pending interruption.
pub async fn pending_tasks(st: &AppState, tasks: &[String]) -> ApiResult<HashSet<String>> {
    if tasks.is_empty() {
        return Ok(HashSet::new());
    }
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            ref1_in: tasks.to_vec(),
            ref2_in: vec![PENDING.to_string()],
            ..DocQuery::new(COLLECTION)
        })
        .await?;
    Ok(rows.into_iter().map(|r| r.ref1).collect())
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let params = crate::query::Params::parse(raw.as_deref());
    let pending_only = match params.get("pendingOnly") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "pendingOnly must be true or false, not '{v}'"
            )));
        }
    };
    let regarding = params.get("regarding").map(|s| s.trim().to_string());
    let ids = params.list("ids");
    let (rows, _) = st
        .db
        .list_docs(&DocQuery {
            space_id: Some(space.clone()),
            newest_first: true,
            ids,
            ref2_in: if pending_only {
                vec![PENDING.to_string()]
            } else {
                Vec::new()
            },
            // A task's interruptions are found by index; other documents by their relations.
            ref1_in: regarding
                .iter()
                .filter(|r| r.starts_with("ServerTasks-"))
                .cloned()
                .collect(),
            ..DocQuery::new(COLLECTION)
        })
        .await?;
    let mut found = Vec::new();
    for r in &rows {
        let i: Interruption = parse_body(r)?;
        if let Some(reg) = &regarding {
            if &i.task_id != reg && !i.related_document_ids.iter().any(|d| d == reg) {
                continue;
            }
        }
        found.push(i);
    }
    // Only those of tasks the caller may see.
    let visible = crate::visibility::Visibility::of(
        &st,
        &ctx,
        Some(&space),
        crate::routes::Permission::InterruptionView,
    )
    .await?;
    if let Some(v) = &visible {
        let tasks: Vec<String> = found.iter().map(|i| i.task_id.clone()).collect();
        let seen = v.visible_tasks(&st, &tasks).await?;
        found.retain(|i| seen.contains(&i.task_id));
    }
    let items: Vec<Value> = found
        .iter()
        .map(|i| render(&space, i, &ctx.principal))
        .collect();
    let total = items.len() as i64;
    let (skip, take) = (params.skip(), params.take());
    let page_items: Vec<Value> = items
        .into_iter()
        .skip(usize::try_from(skip).unwrap_or(0))
        .take(usize::try_from(take).unwrap_or(0))
        .collect();
    let base = format!("/api/{space}/interruptions");
    Ok(Json(crate::query::page(
        "Interruption",
        page_items,
        total,
        skip,
        take,
        &base,
        &format!("{base}{{/id}}{{?skip,take,regarding,pendingOnly,ids}}"),
    )))
}

async fn load_one(
    st: &AppState,
    space: &str,
    id: &str,
) -> ApiResult<(ferry_store::DocRow, Interruption)> {
    load(st, COLLECTION, space, id, "Interruption").await
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, i) = load_one(&st, &space, &id).await?;
    Ok(Json(render(&space, &i, &ctx.principal)))
}

pub async fn responsible(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, i) = load_one(&st, &space, &id).await?;
    Ok(Json(match i.responsible {
        Some(r) => {
            json!({"Id": r.id, "Username": r.username, "DisplayName": r.display_name, "EmailAddress": r.email_address})
        }
        None => Value::Null,
    }))
}

async fn save(
    st: &AppState,
    space: &str,
    ctx: &Ctx,
    mut row: ferry_store::DocRow,
    i: &Interruption,
    category: &str,
    message: String,
) -> ApiResult<()> {
    row.body = serde_json::to_string(i).map_err(ApiError::internal)?;
    row.ref2 = if i.is_pending {
        PENDING.to_string()
    } else {
        String::new()
    };
    row.updated_at = now_ms();
    let mut tx = st.db.begin().await?;
    if !tx.update_doc(&row).await? {
        return Err(ApiError::conflict(format!(
            "Interruption {} changed while it was being answered; read it again",
            i.id
        )));
    }
    let mut related: Vec<&str> = vec![&i.id, &i.task_id];
    related.extend(i.related_document_ids.iter().map(String::as_str));
    audit(
        &mut tx,
        ctx,
        space,
        category,
        message,
        &related,
        json!({"Result": i.result, "Notes": i.notes}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn require_pending(i: &Interruption) -> ApiResult<()> {
    if i.is_pending {
        return Ok(());
    }
    let why = if i.cancelled {
        "its task stopped waiting for it".to_string()
    } else {
        format!(
            "it was already answered ({}{})",
            i.result.clone().unwrap_or_default(),
            i.submitted_by
                .as_ref()
                .map(|b| format!(" by {}", b.username))
                .unwrap_or_default()
        )
    };
    Err(ApiError::bad_request(format!(
        "Interruption {} is no longer pending: {why}",
        i.id
    )))
}

/// Refuses a caller who is not in one of the interruption's responsible teams (when it names
/// any).
async fn require_team(st: &AppState, ctx: &Ctx, i: &Interruption) -> ApiResult<()> {
    if i.responsible_team_ids.is_empty() || ctx.principal.internal {
        return Ok(());
    }
    if crate::authz::checker(st, &ctx.principal)
        .await?
        .is_all_powerful()
    {
        return Ok(());
    }
    let mut names = Vec::new();
    for t in &i.responsible_team_ids {
        match st.db.get_doc(t).await? {
            Some(d) if d.collection == "Teams" => {
                let team: crate::authz::TeamDoc = parse_body(&d)?;
                if team.id == crate::authz::TEAM_EVERYONE
                    || team.member_user_ids.contains(&ctx.principal.user_id)
                {
                    return Ok(());
                }
                names.push(team.name);
            }
            _ => names.push(t.clone()),
        }
    }
    Err(ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        format!(
            "Only members of the responsible teams ({}) may act on this interruption",
            names.join(", ")
        ),
    ))
}

pub async fn take_responsibility(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (row, mut i) = load_one(&st, &space, &id).await?;
    require_pending(&i)?;
    require_team(&st, &ctx, &i).await?;
    let previous = i.responsible.clone();
    if previous
        .as_ref()
        .is_some_and(|p| p.id == ctx.principal.user_id)
    {
        return Ok(Json(render(&space, &i, &ctx.principal)));
    }
    i.responsible = Some(responder(&ctx.principal));
    let message = match previous {
        Some(p) => format!(
            "{} took responsibility for {} from {}",
            ctx.principal.username, i.title, p.username
        ),
        None => format!(
            "{} took responsibility for {}",
            ctx.principal.username, i.title
        ),
    };
    save(
        &st,
        &space,
        &ctx,
        row,
        &i,
        "InterruptionResponsibilityTaken",
        message,
    )
    .await?;
    Ok(Json(render(&space, &i, &ctx.principal)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SubmitBody {
    pub result: Option<String>,
    /// Guided failure's name for the answer.
    pub guidance: Option<String>,
    pub notes: Option<String>,
    pub instructions: Option<Value>,
}

pub async fn submit(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(b): Body<SubmitBody>,
) -> ApiResult<Json<Value>> {
    let (row, mut i) = load_one(&st, &space, &id).await?;
    require_pending(&i)?;
    require_team(&st, &ctx, &i).await?;
    let offered = i
        .choices
        .iter()
        .map(|c| c.value.clone())
        .collect::<Vec<_>>()
        .join(" or ");
    let given = b.result.clone().or(b.guidance.clone());
    let Some(result) = given
        .as_deref()
        .and_then(|r| i.choice(r))
        .map(|c| c.value.clone())
    else {
        return Err(ApiError::bad_request(format!(
            "Result must be {offered}{}",
            given
                .as_deref()
                .map(|r| format!(", not '{r}'"))
                .unwrap_or_default()
        )));
    };
    if let Some(holder) = &i.responsible {
        if holder.id != ctx.principal.user_id {
            return Err(ApiError::bad_request(format!(
                "{} has taken responsibility for this interruption; take responsibility (PUT {}/responsible) before submitting",
                holder.username,
                format_args!("/api/{space}/interruptions/{}", i.id)
            )));
        }
    }
    let me = responder(&ctx.principal);
    i.responsible = Some(me.clone());
    i.result = Some(result.clone());
    i.notes = b
        .notes
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    i.submitted_by = Some(me);
    i.submitted = Some(format_ms(now_ms()));
    i.is_pending = false;
    let message = format!(
        "{} chose {result} for {}{}",
        ctx.principal.username,
        i.title,
        i.notes
            .as_deref()
            .map(|n| format!(": {n}"))
            .unwrap_or_default()
    );
    save(&st, &space, &ctx, row, &i, "InterruptionSubmitted", message).await?;
    Ok(Json(render(&space, &i, &ctx.principal)))
}
