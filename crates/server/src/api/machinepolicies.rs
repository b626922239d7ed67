//! Machine policies: how a space's targets are health-checked and what their unavailability
//! means. Every space has a `Default Machine Policy` (seeded with the space; created here on
//! first use for stores older than the seeding). Policies are listed, read and updated; the
//! health checks that act on them come with the agent.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use ferry_domain::ids::slugify;
use ferry_domain::{DEFAULT_MACHINE_POLICY_NAME, MachinePolicy};
use ferry_store::{DocQuery, StoreError};
use serde_json::Value;

use super::*;
use crate::input::Body;

pub(crate) const C: &str = "MachinePolicies";

fn render(space: &str, p: &MachinePolicy) -> Value {
    with_links(
        p,
        links(
            format!("/api/{space}/machinepolicies/{}", p.id),
            &[(
                "Web",
                format!("/app#/{space}/infrastructure/machinepolicies/{}", p.id),
            )],
        ),
    )
}

fn query(space: &str) -> DocQuery {
    let mut q = DocQuery::new(C);
    q.space_id = Some(space.to_string());
    q
}

/// The space's default policy, created if the space has none (a store from before policies).
pub async fn ensure_default(st: &AppState, space: &str) -> ApiResult<MachinePolicy> {
    for _ in 0..2 {
        let (rows, _) = st.db.list_docs(&query(space)).await?;
        for r in &rows {
            let p: MachinePolicy = parse_body(r)?;
            if p.is_default {
                return Ok(p);
            }
        }
        let seq = next_seq(st, C).await?;
        let p = crate::bootstrap::default_machine_policy(space, &format!("{C}-{seq}"));
        let row = doc_row(C, &p.id, space, "", &p.name, &p.slug, 0, seq, &p)?;
        let mut tx = st.db.begin().await?;
        match tx.insert_doc(&row).await {
            Ok(()) => {
                tx.commit().await?;
                return Ok(p);
            }
            // Another request created it (or a policy has taken the name): look again.
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(format!(
        "space {space} has no default machine policy and '{DEFAULT_MACHINE_POLICY_NAME}' cannot be created"
    )))
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    ensure_default(&st, &space).await?;
    let base = format!("/api/{space}/machinepolicies");
    let v = list_page(
        &st,
        query(&space),
        &Params::parse(raw.as_deref()),
        "MachinePolicy",
        &base,
        &list_template(&base),
        |d| Ok(render(&space, &parse_body(d)?)),
    )
    .await?;
    Ok(Json(v))
}

pub async fn all(State(st): State<AppState>, Path(space): Path<String>) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    ensure_default(&st, &space).await?;
    Ok(Json(
        list_all(&st, query(&space), |d| Ok(render(&space, &parse_body(d)?))).await?,
    ))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    ensure_default(&st, &space).await?;
    match find::<MachinePolicy>(&st, C, &space, None, &id).await? {
        Some((_, p)) => Ok(Json(render(&space, &p))),
        None => Err(ApiError::not_found(format!(
            "Machine policy '{id}' was not found"
        ))),
    }
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut p): Body<MachinePolicy>,
) -> ApiResult<Json<Value>> {
    let (row, old): (_, MachinePolicy) = load(&st, C, &space, &id, "Machine policy").await?;
    let name = require_name(&p.name, "machine policy", 200)?;
    validate(&mut p)?;
    p.id = old.id.clone();
    p.space_id = space.clone();
    p.name = name.clone();
    p.slug = slugify(&name);
    p.is_default = old.is_default;
    let new_row = doc_row(C, &p.id, &space, "", &p.name, &p.slug, 0, row.seq, &p)?;
    update_audited(
        &st,
        &ctx,
        Named {
            what: "machine policy",
            name: &name,
        },
        &row,
        new_row,
        &old,
        &p,
    )
    .await?;
    Ok(Json(render(&space, &p)))
}

