//! First start on an empty store: the installation id, the `Default` space (`Spaces-1`) with its
//! `Default Lifecycle`, `Default Project Group`, `Default Machine Policy` and `Default Worker
//! Pool`, and the `admin` user with an API key. Spaces of a store from before worker pools get
//! their default pool at start.
//! Safe to run on every start and on several nodes at once: everything is created only if
//! missing, and a concurrent creator's unique-key conflict is treated as "already there".

use ferry_crypto::Secret;
use ferry_domain::ids::slugify;
use ferry_domain::time::now_ms;
use ferry_domain::{
    DEFAULT_MACHINE_POLICY_NAME, Lifecycle, MachinePolicy, ProjectGroup, RetentionPeriod, Space,
};
use ferry_store::{ApiKeyRow, Db, DocQuery, EventRow, StoreError, UserRow};
use serde_json::json;

use crate::api::doc_row;
use crate::auth::Ctx;

/// What a start created, so the binary can print credentials exactly once.
#[derive(Debug, Default)]
pub struct Bootstrap {
    pub installation_id: String,
    /// Set when the admin user was created now: (password, API key if generated here).
    pub admin_created: Option<(Secret, Option<Secret>)>,
}

fn store_err(e: crate::ApiError) -> StoreError {
    StoreError::Corrupt(e.message)
}

/// Creates a space with its default lifecycle and project group.
pub async fn create_space(
    db: &Db,
    name: &str,
    description: &str,
    is_default: bool,
    ctx: Option<&Ctx>,
) -> Result<Space, StoreError> {
    let mut tx = db.begin().await?;
    let seq = tx.next_seq("Spaces").await?;
    let space = Space {
        id: format!("Spaces-{seq}"),
        name: name.to_string(),
        slug: slugify(name),
        description: description.to_string(),
        is_default,
        ..Space::default()
    };
    tx.insert_doc(
        &doc_row(
            "Spaces",
            &space.id,
            "",
            "",
            &space.name,
            &space.slug,
            0,
            seq,
            &space,
        )
        .map_err(store_err)?,
    )
    .await?;
    crate::api::teams::create_space_team(&mut tx, &space.id).await?;
    let lseq = tx.next_seq("Lifecycles").await?;
    let lifecycle = Lifecycle {
        id: format!("Lifecycles-{lseq}"),
        space_id: space.id.clone(),
        name: "Default Lifecycle".to_string(),
        slug: "default-lifecycle".to_string(),
        description: "The default lifecycle: one phase per environment, in environment order."
            .to_string(),
        release_retention_policy: RetentionPeriod {
            unit: "Days".into(),
            quantity_to_keep: 30,
            should_keep_forever: false,
        },
        tentacle_retention_policy: RetentionPeriod {
            unit: "Items".into(),
            quantity_to_keep: 3,
            should_keep_forever: false,
        },
        phases: Vec::new(),
    };
    tx.insert_doc(
        &doc_row(
            "Lifecycles",
            &lifecycle.id,
            &space.id,
            "",
            &lifecycle.name,
            &lifecycle.slug,
            0,
            lseq,
            &lifecycle,
        )
        .map_err(store_err)?,
    )
    .await?;
    let gseq = tx.next_seq("ProjectGroups").await?;
    let group = ProjectGroup {
        id: format!("ProjectGroups-{gseq}"),
        space_id: space.id.clone(),
        name: "Default Project Group".to_string(),
        slug: "default-project-group".to_string(),
        ..ProjectGroup::default()
    };
    tx.insert_doc(
        &doc_row(
            "ProjectGroups",
            &group.id,
            &space.id,
            "",
            &group.name,
            &group.slug,
            0,
            gseq,
            &group,
        )
        .map_err(store_err)?,
    )
    .await?;
    let pseq = tx.next_seq("MachinePolicies").await?;
    let policy = default_machine_policy(&space.id, &format!("MachinePolicies-{pseq}"));
    tx.insert_doc(
        &doc_row(
            "MachinePolicies",
            &policy.id,
            &space.id,
            "",
            &policy.name,
            &policy.slug,
            0,
            pseq,
            &policy,
        )
        .map_err(store_err)?,
    )
    .await?;
    let wseq = tx.next_seq(crate::api::workerpools::C).await?;
    let pool = crate::api::workerpools::default_pool(
        &space.id,
        &format!("{}-{wseq}", crate::api::workerpools::C),
    );
    tx.insert_doc(
        &doc_row(
            crate::api::workerpools::C,
            &pool.id,
            &space.id,
            "",
            &pool.name,
            &pool.slug,
            pool.sort_order,
            wseq,
            &pool,
        )
        .map_err(store_err)?,
    )
    .await?;
    let (username, user_id, ip) = match ctx {
        Some(c) => (
            c.principal.username.clone(),
            c.principal.user_id.clone(),
            c.ip.clone(),
        ),
        None => ("system".to_string(), "system".to_string(), String::new()),
    };
    tx.insert_event(&EventRow {
        id: String::new(),
        seq: 0,
        space_id: space.id.clone(),
        category: "Created".to_string(),
        message: format!(
            "Space {} was created with its Default Lifecycle and Default Project Group",
            space.name
        ),
        username,
        user_id,
        occurred: now_ms(),
        related_document_ids: [
            space.id.as_str(),
            &lifecycle.id,
            &group.id,
            &policy.id,
            &pool.id,
        ]
        .join(","),
        details: json!({"Document": space}).to_string(),
        ip_address: ip,
    })
    .await?;
    tx.commit().await?;
    Ok(space)
}

