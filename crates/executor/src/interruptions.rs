//! Raising an interruption and waiting for its answer (manual intervention; the same shape
//! serves guided failure). The interruption is a document (`ferry_domain::interruption`)
//! written when the executor starts waiting; the API records the answer in it; the executor
//! polls it. Cancelling the task withdraws the interruption.

use std::time::Duration;

use ferry_domain::interruption::{COLLECTION, Choice, Interruption, PENDING, Responder};
use ferry_domain::time::{format_ms, now_ms};
use ferry_store::{DocRow, EventRow};
use tokio_util::sync::CancellationToken;

use crate::Executor;

/// How often a waiting task looks for the answer.
const POLL: Duration = Duration::from_millis(250);

/// What to ask.
#[derive(Clone, Debug, Default)]
pub struct Ask {
    pub space_id: String,
    pub task_id: String,
    pub correlation_id: String,
    /// `ManualIntervention` or `GuidedFailure`.
    pub kind: String,
    pub title: String,
    pub instructions: Option<String>,
    pub choices: Vec<Choice>,
    pub responsible_team_ids: Vec<String>,
    pub related_document_ids: Vec<String>,
}

/// The answer.
#[derive(Clone, Debug)]
pub enum Answer {
    Submitted {
        result: String,
        notes: String,
        by: Responder,
    },
    /// The task was cancelled (or stopped) while waiting.
    Withdrawn,
}

/// Writes the interruption (pending) and an audit event; returns its id.
pub async fn raise(ex: &Executor, ask: &Ask) -> Result<String, String> {
    let now = now_ms();
    let mut tx = ex.db.begin().await.map_err(|e| e.to_string())?;
    let seq = tx.next_seq(COLLECTION).await.map_err(|e| e.to_string())?;
    let id = format!("{COLLECTION}-{seq}");
    let i = Interruption {
        id: id.clone(),
        space_id: ask.space_id.clone(),
        title: ask.title.clone(),
        kind: ask.kind.clone(),
        created: format_ms(now),
        is_pending: true,
        task_id: ask.task_id.clone(),
        correlation_id: ask.correlation_id.clone(),
        related_document_ids: ask.related_document_ids.clone(),
        instructions: ask.instructions.clone(),
        choices: ask.choices.clone(),
        responsible_team_ids: ask.responsible_team_ids.clone(),
        ..Interruption::default()
    };
    let body = serde_json::to_string(&i).map_err(|e| e.to_string())?;
    tx.insert_doc(&DocRow {
        id: id.clone(),
        collection: COLLECTION.to_string(),
        space_id: ask.space_id.clone(),
        owner_id: ask.task_id.clone(),
        name: ask.title.clone(),
        name_key: ferry_store::name_key(&ask.title),
        slug: String::new(),
        sort_order: 0,
        ref1: ask.task_id.clone(),
        ref2: PENDING.to_string(),
        seq,
        body,
        created_at: now,
        updated_at: now,
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut related = vec![id.clone()];
    related.extend(ask.related_document_ids.iter().cloned());
    tx.insert_event(&EventRow {
        id: String::new(),
        seq: 0,
        space_id: ask.space_id.clone(),
        category: format!("{}InterruptionRaised", ask.kind),
        message: format!("{} is waiting: {}", ask.task_id, ask.title),
        username: "system".to_string(),
        user_id: "system".to_string(),
        occurred: now,
        related_document_ids: related.join(","),
        details: "{}".to_string(),
        ip_address: String::new(),
    })
    .await
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(id)
}

async fn read(ex: &Executor, id: &str) -> Result<Option<(DocRow, Interruption)>, String> {
    match ex.db.get_doc(id).await.map_err(|e| e.to_string())? {
        Some(d) => {
            let i: Interruption = serde_json::from_str(&d.body)
                .map_err(|e| format!("interruption {id} is unreadable: {e}"))?;
            Ok(Some((d, i)))
        }
        None => Ok(None),
    }
}

/// Waits until the interruption is answered, or the task is cancelled (the interruption is
/// then withdrawn: no longer pending, marked cancelled).
pub async fn wait(ex: &Executor, id: &str, cancel: &CancellationToken) -> Result<Answer, String> {
    loop {
        match read(ex, id).await? {
            None => return Err(format!("the interruption {id} was deleted")),
            Some((_, i)) if !i.is_pending => {
                if i.cancelled {
                    return Ok(Answer::Withdrawn);
                }
                return Ok(Answer::Submitted {
                    result: i.result.unwrap_or_default(),
                    notes: i.notes.unwrap_or_default(),
                    by: i.submitted_by.unwrap_or_default(),
                });
            }
            Some(_) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => {
                withdraw(ex, id).await;
                return Ok(Answer::Withdrawn);
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Marks a pending interruption as withdrawn (the task stopped waiting for it).
pub async fn withdraw(ex: &Executor, id: &str) {
    let Ok(Some((mut row, mut i))) = read(ex, id).await else {
        return;
    };
    if !i.is_pending {
        return;
    }
    i.is_pending = false;
    i.cancelled = true;
    let Ok(body) = serde_json::to_string(&i) else {
        return;
    };
    row.body = body;
    row.ref2 = String::new();
    row.updated_at = now_ms();
    let r = async {
        let mut tx = ex.db.begin().await?;
        tx.update_doc(&row).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(interruption = %id, error = %e, "withdrawing an interruption failed");
    }
}
