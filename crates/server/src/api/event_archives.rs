//! Audit event retention, as Octopus has it: events older than the retention period
//! (`--event-retention-days`, default 90) are moved to daily JSON-lines archive files
//! (`{data dir}/event-archives/events-YYYY-MM-DD.jsonl`, one rendered event per line) and deleted
//! from the table; `GET /api/events/archives` lists the files, `GET /api/events/archives/{name}`
//! downloads one, `DELETE` removes one that is at least 30 days old (audited). Events inside the
//! retention period cannot be changed or deleted through the API.
//!
//! Moving is crash-safe and idempotent: a day's file is rewritten whole (what it held plus the
//! new events, by id, so nothing is written twice) to a temporary file, synced and renamed
//! before the events are deleted; a crash in between archives the same events again next time
//! without duplicating them.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_domain::time::{format_ms, now_ms};
use ferry_store::EventRow;
use serde_json::{Value, json};

use super::*;
use crate::routes::{Permission, Routes};

/// How often events are moved.
pub const INTERVAL: Duration = Duration::from_secs(3600);
/// An archive file may be deleted only when its day is at least this old.
pub const MIN_DELETE_AGE_DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;
const BATCH: i64 = 5_000;

/// This module's routes.
pub fn routes(r: Routes) -> Routes {
    use Permission as P;
    use axum::http::Method as M;
    r.add(
        M::GET,
        "/api/events/archives",
        P::EventRetentionView,
        "List the audit event archive files",
        list,
    )
    .add(
        M::GET,
        "/api/events/archives/{name}",
        P::EventRetentionView,
        "Download an audit event archive file (JSON lines)",
        download,
    )
    .add(
        M::DELETE,
        "/api/events/archives/{name}",
        P::EventRetentionDelete,
        "Delete an audit event archive file at least 30 days old",
        remove,
    )
}

fn dir(st: &AppState) -> PathBuf {
    st.config.data_dir.join("event-archives")
}

/// The day of an archive file name (`events-YYYY-MM-DD.jsonl`), or `None` for any other name
/// (so a name can never leave the directory).
fn day_of(name: &str) -> Option<&str> {
    let day = name.strip_prefix("events-")?.strip_suffix(".jsonl")?;
    let b = day.as_bytes();
    let ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    ok.then_some(day)
}

fn day_start_ms(day: &str) -> Option<i64> {
    ferry_domain::time::parse_ms(&format!("{day}T00:00:00Z"))
}

fn write_synced(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Appends `events` of one day to its file (skipping ids it already holds).
fn archive_day(dir: &FsPath, day: &str, events: &[&EventRow]) -> std::io::Result<()> {
    let path = dir.join(format!("events-{day}.jsonl"));
    let mut content = std::fs::read(&path).unwrap_or_default();
    let held: HashSet<String> = String::from_utf8_lossy(&content)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["Id"].as_str().map(str::to_string))
        .collect();
    if !content.is_empty() && !content.ends_with(b"\n") {
        content.push(b'\n');
    }
    for e in events.iter().filter(|e| !held.contains(&e.id)) {
        content.extend_from_slice(super::events::render(e).to_string().as_bytes());
        content.push(b'\n');
    }
    write_synced(&path, &content)
}

/// Moves the events older than the retention period into the archive files. Returns how many
/// were moved.
pub async fn archive_once(st: &AppState, now: i64) -> ApiResult<u64> {
    let days = i64::from(st.config.event_retention_days.max(1));
    // Whole days only, so each file holds complete days.
    let cutoff = (now.div_euclid(DAY_MS) - days) * DAY_MS;
    let dir = dir(st);
    let mut moved = 0;
    loop {
        let batch = st.db.events_before(cutoff, BATCH).await?;
        if batch.is_empty() {
            return Ok(moved);
        }
        let mut by_day: BTreeMap<String, Vec<&EventRow>> = BTreeMap::new();
        for e in &batch {
            by_day
                .entry(format_ms(e.occurred).chars().take(10).collect())
                .or_default()
                .push(e);
        }
        let d = dir.clone();
        let days: Vec<(String, Vec<EventRow>)> = by_day
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().cloned().collect()))
            .collect();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&d)?;
            for (day, events) in &days {
                let refs: Vec<&EventRow> = events.iter().collect();
                archive_day(&d, day, &refs)?;
            }
            Ok(())
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("cannot write the event archive: {e}")))?;
        let ids: Vec<String> = batch.iter().map(|e| e.id.clone()).collect();
        let mut tx = st.db.begin().await?;
        moved += tx.delete_events(&ids).await?;
        tx.commit().await?;
        if (batch.len() as i64) < BATCH {
            return Ok(moved);
        }
    }
}

/// Moves old events now and then every `every`.
pub async fn periodic(st: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match archive_once(&st, now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "moved old audit events to the archive files"),
            Err(e) => tracing::warn!(error = %e.message, "audit event retention failed"),
        }
    }
}

fn render_file(name: &str, len: u64) -> Value {
    json!({
        "Name": name,
        "FileBytes": len,
        "Day": day_of(name),
        "Links": {"Self": format!("/api/events/archives/{name}")},
    })
}

pub async fn list(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let mut files = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir(&st)) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if day_of(&name).is_some() {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                files.push((name, len));
            }
        }
    }
    files.sort();
    files.reverse();
    let n = i64::try_from(files.len()).unwrap_or(i64::MAX);
    Ok(Json(crate::query::page(
        "EventArchive",
        files.iter().map(|(n, l)| render_file(n, *l)).collect(),
        n,
        0,
        n.max(1),
        "/api/events/archives",
        "/api/events/archives{/name}",
    )))
}

fn find(st: &AppState, name: &str) -> ApiResult<PathBuf> {
    let not_found = || ApiError::not_found(format!("There is no event archive file '{name}'"));
    day_of(name).ok_or_else(not_found)?;
    let path = dir(st).join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(not_found())
    }
}

pub async fn download(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let path = find(&st, &name)?;
    let bytes = tokio::fs::read(&path).await.map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

pub async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    ctx: Ctx,
) -> ApiResult<StatusCode> {
    let path = find(&st, &name)?;
    let day = day_of(&name).and_then(day_start_ms).unwrap_or(i64::MAX);
    let age_days = (now_ms() - day).div_euclid(DAY_MS);
    if age_days < MIN_DELETE_AGE_DAYS {
        return Err(ApiError::bad_request(format!(
            "The archive file {name} is {age_days} days old; archive files can be deleted when they are at least {MIN_DELETE_AGE_DAYS} days old"
        )));
    }
    // The deletion is audited first: if the event cannot be written, nothing is deleted.
    let mut tx = st.db.begin().await?;
    audit(
        &mut tx,
        &ctx,
        "",
        "Deleted",
        format!("Deleted the audit event archive file {name}"),
        &[],
        json!({"File": name}),
    )
    .await?;
    tx.commit().await?;
    tokio::fs::remove_file(&path)
        .await
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_archive_names_are_accepted() {
        assert_eq!(day_of("events-2026-01-31.jsonl"), Some("2026-01-31"));
        for bad in [
            "../events-2026-01-31.jsonl",
            "events-2026-01-31.jsonl.tmp",
            "events-2026-1-31.jsonl",
            "events-../../x.jsonl",
            "ferry.db",
        ] {
            assert_eq!(day_of(bad), None, "{bad}");
        }
    }
}