/// Checks the settings Ferry acts on; every problem is reported, each naming its field.
fn validate(p: &mut MachinePolicy) -> ApiResult<()> {
    let mut errors = Vec::new();
    let hc = &mut p.machine_health_check_policy;
    match parse_timespan(&hc.health_check_interval) {
        Some(secs) if secs >= 60 => hc.health_check_interval = format_timespan(secs),
        Some(_) => errors.push(
            "MachineHealthCheckPolicy.HealthCheckInterval must be at least one minute (00:01:00)"
                .to_string(),
        ),
        None => errors.push(format!(
            "MachineHealthCheckPolicy.HealthCheckInterval '{}' is not a time span like 00:10:00 or 1.00:00:00",
            hc.health_check_interval
        )),
    }
    if !["RunScript", "OnlyConnectivity"].contains(&hc.health_check_type.as_str()) {
        errors.push(format!(
            "MachineHealthCheckPolicy.HealthCheckType '{}' must be RunScript or OnlyConnectivity",
            hc.health_check_type
        ));
    }
    let bash = &mut hc.bash_health_check_policy;
    match bash.run_type.as_str() {
        "InheritFromDefault" | "OnlyConnectivity" => bash.script_body = None,
        "Inline" => {
            if bash.script_body.as_deref().is_none_or(|s| s.trim().is_empty()) {
                errors.push(
                    "MachineHealthCheckPolicy.BashHealthCheckPolicy.ScriptBody is required when RunType is Inline"
                        .to_string(),
                );
            }
        }
        other => errors.push(format!(
            "MachineHealthCheckPolicy.BashHealthCheckPolicy.RunType '{other}' must be InheritFromDefault, Inline or OnlyConnectivity"
        )),
    }
    let conn = &p.machine_connectivity_policy.machine_connectivity_behavior;
    if !["ExpectedToBeOnline", "MayBeOfflineAndCanBeSkipped"].contains(&conn.as_str()) {
        errors.push(format!(
            "MachineConnectivityPolicy.MachineConnectivityBehavior '{conn}' must be ExpectedToBeOnline or MayBeOfflineAndCanBeSkipped"
        ));
    }
    let cleanup = &mut p.machine_cleanup_policy;
    if !["DoNotDelete", "DeleteUnavailableMachines"]
        .contains(&cleanup.delete_machines_behavior.as_str())
    {
        errors.push(format!(
            "MachineCleanupPolicy.DeleteMachinesBehavior '{}' must be DoNotDelete or DeleteUnavailableMachines",
            cleanup.delete_machines_behavior
        ));
    }
    match parse_timespan(&cleanup.delete_machines_elapsed_time_span) {
        Some(secs) if secs > 0 => {
            cleanup.delete_machines_elapsed_time_span = format_timespan(secs)
        }
        _ => errors.push(format!(
            "MachineCleanupPolicy.DeleteMachinesElapsedTimeSpan '{}' is not a positive time span like 1.00:00:00",
            cleanup.delete_machines_elapsed_time_span
        )),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        Err(e)
    }
}

/// Parses a .NET TimeSpan `[d.]hh:mm:ss[.fraction]` into whole seconds.
pub fn parse_timespan(s: &str) -> Option<u64> {
    let s = s.trim();
    let (days, rest) = match s.split_once('.') {
        Some((d, r)) if !d.contains(':') => (d.parse::<u64>().ok()?, r),
        _ => (0, s),
    };
    let mut parts = rest.split(':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let sec_text = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let whole = sec_text.split_once('.').map_or(sec_text, |(w, _)| w);
    let sec: u64 = whole.parse().ok()?;
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    days.checked_mul(86_400)?
        .checked_add(h * 3600 + m * 60 + sec)
}

/// Formats seconds as a .NET TimeSpan (`hh:mm:ss`, with `d.` when a day or more).
pub fn format_timespan(secs: u64) -> String {
    let (d, r) = (secs / 86_400, secs % 86_400);
    let hms = format!("{:02}:{:02}:{:02}", r / 3600, (r % 3600) / 60, r % 60);
    if d > 0 { format!("{d}.{hms}") } else { hms }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans_parse_and_format() {
        assert_eq!(parse_timespan("00:10:00"), Some(600));
        assert_eq!(parse_timespan("1.00:00:00"), Some(86_400));
        assert_eq!(parse_timespan("00:00:30.500"), Some(30));
        assert_eq!(parse_timespan("10 minutes"), None);
        assert_eq!(parse_timespan("00:61:00"), None);
        assert_eq!(parse_timespan("1:2:3:4"), None);
        assert_eq!(format_timespan(600), "00:10:00");
        assert_eq!(format_timespan(90_061), "1.01:01:01");
    }
}