/// The `Default Machine Policy` a space starts with.
pub fn default_machine_policy(space_id: &str, id: &str) -> MachinePolicy {
    MachinePolicy {
        id: id.to_string(),
        space_id: space_id.to_string(),
        name: DEFAULT_MACHINE_POLICY_NAME.to_string(),
        slug: slugify(DEFAULT_MACHINE_POLICY_NAME),
        description: "The default machine policy".to_string(),
        is_default: true,
        ..MachinePolicy::default()
    }
}

/// Gives every space without worker pools (a store from before them) its default pool.
async fn ensure_worker_pools(db: &Db) -> Result<(), StoreError> {
    use crate::api::workerpools::{C, default_pool};
    let (spaces, _) = db.list_docs(&DocQuery::new("Spaces")).await?;
    for s in &spaces {
        let (_, pools) = db
            .list_docs(&DocQuery {
                space_id: Some(s.id.clone()),
                take: Some(0),
                ..DocQuery::new(C)
            })
            .await?;
        if pools > 0 {
            continue;
        }
        let mut tx = db.begin().await?;
        let seq = tx.next_seq(C).await?;
        let pool = default_pool(&s.id, &format!("{C}-{seq}"));
        let row = doc_row(
            C,
            &pool.id,
            &s.id,
            "",
            &pool.name,
            &pool.slug,
            pool.sort_order,
            seq,
            &pool,
        )
        .map_err(store_err)?;
        match tx.insert_doc(&row).await {
            Ok(()) => tx.commit().await?,
            // Another node created it at the same moment.
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Seeds an empty store and makes sure the admin user (and `admin_api_key`, if given) exist.
pub async fn run(db: &Db, admin_api_key: Option<&Secret>) -> Result<Bootstrap, StoreError> {
    let mut out = Bootstrap::default();
    let mut tx = db.begin().await?;
    out.installation_id = tx
        .init_meta("installation_id", &uuid::Uuid::new_v4().to_string())
        .await?;
    tx.commit().await?;

    let (_, spaces) = db
        .list_docs(&DocQuery {
            take: Some(0),
            ..DocQuery::new("Spaces")
        })
        .await?;
    if spaces == 0 {
        match create_space(db, "Default", "The default space", true, None).await {
            Ok(_) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e),
        }
    } else {
        ensure_worker_pools(db).await?;
    }

    let admin_id = match db.find_user_by_username("admin").await? {
        Some(u) => u.id,
        None => {
            // Hash before the write transaction: Argon2id takes tens of milliseconds and the
            // SQLite write connection should not wait for it.
            let password = ferry_crypto::generate_password();
            let plain = password.clone();
            let hash =
                tokio::task::spawn_blocking(move || ferry_crypto::hash_password(plain.expose()))
                    .await
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut tx = db.begin().await?;
            let generated = admin_api_key.is_none().then(ferry_crypto::generate_api_key);
            // On PostgreSQL a node that loses the race sees the unique-key conflict on the
            // INSERT, not at commit; either way the other node's admin is the one to use.
            let created: Result<String, StoreError> = async {
                let seq = tx.next_seq("Users").await?;
                let id = format!("Users-{seq}");
                tx.insert_user(&UserRow {
                    id: id.clone(),
                    username: "admin".to_string(),
                    username_key: "admin".to_string(),
                    display_name: "Administrator".to_string(),
                    email: String::new(),
                    password_hash: Some(hash),
                    is_service: 0,
                    is_active: 1,
                    created_at: now_ms(),
                })
                .await?;
                if let Some(key) = &generated {
                    insert_key(&mut tx, &id, key.expose(), "Generated at first start").await?;
                }
                tx.commit().await?;
                Ok(id)
            }
            .await;
            match created {
                Ok(id) => {
                    out.admin_created = Some((password, generated));
                    id
                }
                // Another node created the admin at the same moment.
                Err(StoreError::Conflict) => db
                    .find_user_by_username("admin")
                    .await?
                    .map(|u| u.id)
                    .ok_or_else(|| StoreError::Corrupt("admin user vanished".into()))?,
                Err(e) => return Err(e),
            }
        }
    };
    if let Some(key) = admin_api_key {
        let hash = ferry_crypto::hash_api_key(key.expose());
        if db.find_api_key(&hash).await?.is_none() {
            let mut tx = db.begin().await?;
            let inserted =
                match insert_key(&mut tx, &admin_id, key.expose(), "FERRY_ADMIN_API_KEY").await {
                    Ok(()) => tx.commit().await,
                    Err(e) => Err(e),
                };
            match inserted {
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let (space_rows, _) = db.list_docs(&DocQuery::new("Spaces")).await?;
    let space_ids: Vec<String> = space_rows.into_iter().map(|s| s.id).collect();
    crate::api::teams::ensure_built_in(db, &admin_id, &space_ids).await?;
    Ok(out)
}

async fn insert_key(
    tx: &mut ferry_store::Tx,
    user_id: &str,
    key: &str,
    purpose: &str,
) -> Result<(), StoreError> {
    let seq = tx.next_seq("APIKeys").await?;
    tx.insert_api_key(&ApiKeyRow {
        id: format!("APIKeys-{seq}"),
        user_id: user_id.to_string(),
        key_hash: ferry_crypto::hash_api_key(key),
        purpose: purpose.to_string(),
        created_at: now_ms(),
        expires_at: None,
    })
    .await
}
