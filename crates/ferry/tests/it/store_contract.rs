//! The store contract: one suite over every public operation of `ferry-store`, run on SQLite
//! (a file in a temporary directory) and on PostgreSQL (a temporary cluster from `pg.rs`). Both
//! backends must give the same answers; a query that works on one only fails here.
//!
//! The suite runs its sections in order on one database. Sections that touch the task queue
//! leave nothing queued behind, because `claim_task` takes the oldest runnable task of all.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use ferry_domain::version::Version;
use ferry_store::{
    ActivityRow, ApiKeyRow, Backend, BuildInfoQuery, BuildInfoRow, DashboardCell, DashboardQuery,
    DashboardQueued, Db, DocQuery, DocRow, EventQuery, EventRow, NewLogLine, PackageQuery,
    PackageRow, StoreError, TaskQuery, TaskRow, UserRow, name_key, package_key, version_key,
    version_sort_key,
};
use serde_json::json;

use crate::pg::PgCluster;

/// A fixed clock for the suite: timestamps are bound from Rust, never taken from the database.
const T0: i64 = 1_700_000_000_000;

// ---- builders -----------------------------------------------------------------------------

fn doc(collection: &str, id: &str, space: &str, owner: &str, name: &str, seq: i64) -> DocRow {
    DocRow {
        id: id.to_string(),
        collection: collection.to_string(),
        space_id: space.to_string(),
        owner_id: owner.to_string(),
        name: name.to_string(),
        name_key: name_key(name),
        slug: name.to_lowercase().replace(' ', "-"),
        sort_order: 0,
        ref1: String::new(),
        ref2: String::new(),
        seq,
        body: json!({"Id": id, "Name": name, "Note": "ünïcødé ✓ 'quoted' \"double\""}).to_string(),
        created_at: T0 + seq,
        updated_at: T0 + seq,
    }
}

fn task(id: &str, seq: i64, queue_after: i64) -> TaskRow {
    TaskRow {
        id: id.to_string(),
        seq,
        space_id: "Spaces-1".to_string(),
        name: "Deploy".to_string(),
        description: format!("Deploy {id}"),
        state: "Queued".to_string(),
        arguments: json!({"DeploymentId": format!("Deployments-{seq}")}).to_string(),
        project_id: Some("Projects-1".to_string()),
        environment_id: Some("Environments-1".to_string()),
        tenant_id: None,
        deployment_id: Some(format!("Deployments-{seq}")),
        release_id: Some("Releases-1".to_string()),
        queue_time: T0,
        queue_time_expiry: None,
        start_time: None,
        completed_time: None,
        last_updated: T0,
        error_message: String::new(),
        has_warnings_or_errors: 0,
        lease_owner: None,
        lease_expires_at: None,
        epoch: 0,
        attempts: 0,
        queue_after,
        cancel_requested: 0,
        created_by: "Users-1".to_string(),
    }
}

fn event(space: &str, category: &str, user: &str, related: &[&str], occurred: i64) -> EventRow {
    EventRow {
        id: String::new(),
        seq: 0,
        space_id: space.to_string(),
        category: category.to_string(),
        message: format!("{category} by {user}"),
        username: user.to_lowercase(),
        user_id: user.to_string(),
        occurred,
        related_document_ids: related.join(","),
        details: json!({"k": "v"}).to_string(),
        ip_address: "127.0.0.1".to_string(),
    }
}

fn user(id: &str, username: &str, created_at: i64) -> UserRow {
    UserRow {
        id: id.to_string(),
        username: username.to_string(),
        username_key: name_key(username),
        display_name: format!("{username} (display)"),
        email: format!("{}@example.test", username.to_lowercase()),
        password_hash: Some("$argon2id$v=19$fake".to_string()),
        is_service: 0,
        is_active: 1,
        created_at,
    }
}

fn ids<T>(rows: &[T], id: impl Fn(&T) -> String) -> Vec<String> {
    rows.iter().map(id).collect()
}

fn doc_ids(rows: &[DocRow]) -> Vec<String> {
    ids(rows, |d| d.id.clone())
}

fn task_ids(rows: &[TaskRow]) -> Vec<String> {
    ids(rows, |t| t.id.clone())
}

async fn insert_docs(db: &Db, docs: &[DocRow]) {
    let mut tx = db.begin().await.unwrap();
    for d in docs {
        tx.insert_doc(d).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn insert_tasks(db: &Db, tasks: &[TaskRow]) {
    let mut tx = db.begin().await.unwrap();
    for t in tasks {
        tx.insert_task(t).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn list(db: &Db, q: DocQuery) -> (Vec<String>, i64) {
    let (rows, total) = db.list_docs(&q).await.unwrap();
    (doc_ids(&rows), total)
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---- the suite ----------------------------------------------------------------------------

/// Runs every section on a migrated, empty database.
pub async fn suite(db: Db) {
    let t = Instant::now();
    assert_eq!(db.integrity_check().await.unwrap(), "ok");
    meta_and_sequences(&db).await;
    documents(&db).await;
    document_lists(&db).await;
    conflicts_and_rollback(&db).await;
    tasks_and_lists(&db).await;
    claims(&db).await;
    concurrent_claims(&db).await;
    leases_and_fencing(&db).await;
    cancellation(&db).await;
    orphans(&db).await;
    task_log(&db).await;
    task_deletion(&db).await;
    events(&db).await;
    users_and_api_keys(&db).await;
    packages(&db).await;
    concurrent_package_inserts(&db).await;
    build_information(&db).await;
    dashboard(&db).await;
    assert_eq!(db.integrity_check().await.unwrap(), "ok");
    db.close().await;
    eprintln!("store contract on {:?}: {:?}", db.backend(), t.elapsed());
}

async fn meta_and_sequences(db: &Db) {
    assert_eq!(db.get_meta("installation_id").await.unwrap(), None);
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        tx.init_meta("installation_id", "first").await.unwrap(),
        "first"
    );
    // Init never overwrites: the value first stored wins.
    assert_eq!(
        tx.init_meta("installation_id", "second").await.unwrap(),
        "first"
    );
    assert_eq!(tx.next_seq("Projects").await.unwrap(), 1);
    assert_eq!(tx.next_seq("Projects").await.unwrap(), 2);
    assert_eq!(
        tx.next_seq("Environments").await.unwrap(),
        1,
        "sequences are per collection"
    );
    tx.commit().await.unwrap();
    assert_eq!(
        db.get_meta("installation_id").await.unwrap().as_deref(),
        Some("first")
    );

    // A rolled-back sequence step is not consumed.
    let mut tx = db.begin().await.unwrap();
    assert_eq!(tx.next_seq("Projects").await.unwrap(), 3);
    tx.rollback().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    assert_eq!(tx.next_seq("Projects").await.unwrap(), 3);
    assert_eq!(tx.init_meta("other", "x").await.unwrap(), "x");
    // Dropping a transaction without commit rolls it back too.
    drop(tx);
    assert_eq!(db.get_meta("other").await.unwrap(), None);
    let mut tx = db.begin().await.unwrap();
    assert_eq!(tx.next_seq("Projects").await.unwrap(), 3);
    tx.commit().await.unwrap();
}

async fn documents(db: &Db) {
    let mut alpha = doc("Projects", "Projects-1", "Spaces-1", "", "Alpha Web", 1);
    alpha.slug = "alpha-web".into();
    alpha.ref1 = "ProjectGroups-1".into();
    alpha.ref2 = "Lifecycles-1".into();
    alpha.sort_order = 7;
    let beta = doc("Projects", "Projects-2", "Spaces-1", "", "Beta", 2);
    let other_space = doc("Projects", "Projects-3", "Spaces-2", "", "Alpha Web", 3);
    let channel = doc(
        "Channels",
        "Channels-1",
        "Spaces-1",
        "Projects-1",
        "Default",
        1,
    );

    let mut tx = db.begin().await.unwrap();
    tx.insert_doc(&alpha).await.unwrap();
    // A transaction reads its own writes; other readers do not see them before commit.
    assert_eq!(
        tx.get_doc("Projects-1").await.unwrap().as_ref(),
        Some(&alpha)
    );
    assert_eq!(db.get_doc("Projects-1").await.unwrap(), None);
    assert_eq!(tx.get_doc("Projects-404").await.unwrap(), None);
    for d in [&beta, &other_space, &channel] {
        tx.insert_doc(d).await.unwrap();
    }
    tx.commit().await.unwrap();

    // Every column round-trips exactly.
    assert_eq!(
        db.get_doc("Projects-1").await.unwrap().as_ref(),
        Some(&alpha)
    );
    assert_eq!(
        db.get_doc("Channels-1").await.unwrap().as_ref(),
        Some(&channel)
    );
    assert_eq!(db.get_doc("Projects-404").await.unwrap(), None);

    // find_doc: by id, by slug, by name in any case; scoped by collection, space and owner.
    let find = |collection: &'static str,
                space: Option<&'static str>,
                owner: Option<&'static str>,
                key: &'static str| async move {
        db.find_doc(collection, space, owner, key)
            .await
            .unwrap()
            .map(|d| d.id)
    };
    assert_eq!(
        find("Projects", None, None, "Projects-1").await.as_deref(),
        Some("Projects-1")
    );
    assert_eq!(
        find("Projects", Some("Spaces-1"), None, "alpha-web")
            .await
            .as_deref(),
        Some("Projects-1")
    );
    assert_eq!(
        find("Projects", Some("Spaces-1"), None, "ALPHA web")
            .await
            .as_deref(),
        Some("Projects-1")
    );
    assert_eq!(
        find("Projects", Some("Spaces-2"), None, "alpha web")
            .await
            .as_deref(),
        Some("Projects-3")
    );
    assert_eq!(
        find("Projects", Some("Spaces-1"), None, "beta")
            .await
            .as_deref(),
        Some("Projects-2")
    );
    // Without a space, the oldest match wins.
    assert_eq!(
        find("Projects", None, None, "Alpha Web").await.as_deref(),
        Some("Projects-1")
    );
    // An id from another collection, space or owner is not found through that id.
    assert_eq!(find("Environments", None, None, "Projects-1").await, None);
    assert_eq!(
        find("Projects", Some("Spaces-2"), None, "Projects-1").await,
        None
    );
    assert_eq!(
        find("Channels", None, Some("Projects-1"), "Channels-1")
            .await
            .as_deref(),
        Some("Channels-1")
    );
    assert_eq!(
        find("Channels", None, Some("Projects-2"), "Channels-1").await,
        None
    );
    assert_eq!(
        find("Channels", None, Some("Projects-2"), "default").await,
        None
    );
    assert_eq!(find("Projects", None, None, "nothing-like-it").await, None);

    // update_doc replaces the searchable columns and the body, and nothing else.
    let mut renamed = alpha.clone();
    renamed.name = "Alpha API".into();
    renamed.name_key = name_key("Alpha API");
    renamed.slug = "alpha-api".into();
    renamed.sort_order = 3;
    renamed.ref1 = "ProjectGroups-2".into();
    renamed.ref2 = "Lifecycles-2".into();
    renamed.body = json!({"Id": "Projects-1", "Name": "Alpha API"}).to_string();
    renamed.updated_at = T0 + 1000;
    let mut sneaky = renamed.clone();
    sneaky.collection = "Elsewhere".into();
    sneaky.space_id = "Spaces-9".into();
    sneaky.owner_id = "Owner-9".into();
    sneaky.seq = 99;
    sneaky.created_at = 0;
    let mut tx = db.begin().await.unwrap();
    assert!(tx.update_doc(&sneaky).await.unwrap());
    let mut missing = renamed.clone();
    missing.id = "Projects-404".into();
    assert!(!tx.update_doc(&missing).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        db.get_doc("Projects-1").await.unwrap().as_ref(),
        Some(&renamed)
    );
    assert_eq!(
        find("Projects", Some("Spaces-1"), None, "alpha api")
            .await
            .as_deref(),
        Some("Projects-1")
    );
    assert_eq!(
        find("Projects", Some("Spaces-1"), None, "alpha-web").await,
        None
    );
    assert_eq!(
        find("Projects", Some("Spaces-1"), None, "Alpha Web").await,
        None
    );

    // Deleting: one document, then everything an owner holds.
    let mut tx = db.begin().await.unwrap();
    tx.insert_doc(&doc(
        "Channels",
        "Channels-2",
        "Spaces-1",
        "Projects-1",
        "Hotfix",
        2,
    ))
    .await
    .unwrap();
    tx.insert_doc(&doc(
        "Channels",
        "Channels-3",
        "Spaces-1",
        "Projects-2",
        "Default",
        3,
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    assert!(tx.delete_doc("Projects-3").await.unwrap());
    assert!(
        !tx.delete_doc("Projects-3").await.unwrap(),
        "deleting twice reports false"
    );
    assert_eq!(tx.delete_docs_owned_by("Projects-1").await.unwrap(), 2);
    assert_eq!(tx.delete_docs_owned_by("Projects-1").await.unwrap(), 0);
    tx.commit().await.unwrap();
    assert_eq!(db.get_doc("Projects-3").await.unwrap(), None);
    assert_eq!(db.get_doc("Channels-1").await.unwrap(), None);
    assert_eq!(db.get_doc("Channels-2").await.unwrap(), None);
    assert!(
        db.get_doc("Channels-3").await.unwrap().is_some(),
        "another owner's document stays"
    );
    assert!(
        db.get_doc("Projects-1").await.unwrap().is_some(),
        "the owner itself stays"
    );
}

async fn document_lists(db: &Db) {
    // Names chosen so that unescaped LIKE wildcards would match more than they should.
    let names = [
        ("Machines-1", "web-01", 2, "Environments-1", "Roles-web"),
        ("Machines-2", "Web_02", 1, "Environments-2", "Roles-web"),
        ("Machines-3", "db 100%", 1, "Environments-1", "Roles-db"),
        ("Machines-4", "WEBX03", 0, "Environments-2", "Roles-db"),
        (
            "Machines-5",
            "back\\slash",
            5,
            "Environments-3",
            "Roles-web",
        ),
        ("Machines-6", "Ünïcode Wéb", 5, "Environments-3", "Roles-db"),
    ];
    let mut docs = Vec::new();
    for (i, (id, name, sort, env, role)) in names.iter().enumerate() {
        let mut d = doc("Machines", id, "Spaces-1", "", name, i as i64 + 1);
        d.sort_order = *sort;
        d.ref1 = env.to_string();
        d.ref2 = role.to_string();
        docs.push(d);
    }
    // Same collection, other space and other owner: filtered out by space / owner.
    let mut elsewhere = doc("Machines", "Machines-7", "Spaces-2", "", "web-01", 7);
    elsewhere.ref1 = "Environments-1".into();
    docs.push(elsewhere);
    let mut owned = doc(
        "Machines",
        "Machines-8",
        "Spaces-1",
        "Workers-1",
        "web-01",
        8,
    );
    owned.sort_order = 9;
    docs.push(owned);
    insert_docs(db, &docs).await;

    let base = || DocQuery {
        space_id: Some("Spaces-1".into()),
        ..DocQuery::new("Machines")
    };
    let all = v(&[
        "Machines-4",
        "Machines-2",
        "Machines-3",
        "Machines-1",
        "Machines-5",
        "Machines-6",
        "Machines-8",
    ]);
    // Order: sort order, then creation sequence.
    assert_eq!(list(db, base()).await, (all.clone(), 7));
    assert_eq!(list(db, DocQuery::new("Machines")).await.1, 8);
    assert_eq!(
        list(db, DocQuery::new("NoSuchCollection")).await,
        (vec![], 0)
    );
    // Newest first: by sequence, descending.
    let newest = DocQuery {
        newest_first: true,
        ..base()
    };
    assert_eq!(
        list(db, newest).await.0,
        v(&[
            "Machines-8",
            "Machines-6",
            "Machines-5",
            "Machines-4",
            "Machines-3",
            "Machines-2",
            "Machines-1"
        ])
    );

    // Paging: the total counts all matches, the page holds `take` from `skip`.
    let page = |skip, take| DocQuery {
        skip,
        take,
        ..base()
    };
    assert_eq!(list(db, page(0, Some(2))).await, (all[0..2].to_vec(), 7));
    assert_eq!(list(db, page(2, Some(3))).await, (all[2..5].to_vec(), 7));
    assert_eq!(list(db, page(6, Some(5))).await, (all[6..].to_vec(), 7));
    assert_eq!(list(db, page(10, Some(5))).await, (vec![], 7));
    assert_eq!(
        list(db, page(0, Some(0))).await,
        (vec![], 7),
        "take 0 only counts"
    );
    assert_eq!(
        list(db, page(5, None)).await,
        (all[5..].to_vec(), 7),
        "skip without take"
    );
    assert_eq!(
        list(db, page(-3, Some(-1))).await,
        (vec![], 7),
        "negative paging is clamped"
    );

    // By ids.
    let by_ids = DocQuery {
        ids: v(&["Machines-3", "Machines-1", "Machines-7", "Nope-1"]),
        ..base()
    };
    assert_eq!(
        list(db, by_ids).await,
        (v(&["Machines-3", "Machines-1"]), 2)
    );

    // Partial name: case-insensitive substring, with % _ and \ taken literally.
    let partial = |p: &str| DocQuery {
        partial_name: Some(p.to_string()),
        ..base()
    };
    assert_eq!(
        list(db, partial("WEB")).await.0,
        v(&["Machines-4", "Machines-2", "Machines-1", "Machines-8"])
    );
    assert_eq!(list(db, partial("%")).await.0, v(&["Machines-3"]));
    assert_eq!(list(db, partial("_")).await.0, v(&["Machines-2"]));
    assert_eq!(
        list(db, partial("b_0")).await.0,
        v(&["Machines-2"]),
        "_ is not a wildcard"
    );
    assert_eq!(
        list(db, partial("web%")).await.0,
        Vec::<String>::new(),
        "% is not a wildcard"
    );
    assert_eq!(list(db, partial("\\")).await.0, v(&["Machines-5"]));
    assert_eq!(list(db, partial("ÜNÏCODE W")).await.0, v(&["Machines-6"]));
    assert_eq!(list(db, partial("")).await.1, 7);

    // Exact name, case-insensitive.
    let named = |n: &str| DocQuery {
        name: Some(n.to_string()),
        ..base()
    };
    assert_eq!(
        list(db, named("WEB-01")).await.0,
        v(&["Machines-1", "Machines-8"])
    );
    assert_eq!(list(db, named("web")).await.0, Vec::<String>::new());
    assert_eq!(list(db, named("web_02")).await.0, v(&["Machines-2"]));

    // Indexed references and owners.
    let refs = DocQuery {
        ref1_in: v(&["Environments-1", "Environments-3"]),
        ..base()
    };
    assert_eq!(
        list(db, refs).await.0,
        v(&["Machines-3", "Machines-1", "Machines-5", "Machines-6"])
    );
    let refs2 = DocQuery {
        ref1_in: v(&["Environments-1", "Environments-3"]),
        ref2_in: v(&["Roles-db"]),
        ..base()
    };
    assert_eq!(list(db, refs2).await, (v(&["Machines-3", "Machines-6"]), 2));
    let unscoped_ref = DocQuery {
        ref1_in: v(&["Environments-1"]),
        ..DocQuery::new("Machines")
    };
    assert_eq!(
        list(db, unscoped_ref).await.0,
        v(&["Machines-7", "Machines-3", "Machines-1"])
    );
    let owner = DocQuery {
        owner_id: Some("Workers-1".into()),
        ..base()
    };
    assert_eq!(list(db, owner).await.0, v(&["Machines-8"]));
    let no_owner = DocQuery {
        owner_id: Some(String::new()),
        ..base()
    };
    assert_eq!(list(db, no_owner).await.1, 6);
    let owners = DocQuery {
        owner_in: v(&["Workers-1", "Workers-2"]),
        ..DocQuery::new("Machines")
    };
    assert_eq!(list(db, owners).await.0, v(&["Machines-8"]));
    // Filters combine with AND, and paging applies after filtering.
    let combined = DocQuery {
        partial_name: Some("web".into()),
        ref2_in: v(&["Roles-web"]),
        owner_id: Some(String::new()),
        take: Some(1),
        skip: 1,
        ..base()
    };
    assert_eq!(list(db, combined).await, (v(&["Machines-1"]), 2));
}

async fn conflicts_and_rollback(db: &Db) {
    let original = doc(
        "Environments",
        "Environments-1",
        "Spaces-1",
        "",
        "Production",
        1,
    );
    insert_docs(db, std::slice::from_ref(&original)).await;

    // The same name in another case, with spaces around it, is the same name.
    let mut tx = db.begin().await.unwrap();
    let dup = doc(
        "Environments",
        "Environments-2",
        "Spaces-1",
        "",
        " PRODUCTION ",
        2,
    );
    assert!(matches!(
        tx.insert_doc(&dup).await,
        Err(StoreError::Conflict)
    ));
    tx.rollback().await.unwrap();
    // The same name elsewhere is fine: another collection, space or owner.
    insert_docs(
        db,
        &[
            doc("Projects", "Projects-10", "Spaces-1", "", "Production", 10),
            doc(
                "Environments",
                "Environments-3",
                "Spaces-2",
                "",
                "Production",
                3,
            ),
            doc(
                "Environments",
                "Environments-4",
                "Spaces-1",
                "Owner-1",
                "Production",
                4,
            ),
        ],
    )
    .await;

    // A failed transaction leaves nothing behind: not its documents, events, sequence steps
    // or metadata, though they were written before the failing statement.
    let seq_before = {
        let mut tx = db.begin().await.unwrap();
        let s = tx.next_seq("Environments").await.unwrap();
        tx.commit().await.unwrap();
        s
    };
    let events_before = db.list_events(&EventQuery::default()).await.unwrap().1;
    let mut tx = db.begin().await.unwrap();
    let seq = tx.next_seq("Environments").await.unwrap();
    assert_eq!(seq, seq_before + 1);
    tx.insert_doc(&doc(
        "Environments",
        "Environments-5",
        "Spaces-1",
        "",
        "Staging",
        5,
    ))
    .await
    .unwrap();
    tx.insert_event(&event(
        "Spaces-1",
        "Created",
        "Users-1",
        &["Environments-5"],
        T0,
    ))
    .await
    .unwrap();
    tx.init_meta("half-written", "yes").await.unwrap();
    let mut clash = doc(
        "Environments",
        "Environments-6",
        "Spaces-1",
        "",
        "staging",
        6,
    );
    clash.body = "{}".into();
    assert!(matches!(
        tx.insert_doc(&clash).await,
        Err(StoreError::Conflict)
    ));
    tx.rollback().await.unwrap();
    assert_eq!(db.get_doc("Environments-5").await.unwrap(), None);
    assert_eq!(db.get_doc("Environments-6").await.unwrap(), None);
    assert_eq!(
        db.list_events(&EventQuery::default()).await.unwrap().1,
        events_before
    );
    assert_eq!(db.get_meta("half-written").await.unwrap(), None);
    // The same after a failure that was never rolled back explicitly (the handle is dropped).
    let mut tx = db.begin().await.unwrap();
    tx.insert_doc(&doc(
        "Environments",
        "Environments-7",
        "Spaces-1",
        "",
        "Test",
        7,
    ))
    .await
    .unwrap();
    assert!(matches!(
        tx.insert_doc(&dup).await,
        Err(StoreError::Conflict)
    ));
    drop(tx);
    assert_eq!(db.get_doc("Environments-7").await.unwrap(), None);
    let mut tx = db.begin().await.unwrap();
    assert_eq!(tx.next_seq("Environments").await.unwrap(), seq_before + 1);
    // A duplicate id is a conflict too.
    let mut same_id = original.clone();
    same_id.name = "Another".into();
    same_id.name_key = name_key("Another");
    assert!(matches!(
        tx.insert_doc(&same_id).await,
        Err(StoreError::Conflict)
    ));
    tx.rollback().await.unwrap();

    // Renaming onto an existing name is a conflict; the document keeps its old name.
    let mut renamed = doc("Environments", "Environments-3", "Spaces-2", "", "Dev", 3);
    insert_docs(
        db,
        &[doc(
            "Environments",
            "Environments-8",
            "Spaces-2",
            "",
            "Dev",
            8,
        )],
    )
    .await;
    renamed.updated_at = T0 + 5;
    let mut tx = db.begin().await.unwrap();
    assert!(matches!(
        tx.update_doc(&renamed).await,
        Err(StoreError::Conflict)
    ));
    tx.rollback().await.unwrap();
    assert_eq!(
        db.get_doc("Environments-3").await.unwrap().unwrap().name,
        "Production"
    );
    assert_eq!(
        db.get_doc("Environments-1").await.unwrap().as_ref(),
        Some(&original)
    );
}

async fn tasks_and_lists(db: &Db) {
    // Inserted out of sequence order; lists are newest (highest seq) first.
    let mut t1 = task("ServerTasks-1", 1, T0);
    t1.state = "Success".into();
    t1.start_time = Some(T0 + 1);
    t1.completed_time = Some(T0 + 2);
    t1.queue_time_expiry = Some(T0 + 3);
    t1.tenant_id = Some("Tenants-1".into());
    t1.has_warnings_or_errors = 1;
    t1.error_message = "warned".into();
    let mut t2 = task("ServerTasks-2", 2, T0);
    t2.state = "Failed".into();
    t2.environment_id = Some("Environments-2".into());
    t2.release_id = Some("Releases-2".into());
    let mut t3 = task("ServerTasks-3", 3, T0);
    t3.name = "Health".into();
    t3.space_id = "Spaces-2".into();
    t3.project_id = None;
    t3.environment_id = None;
    t3.deployment_id = None;
    t3.release_id = None;
    t3.state = "Canceled".into();
    let mut t4 = task("ServerTasks-4", 4, T0);
    t4.state = "Executing".into();
    t4.lease_owner = Some("node-x".into());
    t4.lease_expires_at = Some(i64::MAX / 2);
    t4.epoch = 1;
    t4.attempts = 1;
    t4.project_id = Some("Projects-2".into());
    let mut tx = db.begin().await.unwrap();
    for t in [&t3, &t1, &t4, &t2] {
        tx.insert_task(t).await.unwrap();
    }
    assert_eq!(
        tx.get_task("ServerTasks-4").await.unwrap().as_ref(),
        Some(&t4)
    );
    assert_eq!(tx.get_task("ServerTasks-404").await.unwrap(), None);
    // A duplicate task id is a conflict.
    assert!(matches!(
        tx.insert_task(&t1).await,
        Err(StoreError::Conflict)
    ));
    tx.rollback().await.unwrap();
    assert_eq!(
        db.get_task("ServerTasks-4").await.unwrap(),
        None,
        "rolled back"
    );
    insert_tasks(db, &[t3.clone(), t1.clone(), t4.clone(), t2.clone()]).await;
    for t in [&t1, &t2, &t3, &t4] {
        assert_eq!(
            db.get_task(&t.id).await.unwrap().as_ref(),
            Some(t),
            "round trip of {}",
            t.id
        );
    }
    assert_eq!(db.get_task("ServerTasks-404").await.unwrap(), None);

    let q = |f: fn(&mut TaskQuery)| {
        let mut q = TaskQuery::default();
        f(&mut q);
        async move {
            let (rows, total) = db.list_tasks(&q).await.unwrap();
            (task_ids(&rows), total)
        }
    };
    let all = v(&[
        "ServerTasks-4",
        "ServerTasks-3",
        "ServerTasks-2",
        "ServerTasks-1",
    ]);
    assert_eq!(q(|_| {}).await, (all.clone(), 4));
    assert_eq!(
        q(|q| q.space_id = Some("Spaces-2".into())).await,
        (v(&["ServerTasks-3"]), 1)
    );
    assert_eq!(
        q(|q| q.ids = v(&["ServerTasks-1", "ServerTasks-3", "X"]))
            .await
            .0,
        v(&["ServerTasks-3", "ServerTasks-1"])
    );
    assert_eq!(
        q(|q| q.states = v(&["Success", "Failed"])).await.0,
        v(&["ServerTasks-2", "ServerTasks-1"])
    );
    assert_eq!(
        q(|q| q.name = Some("Health".into())).await.0,
        v(&["ServerTasks-3"])
    );
    assert_eq!(
        q(|q| q.project_id = Some("Projects-1".into())).await.0,
        v(&["ServerTasks-2", "ServerTasks-1"])
    );
    assert_eq!(
        q(|q| q.environment_id = Some("Environments-2".into()))
            .await
            .0,
        v(&["ServerTasks-2"])
    );
    assert_eq!(
        q(|q| q.release_id = Some("Releases-1".into())).await.0,
        v(&["ServerTasks-4", "ServerTasks-1"])
    );
    assert_eq!(q(|q| q.active_only = true).await.0, v(&["ServerTasks-4"]));
    assert_eq!(
        q(|q| {
            q.skip = 1;
            q.take = Some(2)
        })
        .await,
        (all[1..3].to_vec(), 4)
    );
    assert_eq!(q(|q| q.take = Some(0)).await, (vec![], 4));
    assert_eq!(
        q(|q| {
            q.states = v(&["Success", "Failed", "Executing"]);
            q.project_id = Some("Projects-1".into());
            q.take = Some(1)
        })
        .await,
        (v(&["ServerTasks-2"]), 2)
    );

    let counts: BTreeMap<String, i64> = db
        .count_tasks_by_state()
        .await
        .unwrap()
        .into_iter()
        .collect();
    let expected: BTreeMap<String, i64> = [
        ("Canceled", 1),
        ("Executing", 1),
        ("Failed", 1),
        ("Success", 1),
    ]
    .into_iter()
    .map(|(s, n)| (s.to_string(), n))
    .collect();
    assert_eq!(counts, expected);

    // Leave nothing executing for the sections after this one.
    assert!(
        db.finish_task("ServerTasks-4", "node-x", 1, "Success", "", false, T0 + 10)
            .await
            .unwrap()
    );
}

async fn claims(db: &Db) {
    assert!(
        db.claim_task("node-a", T0, T0 + 30_000)
            .await
            .unwrap()
            .is_none(),
        "nothing queued"
    );
    // Inserted out of order: claims go by sequence. One waits in the queue until T0 + 5000.
    let mut started = task("ServerTasks-12", 12, T0);
    started.start_time = Some(T0 - 50); // a task that ran before keeps its first start time
    let mut hidden = task("ServerTasks-10", 10, T0 + 5_000);
    hidden.epoch = 0;
    insert_tasks(
        db,
        &[
            task("ServerTasks-13", 13, T0),
            started,
            hidden,
            task("ServerTasks-11", 11, T0),
        ],
    )
    .await;

    let now = T0 + 100;
    let c = db
        .claim_task("node-a", now, now + 30_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.task.id, "ServerTasks-11",
        "oldest runnable first; queue_after respected"
    );
    assert_eq!(c.node, "node-a");
    assert_eq!(c.epoch, 1);
    let expected = TaskRow {
        state: "Executing".into(),
        lease_owner: Some("node-a".into()),
        lease_expires_at: Some(now + 30_000),
        epoch: 1,
        attempts: 1,
        start_time: Some(now),
        last_updated: now,
        ..task("ServerTasks-11", 11, T0)
    };
    assert_eq!(c.task, expected, "the claim returns the row as updated");
    assert_eq!(
        db.get_task("ServerTasks-11").await.unwrap().as_ref(),
        Some(&expected)
    );

    let c = db
        .claim_task("node-b", now, now + 30_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.task.id, "ServerTasks-12");
    assert_eq!(c.task.start_time, Some(T0 - 50));
    assert_eq!(c.task.lease_owner.as_deref(), Some("node-b"));
    let c = db
        .claim_task("node-a", now, now + 30_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.task.id, "ServerTasks-13");
    assert!(
        db.claim_task("node-a", now, now + 30_000)
            .await
            .unwrap()
            .is_none(),
        "ServerTasks-10 waits"
    );
    assert!(
        db.claim_task("node-a", T0 + 4_999, T0 + 9_000)
            .await
            .unwrap()
            .is_none()
    );
    let c = db
        .claim_task("node-a", T0 + 5_000, T0 + 9_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.task.id, "ServerTasks-10",
        "claimable once queue_after has come"
    );
    assert!(
        db.claim_task("node-a", T0 + 5_000, T0 + 9_000)
            .await
            .unwrap()
            .is_none()
    );

    for (id, node, epoch) in [
        ("ServerTasks-10", "node-a", 1),
        ("ServerTasks-11", "node-a", 1),
        ("ServerTasks-12", "node-b", 1),
        ("ServerTasks-13", "node-a", 1),
    ] {
        assert!(
            db.finish_task(id, node, epoch, "Success", "", false, T0 + 6_000)
                .await
                .unwrap()
        );
    }
}

/// Several claimers at once (each its own connection on PostgreSQL) never get the same task,
/// and together they get every task.
async fn concurrent_claims(db: &Db) {
    const TASKS: i64 = 60;
    const CLAIMERS: usize = 6;
    let tasks: Vec<TaskRow> = (0..TASKS)
        .map(|i| task(&format!("ServerTasks-{}", 100 + i), 100 + i, T0))
        .collect();
    insert_tasks(db, &tasks).await;
    let now = T0 + 10_000;
    let mut handles = Vec::new();
    for n in 0..CLAIMERS {
        let db = db.clone();
        handles.push(tokio::spawn(async move {
            let node = format!("node-{n}");
            let mut got = Vec::new();
            while let Some(c) = db.claim_task(&node, now, now + 30_000).await.unwrap() {
                assert_eq!(c.task.lease_owner.as_deref(), Some(node.as_str()));
                got.push(c);
                tokio::task::yield_now().await;
            }
            got
        }));
    }
    let mut claimed = Vec::new();
    let mut per_claimer = Vec::new();
    for h in handles {
        let got = h.await.unwrap();
        per_claimer.push(got.len());
        claimed.extend(got);
    }
    let unique: HashSet<&str> = claimed.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(
        claimed.len(),
        TASKS as usize,
        "claims per claimer: {per_claimer:?}"
    );
    assert_eq!(
        unique.len(),
        TASKS as usize,
        "a task was claimed twice: {per_claimer:?}"
    );
    for c in &claimed {
        let t = db.get_task(&c.task.id).await.unwrap().unwrap();
        assert_eq!(
            (t.epoch, t.attempts),
            (1, 1),
            "{} was claimed more than once",
            t.id
        );
        assert_eq!(t.lease_owner.as_deref(), Some(c.node.as_str()));
        assert!(
            db.finish_task(&t.id, &c.node, c.epoch, "Success", "", false, now + 1)
                .await
                .unwrap()
        );
    }
    eprintln!(
        "store contract on {:?}: concurrent claims per claimer {per_claimer:?}",
        db.backend()
    );
}

async fn leases_and_fencing(db: &Db) {
    // The task ran before (epoch 4): whoever claimed it then holds a stale fencing token.
    let mut t = task("ServerTasks-200", 200, T0);
    t.epoch = 4;
    t.attempts = 4;
    insert_tasks(db, &[t]).await;
    let now = T0 + 20_000;
    let c = db
        .claim_task("node-a", now, now + 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.epoch, c.task.attempts), (5, 5));
    let id = "ServerTasks-200";

    assert_eq!(
        db.renew_lease(id, "node-a", 5, now + 500, now + 2_000)
            .await
            .unwrap(),
        Some(("Executing".to_string(), false))
    );
    let row = db.get_task(id).await.unwrap().unwrap();
    assert_eq!(
        (row.lease_expires_at, row.last_updated),
        (Some(now + 2_000), now + 500)
    );
    // Fenced: the stale epoch, another node, or an unknown task renew nothing.
    assert_eq!(
        db.renew_lease(id, "node-a", 4, now + 600, now + 9_000)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.renew_lease(id, "node-b", 5, now + 600, now + 9_000)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.renew_lease("ServerTasks-404", "node-a", 5, now, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.get_task(id).await.unwrap().unwrap().lease_expires_at,
        Some(now + 2_000)
    );
    // Fenced finish: nothing changes.
    assert!(
        !db.finish_task(id, "node-a", 4, "Failed", "stale", true, now + 700)
            .await
            .unwrap()
    );
    assert!(
        !db.finish_task(id, "node-b", 5, "Failed", "other", true, now + 700)
            .await
            .unwrap()
    );
    assert_eq!(db.get_task(id).await.unwrap().unwrap().state, "Executing");

    assert!(
        db.finish_task(id, "node-a", 5, "Failed", "It broke", true, now + 800)
            .await
            .unwrap()
    );
    let done = db.get_task(id).await.unwrap().unwrap();
    assert_eq!(done.state, "Failed");
    assert_eq!(done.error_message, "It broke");
    assert_eq!(done.has_warnings_or_errors, 1);
    assert_eq!(
        (done.completed_time, done.last_updated),
        (Some(now + 800), now + 800)
    );
    assert_eq!((done.lease_owner, done.lease_expires_at), (None, None));
    assert_eq!(done.epoch, 5, "finishing keeps the epoch");
    // A finished task cannot be finished or renewed again, even by its last holder.
    assert!(
        !db.finish_task(id, "node-a", 5, "Success", "", false, now + 900)
            .await
            .unwrap()
    );
    assert_eq!(
        db.renew_lease(id, "node-a", 5, now + 900, now + 9_000)
            .await
            .unwrap(),
        None
    );

    // Success without warnings stores 0.
    insert_tasks(db, &[task("ServerTasks-201", 201, T0)]).await;
    let c = db
        .claim_task("node-b", now, now + 1_000)
        .await
        .unwrap()
        .unwrap();
    assert!(
        db.finish_task(&c.task.id, "node-b", c.epoch, "Success", "", false, now + 1)
            .await
            .unwrap()
    );
    assert_eq!(
        db.get_task(&c.task.id)
            .await
            .unwrap()
            .unwrap()
            .has_warnings_or_errors,
        0
    );
}

async fn cancellation(db: &Db) {
    let now = T0 + 30_000;
    insert_tasks(
        db,
        &[
            task("ServerTasks-300", 300, now + 60_000),
            task("ServerTasks-301", 301, T0),
        ],
    )
    .await;
    let running = db
        .claim_task("node-a", now, now + 5_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running.task.id, "ServerTasks-301");

    let mut tx = db.begin().await.unwrap();
    // Queued: canceled at once, never claimed.
    let queued = tx
        .request_cancel("ServerTasks-300", now + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queued.state, "Canceled");
    assert_eq!(queued.cancel_requested, 1);
    assert_eq!(queued.completed_time, Some(now + 1));
    assert_eq!(queued.last_updated, now + 1);
    assert!(!queued.error_message.is_empty());
    // Executing: asked to stop; it keeps its lease until its executor finishes it.
    let executing = tx
        .request_cancel("ServerTasks-301", now + 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(executing.state, "Cancelling");
    assert_eq!(executing.cancel_requested, 1);
    assert_eq!(executing.completed_time, None);
    assert_eq!(executing.lease_owner.as_deref(), Some("node-a"));
    assert!(
        tx.request_cancel("ServerTasks-404", now)
            .await
            .unwrap()
            .is_none()
    );
    tx.commit().await.unwrap();

    assert!(
        db.claim_task("node-b", now + 120_000, now + 130_000)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        db.renew_lease(
            "ServerTasks-301",
            "node-a",
            running.epoch,
            now + 3,
            now + 6_000
        )
        .await
        .unwrap(),
        Some(("Cancelling".to_string(), true))
    );
    assert!(
        db.finish_task(
            "ServerTasks-301",
            "node-a",
            running.epoch,
            "Canceled",
            "Canceled by user",
            false,
            now + 4
        )
        .await
        .unwrap()
    );
    let ended = db.get_task("ServerTasks-301").await.unwrap().unwrap();
    assert_eq!(
        (ended.state.as_str(), ended.completed_time),
        ("Canceled", Some(now + 4))
    );

    // A finished task stays as it is.
    let mut tx = db.begin().await.unwrap();
    let after = tx
        .request_cancel("ServerTasks-301", now + 9)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(after, ended);
}

async fn orphans(db: &Db) {
    let now = T0 + 40_000;
    let executing = |id: &str, seq: i64, state: &str, owner: Option<&str>, lease: Option<i64>| {
        let mut t = task(id, seq, T0);
        t.state = state.into();
        t.lease_owner = owner.map(str::to_string);
        t.lease_expires_at = lease;
        t.epoch = 1;
        t.attempts = 1;
        t.start_time = Some(T0);
        t
    };
    insert_tasks(
        db,
        &[
            executing(
                "ServerTasks-410",
                400,
                "Executing",
                Some("node-a"),
                Some(now + 60_000),
            ),
            executing(
                "ServerTasks-411",
                401,
                "Cancelling",
                Some("node-a"),
                Some(now + 60_000),
            ),
            executing(
                "ServerTasks-412",
                402,
                "Executing",
                Some("node-b"),
                Some(now - 1),
            ),
            executing(
                "ServerTasks-413",
                403,
                "Executing",
                Some("node-b"),
                Some(now + 60_000),
            ),
            executing(
                "ServerTasks-414",
                404,
                "Executing",
                Some("node-c"),
                Some(now),
            ),
            task("ServerTasks-415", 415, now + 3_600_000),
        ],
    )
    .await;
    // node-a restarts: its own tasks end, and so do tasks whose lease has expired.
    let reason = "node-a restarted";
    let mut ended = db
        .fail_orphaned_tasks(Some("node-a"), now, reason)
        .await
        .unwrap();
    ended.sort_by_key(|t| t.seq);
    assert_eq!(
        task_ids(&ended),
        v(&["ServerTasks-410", "ServerTasks-411", "ServerTasks-412"])
    );
    let states: Vec<&str> = ended.iter().map(|t| t.state.as_str()).collect();
    assert_eq!(
        states,
        ["Failed", "Canceled", "Failed"],
        "a cancelling task ends as canceled"
    );
    for t in &ended {
        assert_eq!(t.error_message, reason);
        assert_eq!(t.has_warnings_or_errors, 1);
        assert_eq!((t.completed_time, t.last_updated), (Some(now), now));
        assert_eq!((t.lease_owner.as_deref(), t.lease_expires_at), (None, None));
        assert_eq!(
            db.get_task(&t.id).await.unwrap().as_ref(),
            Some(t),
            "returned as stored"
        );
    }
    // A live lease of another node, and a lease that ends exactly now, are left alone.
    assert_eq!(
        db.get_task("ServerTasks-413").await.unwrap().unwrap().state,
        "Executing"
    );
    assert_eq!(
        db.get_task("ServerTasks-414").await.unwrap().unwrap().state,
        "Executing"
    );
    assert_eq!(
        db.get_task("ServerTasks-415").await.unwrap().unwrap().state,
        "Queued"
    );
    // The reaper (no node) ends only expired leases.
    assert!(
        db.fail_orphaned_tasks(None, now, "reaped")
            .await
            .unwrap()
            .is_empty()
    );
    let reaped = db
        .fail_orphaned_tasks(None, now + 60_001, "reaped")
        .await
        .unwrap();
    let reaped: HashSet<String> = task_ids(&reaped).into_iter().collect();
    let expected: HashSet<String> = v(&["ServerTasks-413", "ServerTasks-414"])
        .into_iter()
        .collect();
    assert_eq!(reaped, expected);
    assert!(
        db.fail_orphaned_tasks(Some("node-b"), now + 60_002, "again")
            .await
            .unwrap()
            .is_empty()
    );

    let mut tx = db.begin().await.unwrap();
    tx.request_cancel("ServerTasks-415", now).await.unwrap();
    tx.commit().await.unwrap();
    let active = db
        .list_tasks(&TaskQuery {
            active_only: true,
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        active.1,
        0,
        "the queue is empty after the task sections: {:?}",
        task_ids(&active.0)
    );
}

async fn task_log(db: &Db) {
    let id = "ServerTasks-500";
    let activity =
        |aid: &str, parent: Option<&str>, name: &str, status: &str, sort: i64| ActivityRow {
            task_id: id.to_string(),
            activity_id: aid.to_string(),
            parent_id: parent.map(str::to_string),
            name: name.to_string(),
            status: status.to_string(),
            started: Some(T0 + sort),
            ended: None,
            sort_order: sort,
        };
    let line = |aid: &str, n: i64, category: &str| NewLogLine {
        activity_id: aid.to_string(),
        occurred_at: T0 + n,
        category: category.to_string(),
        message: format!("line {n}: ✓ 'quoted'\ttabbed"),
    };
    assert!(db.task_activities(id).await.unwrap().is_empty());
    assert!(db.task_log(id, 0, 100).await.unwrap().is_empty());

    let root = activity("ServerTasks-500_0", None, "Deploy", "Running", 0);
    let step2 = activity(
        "ServerTasks-500_2",
        Some("ServerTasks-500_0"),
        "Step 2",
        "Pending",
        2,
    );
    let step1 = activity(
        "ServerTasks-500_1",
        Some("ServerTasks-500_0"),
        "Step 1",
        "Running",
        1,
    );
    db.write_task_log(
        id,
        &[root.clone(), step2.clone(), step1.clone()],
        &[
            line("ServerTasks-500_1", 1, "Info"),
            line("ServerTasks-500_1", 2, "Verbose"),
        ],
    )
    .await
    .unwrap();
    // Another task's log stays apart.
    db.write_task_log(
        "ServerTasks-501",
        &[ActivityRow {
            task_id: "ServerTasks-501".into(),
            ..root.clone()
        }],
        &[line("ServerTasks-500_0", 9, "Info")],
    )
    .await
    .unwrap();
    assert_eq!(
        db.task_activities(id).await.unwrap(),
        vec![root.clone(), step1.clone(), step2.clone()]
    );

    // Activities are upserted: a second write changes status, times and name, never duplicates.
    let mut step1_done = step1.clone();
    step1_done.status = "Success".into();
    step1_done.ended = Some(T0 + 50);
    step1_done.name = "Step 1 (renamed)".into();
    let lines: Vec<NewLogLine> = (3..=12)
        .map(|n| line("ServerTasks-500_2", n, "Info"))
        .collect();
    db.write_task_log(id, &[step1_done.clone()], &lines)
        .await
        .unwrap();
    db.write_task_log(id, &[], &[line("ServerTasks-500_2", 13, "Error")])
        .await
        .unwrap();
    assert_eq!(
        db.task_activities(id).await.unwrap(),
        vec![root.clone(), step1_done.clone(), step2.clone()]
    );

    let all = db.task_log(id, 0, 1000).await.unwrap();
    assert_eq!(all.len(), 13);
    let messages: Vec<i64> = all.iter().map(|l| l.occurred_at - T0).collect();
    assert_eq!(messages, (1..=13).collect::<Vec<_>>(), "oldest first");
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    assert!(all.iter().all(|l| l.task_id == id));
    assert_eq!(all[0].category, "Info");
    assert_eq!(all[0].activity_id, "ServerTasks-500_1");
    assert_eq!(all[0].message, "line 1: ✓ 'quoted'\ttabbed");
    assert_eq!(all[12].category, "Error");
    // Paging by the last id seen.
    let page1 = db.task_log(id, 0, 5).await.unwrap();
    let page2 = db.task_log(id, page1[4].id, 5).await.unwrap();
    let page3 = db.task_log(id, page2[4].id, 5).await.unwrap();
    assert_eq!((page1.len(), page2.len(), page3.len()), (5, 5, 3));
    assert_eq!([page1, page2, page3].concat(), all);
    assert!(db.task_log(id, all[12].id, 5).await.unwrap().is_empty());

    // Closing: running and pending activities end with the given status; finished ones stay.
    db.close_open_activities(id, "Failed", T0 + 99)
        .await
        .unwrap();
    let closed = db.task_activities(id).await.unwrap();
    let by_id: BTreeMap<&str, &ActivityRow> =
        closed.iter().map(|a| (a.activity_id.as_str(), a)).collect();
    assert_eq!(
        (
            by_id["ServerTasks-500_0"].status.as_str(),
            by_id["ServerTasks-500_0"].ended
        ),
        ("Failed", Some(T0 + 99))
    );
    assert_eq!(
        (
            by_id["ServerTasks-500_2"].status.as_str(),
            by_id["ServerTasks-500_2"].ended
        ),
        ("Failed", Some(T0 + 99))
    );
    assert_eq!(by_id["ServerTasks-500_1"], &step1_done);
    let other = db.task_activities("ServerTasks-501").await.unwrap();
    assert_eq!(
        other[0].status, "Running",
        "another task's activities are untouched"
    );
}

async fn task_deletion(db: &Db) {
    insert_tasks(
        db,
        &[
            task("ServerTasks-700", 700, T0),
            task("ServerTasks-701", 701, T0),
        ],
    )
    .await;
    for id in ["ServerTasks-700", "ServerTasks-701"] {
        db.write_task_log(
            id,
            &[ActivityRow {
                task_id: id.to_string(),
                activity_id: format!("{id}_0"),
                parent_id: None,
                name: "Deploy".into(),
                status: "Success".into(),
                started: Some(T0),
                ended: Some(T0 + 1),
                sort_order: 0,
            }],
            &[NewLogLine {
                activity_id: format!("{id}_0"),
                occurred_at: T0,
                category: "Info".into(),
                message: format!("log of {id}"),
            }],
        )
        .await
        .unwrap();
    }
    // A rolled-back deletion leaves everything.
    let mut tx = db.begin().await.unwrap();
    assert!(tx.delete_task("ServerTasks-700").await.unwrap());
    tx.rollback().await.unwrap();
    assert!(db.get_task("ServerTasks-700").await.unwrap().is_some());
    assert_eq!(
        db.task_log("ServerTasks-700", 0, 10).await.unwrap().len(),
        1
    );

    let mut tx = db.begin().await.unwrap();
    assert!(tx.delete_task("ServerTasks-700").await.unwrap());
    assert!(
        !tx.delete_task("ServerTasks-700").await.unwrap(),
        "already gone"
    );
    tx.commit().await.unwrap();
    assert!(db.get_task("ServerTasks-700").await.unwrap().is_none());
    assert!(
        db.task_log("ServerTasks-700", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.task_activities("ServerTasks-700")
            .await
            .unwrap()
            .is_empty()
    );
    // The other task is untouched.
    assert!(db.get_task("ServerTasks-701").await.unwrap().is_some());
    assert_eq!(
        db.task_log("ServerTasks-701", 0, 10).await.unwrap().len(),
        1
    );
    assert_eq!(
        db.task_activities("ServerTasks-701").await.unwrap().len(),
        1
    );
    // Leave no queued task for the sections after this one.
    let mut tx = db.begin().await.unwrap();
    assert!(tx.delete_task("ServerTasks-701").await.unwrap());
    tx.commit().await.unwrap();
}

async fn events(db: &Db) {
    let before = db.list_events(&EventQuery::default()).await.unwrap().1;
    assert_eq!(before, 0, "the failed transaction earlier left no event");
    let e1 = db
        .insert_event(&event(
            "Spaces-1",
            "Created",
            "Users-1",
            &["Projects-1"],
            T0 + 1,
        ))
        .await
        .unwrap();
    let e2 = db
        .insert_event(&event(
            "Spaces-1",
            "Modified",
            "Users-2",
            &["Projects-11", "Releases-1"],
            T0 + 2,
        ))
        .await
        .unwrap();
    let e3 = db
        .insert_event(&event("", "Login", "Users-1", &[], T0 + 3))
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    let e4 = tx
        .insert_event(&event(
            "Spaces-2",
            "Created",
            "Users-2",
            &["Releases-1", "Projects-1"],
            T0 + 4,
        ))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Ids come from the Events sequence.
    assert_eq!(
        [&e1, &e2, &e3, &e4].map(|s| s.as_str()),
        ["Events-1", "Events-2", "Events-3", "Events-4"]
    );
    // An event in a rolled-back transaction is gone, and so is its sequence step.
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        tx.insert_event(&event("Spaces-1", "Deleted", "Users-1", &[], T0))
            .await
            .unwrap(),
        "Events-5"
    );
    tx.rollback().await.unwrap();
    assert_eq!(db.get_event("Events-5").await.unwrap(), None);

    let got = db.get_event(&e2).await.unwrap().unwrap();
    let expected = EventRow {
        id: e2.clone(),
        seq: 2,
        ..event(
            "Spaces-1",
            "Modified",
            "Users-2",
            &["Projects-11", "Releases-1"],
            T0 + 2,
        )
    };
    assert_eq!(got, expected);
    assert_eq!(db.get_event("Events-404").await.unwrap(), None);

    let list = |q: EventQuery| async move {
        let (rows, total) = db.list_events(&q).await.unwrap();
        (ids(&rows, |e| e.id.clone()), total)
    };
    assert_eq!(
        list(EventQuery::default()).await,
        (v(&["Events-4", "Events-3", "Events-2", "Events-1"]), 4)
    );
    // A space's events include those of no space (such as logins).
    let space1 = EventQuery {
        space_id: Some("Spaces-1".into()),
        ..EventQuery::default()
    };
    assert_eq!(
        list(space1).await.0,
        v(&["Events-3", "Events-2", "Events-1"])
    );
    // "Regarding" matches whole ids only: Projects-1 is not Projects-11.
    let regarding = |r: &str| EventQuery {
        regarding: Some(r.into()),
        ..EventQuery::default()
    };
    assert_eq!(
        list(regarding("Projects-1")).await.0,
        v(&["Events-4", "Events-1"])
    );
    assert_eq!(
        list(regarding("Releases-1")).await.0,
        v(&["Events-4", "Events-2"])
    );
    assert_eq!(list(regarding("Projects-%")).await.0, Vec::<String>::new());
    assert_eq!(list(regarding("Projects")).await.0, Vec::<String>::new());
    let category = EventQuery {
        category: Some("Created".into()),
        ..EventQuery::default()
    };
    assert_eq!(list(category).await.0, v(&["Events-4", "Events-1"]));
    let by_user = EventQuery {
        user_id: Some("Users-2".into()),
        ..EventQuery::default()
    };
    assert_eq!(list(by_user).await.0, v(&["Events-4", "Events-2"]));
    let combined = EventQuery {
        space_id: Some("Spaces-1".into()),
        user_id: Some("Users-1".into()),
        skip: 1,
        take: Some(1),
        ..EventQuery::default()
    };
    assert_eq!(list(combined).await, (v(&["Events-1"]), 2));
    let paged = EventQuery {
        skip: 3,
        take: Some(10),
        ..EventQuery::default()
    };
    assert_eq!(list(paged).await, (v(&["Events-1"]), 4));
    let counted = EventQuery {
        take: Some(0),
        ..EventQuery::default()
    };
    assert_eq!(list(counted).await, (vec![], 4));
}

async fn users_and_api_keys(db: &Db) {
    assert!(db.list_users().await.unwrap().is_empty());
    let admin = user("Users-1", "Admin", T0 + 10);
    let mut service = user("Users-2", "deploy-bot", T0 + 5);
    service.is_service = 1;
    service.password_hash = None;
    let mut inactive = user("Users-3", "Former", T0 + 10);
    inactive.is_active = 0;
    let key = ApiKeyRow {
        id: "APIKeys-1".into(),
        user_id: "Users-1".into(),
        key_hash: "hash-of-admin-key".into(),
        purpose: "CLI".into(),
        created_at: T0 + 11,
        expires_at: None,
    };
    let expiring = ApiKeyRow {
        id: "APIKeys-2".into(),
        user_id: "Users-2".into(),
        key_hash: "hash-of-bot-key".into(),
        purpose: "CI".into(),
        created_at: T0 + 12,
        expires_at: Some(T0 + 86_400_000),
    };

    let mut tx = db.begin().await.unwrap();
    tx.insert_user(&admin).await.unwrap();
    assert_eq!(
        tx.find_user_by_username("ADMIN").await.unwrap().as_ref(),
        Some(&admin)
    );
    assert_eq!(tx.find_user_by_username("nobody").await.unwrap(), None);
    tx.insert_user(&service).await.unwrap();
    tx.insert_user(&inactive).await.unwrap();
    tx.insert_api_key(&key).await.unwrap();
    tx.insert_api_key(&expiring).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(
        db.get_user("Users-2").await.unwrap().as_ref(),
        Some(&service)
    );
    assert_eq!(db.get_user("Users-404").await.unwrap(), None);
    assert_eq!(
        db.find_user_by_username(" admin ").await.unwrap().as_ref(),
        Some(&admin)
    );
    assert_eq!(
        db.find_user_by_username("Deploy-Bot")
            .await
            .unwrap()
            .as_ref(),
        Some(&service)
    );
    assert_eq!(db.find_user_by_username("nobody").await.unwrap(), None);
    // Ordered by creation time, then id.
    assert_eq!(
        ids(&db.list_users().await.unwrap(), |u| u.id.clone()),
        v(&["Users-2", "Users-1", "Users-3"])
    );

    assert_eq!(
        db.find_api_key("hash-of-admin-key").await.unwrap(),
        Some((key.clone(), admin.clone()))
    );
    assert_eq!(
        db.find_api_key("hash-of-bot-key").await.unwrap(),
        Some((expiring.clone(), service.clone()))
    );
    assert_eq!(db.find_api_key("hash-of-nothing").await.unwrap(), None);

    // Usernames are unique in any case; key hashes are unique. A conflict writes nothing.
    let mut tx = db.begin().await.unwrap();
    assert!(matches!(
        tx.insert_user(&user("Users-4", "ADMIN", T0)).await,
        Err(StoreError::Conflict)
    ));
    tx.rollback().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    tx.insert_user(&user("Users-5", "someone", T0))
        .await
        .unwrap();
    let dup_key = ApiKeyRow {
        id: "APIKeys-3".into(),
        user_id: "Users-5".into(),
        ..key.clone()
    };
    assert!(matches!(
        tx.insert_api_key(&dup_key).await,
        Err(StoreError::Conflict)
    ));
    tx.rollback().await.unwrap();
    assert_eq!(db.get_user("Users-5").await.unwrap(), None);
    assert_eq!(db.list_users().await.unwrap().len(), 3);
    // A key whose user is gone is not found (no dangling principal).
    let mut tx = db.begin().await.unwrap();
    tx.insert_api_key(&ApiKeyRow {
        id: "APIKeys-4".into(),
        user_id: "Users-404".into(),
        key_hash: "orphan".into(),
        ..key.clone()
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(db.find_api_key("orphan").await.unwrap(), None);
}

// ---- packages and build information -------------------------------------------------------

fn package(space: &str, id: &str, version: &str, sha: char, published: i64) -> PackageRow {
    let v = Version::parse(version).unwrap();
    let mut p = PackageRow::keyed(space, "feeds-builtin", id, version, &v);
    p.sha256 = sha.to_string().repeat(64);
    p.sha1 = sha.to_string().repeat(40);
    p.size_bytes = 1234;
    p.file_extension = ".zip".to_string();
    p.title = "Tïtle ✓".to_string();
    p.release_notes = "notes 'quoted'".to_string();
    p.published = published;
    p
}

fn pkg_list(rows: &[PackageRow]) -> Vec<String> {
    ids(rows, |p| {
        format!("{}/{} {}", p.space_id, p.package_id, p.version)
    })
}

async fn packages(db: &Db) {
    let rows = [
        package("Spaces-1", "Acme.Web", "1.9.0", 'a', T0 + 1),
        package("Spaces-1", "Acme.Web", "1.10.0", 'b', T0 + 2),
        package("Spaces-1", "Acme.Web", "1.10.0-rc.2", 'c', T0 + 3),
        package("Spaces-1", "Acme.Web", "1.10.0-rc.10", 'c', T0 + 4),
        package("Spaces-1", "acme_web", "2.0.0", 'd', T0 + 5),
        package("Spaces-1", "Acme-Web", "0.1.0", 'd', T0 + 6),
        package("Spaces-1", "Zeta", "1.0.0-Beta", 'e', T0 + 7),
        package("Spaces-1", "zeta", "1.0.0-alpha", 'e', T0 + 8),
        package("Spaces-2", "Acme.Web", "3.0.0", 'f', T0 + 9),
    ];
    let mut tx = db.begin().await.unwrap();
    for r in &rows {
        tx.insert_package(r).await.unwrap();
    }
    tx.commit().await.unwrap();

    // The same id and version in another spelling is the same package.
    for (id, version) in [
        ("acme.web", "1.9"),
        ("ACME.WEB", "1.9.0.0"),
        ("Acme.Web", "1.9.0+meta"),
    ] {
        let mut tx = db.begin().await.unwrap();
        let dup = package("Spaces-1", id, version, 'z', T0);
        assert!(
            matches!(tx.insert_package(&dup).await, Err(StoreError::Conflict)),
            "{id} {version}"
        );
        tx.rollback().await.unwrap();
    }
    // A rolled-back insert leaves nothing.
    let mut tx = db.begin().await.unwrap();
    tx.insert_package(&package("Spaces-1", "Gone", "1.0.0", 'g', T0))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        db.get_package("Spaces-1", "packages-Gone.1.0.0")
            .await
            .unwrap(),
        None
    );

    // Get by id (exact, within the space) and find by keys.
    let got = db
        .get_package("Spaces-1", "packages-Acme.Web.1.10.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, rows[1]);
    assert_eq!(
        db.get_package("Spaces-2", "packages-Acme.Web.1.10.0")
            .await
            .unwrap(),
        None
    );
    let ten = Version::parse("1.10").unwrap();
    let found = db
        .find_package("Spaces-1", &package_key("ACME.web"), &version_key(&ten))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, "packages-Acme.Web.1.10.0");
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        tx.find_package("Spaces-1", "acme.web", "1.10.0")
            .await
            .unwrap(),
        Some(rows[1].clone())
    );
    tx.rollback().await.unwrap();

    // Order: id key (byte order: '-' < '.' < '_'), then version descending by the domain's
    // rules (1.10.0 > 1.10.0-rc.10 > 1.10.0-rc.2 > 1.9.0); the same on both backends.
    let list = |q: PackageQuery| async move {
        let (rows, total) = db.list_packages(&q).await.unwrap();
        (pkg_list(&rows), total)
    };
    let space1 = PackageQuery {
        space_id: Some("Spaces-1".into()),
        ..PackageQuery::default()
    };
    assert_eq!(
        list(space1.clone()).await,
        (
            v(&[
                "Spaces-1/Acme-Web 0.1.0",
                "Spaces-1/Acme.Web 1.10.0",
                "Spaces-1/Acme.Web 1.10.0-rc.10",
                "Spaces-1/Acme.Web 1.10.0-rc.2",
                "Spaces-1/Acme.Web 1.9.0",
                "Spaces-1/acme_web 2.0.0",
                "Spaces-1/Zeta 1.0.0-Beta",
                "Spaces-1/zeta 1.0.0-alpha",
            ]),
            8
        )
    );
    assert_eq!(list(PackageQuery::default()).await.1, 9);
    assert_eq!(
        list(PackageQuery {
            latest_only: true,
            ..space1.clone()
        })
        .await
        .0,
        v(&[
            "Spaces-1/Acme-Web 0.1.0",
            "Spaces-1/Acme.Web 1.10.0",
            "Spaces-1/acme_web 2.0.0",
            "Spaces-1/Zeta 1.0.0-Beta",
        ])
    );
    // Latest among what the other filters keep.
    assert_eq!(
        list(PackageQuery {
            latest_only: true,
            version_filter: Some("RC".into()),
            ..space1.clone()
        })
        .await
        .0,
        v(&["Spaces-1/Acme.Web 1.10.0-rc.10"])
    );
    assert_eq!(
        list(PackageQuery {
            latest_only: true,
            exclude_pre_release: true,
            ..space1.clone()
        })
        .await,
        (
            v(&[
                "Spaces-1/Acme-Web 0.1.0",
                "Spaces-1/Acme.Web 1.10.0",
                "Spaces-1/acme_web 2.0.0",
            ]),
            3
        )
    );
    // Exact id, case-insensitive; substring filters with LIKE's characters taken literally.
    assert_eq!(
        list(PackageQuery {
            package_id: Some("ZETA".into()),
            ..PackageQuery::default()
        })
        .await
        .1,
        2
    );
    assert_eq!(
        list(PackageQuery {
            filter: Some("ACME.".into()),
            ..space1.clone()
        })
        .await
        .1,
        4
    );
    assert_eq!(
        list(PackageQuery {
            filter: Some("e_w".into()),
            ..PackageQuery::default()
        })
        .await
        .0,
        v(&["Spaces-1/acme_web 2.0.0"])
    );
    assert_eq!(
        list(PackageQuery {
            filter: Some("%".into()),
            ..PackageQuery::default()
        })
        .await
        .1,
        0
    );
    // Paging, and counting only.
    assert_eq!(
        list(PackageQuery {
            skip: 2,
            take: Some(2),
            ..space1.clone()
        })
        .await,
        (
            v(&[
                "Spaces-1/Acme.Web 1.10.0-rc.10",
                "Spaces-1/Acme.Web 1.10.0-rc.2"
            ]),
            8
        )
    );
    assert_eq!(
        list(PackageQuery {
            skip: 7,
            ..space1.clone()
        })
        .await
        .0,
        v(&["Spaces-1/zeta 1.0.0-alpha"])
    );
    assert_eq!(
        list(PackageQuery {
            take: Some(0),
            ..space1.clone()
        })
        .await,
        (vec![], 8)
    );

    // Blob references count across spaces.
    assert_eq!(
        db.count_package_blob_refs(&"c".repeat(64)).await.unwrap(),
        2
    );
    assert_eq!(
        db.count_package_blob_refs(&"0".repeat(64)).await.unwrap(),
        0
    );
    assert_eq!(
        db.package_blob_addresses().await.unwrap(),
        ['a', 'b', 'c', 'd', 'e', 'f']
            .map(|c| c.to_string().repeat(64))
            .to_vec()
    );

    // Replace (overwrite): the file and the spelling change, the keys stay.
    let mut replaced = package("Spaces-1", "ACME.WEB", "1.9", 'h', T0 + 50);
    replaced.title = "new".into();
    let mut tx = db.begin().await.unwrap();
    assert!(tx.replace_package(&replaced).await.unwrap());
    assert_eq!(
        tx.count_package_blob_refs(&"a".repeat(64)).await.unwrap(),
        0
    );
    tx.commit().await.unwrap();
    let got = db
        .find_package("Spaces-1", "acme.web", "1.9.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, replaced);
    assert_eq!(got.id, "packages-ACME.WEB.1.9");
    let mut tx = db.begin().await.unwrap();
    let missing = package("Spaces-1", "Nope", "1.0.0", 'h', T0);
    assert!(!tx.replace_package(&missing).await.unwrap());
    tx.rollback().await.unwrap();

    // Delete returns the row; a second delete finds nothing.
    let mut tx = db.begin().await.unwrap();
    let gone = tx
        .delete_package("Spaces-1", "packages-Acme.Web.1.10.0-rc.2")
        .await
        .unwrap();
    assert_eq!(gone, Some(rows[2].clone()));
    assert_eq!(
        tx.count_package_blob_refs(&"c".repeat(64)).await.unwrap(),
        1
    );
    assert_eq!(
        tx.delete_package("Spaces-1", "packages-Acme.Web.1.10.0-rc.2")
            .await
            .unwrap(),
        None
    );
    tx.commit().await.unwrap();
    assert_eq!(
        db.count_package_blob_refs(&"c".repeat(64)).await.unwrap(),
        1
    );
    assert_eq!(list(space1).await.1, 7);

    // The sort key column orders exactly as the domain's versions do.
    let mut versions = [
        "2.0",
        "1.0.0-b",
        "1.0.0-B.2",
        "1.0.0",
        "10.0.0",
        "1.0.0-2",
        "1.0.0-a.b",
    ]
    .map(|s| Version::parse(s).unwrap())
    .to_vec();
    let mut keys: Vec<String> = versions.iter().map(version_sort_key).collect();
    versions.sort();
    keys.sort();
    assert_eq!(
        keys,
        versions.iter().map(version_sort_key).collect::<Vec<_>>()
    );
}

/// Two transactions insert the same package at once: one wins, the other is `Conflict` (on
/// PostgreSQL at its insert, once the first commits).
async fn concurrent_package_inserts(db: &Db) {
    let attempt = |sha: char| {
        let db = db.clone();
        async move {
            let mut tx = db.begin().await?;
            tx.insert_package(&package("Spaces-3", "Race", "1.0.0", sha, T0))
                .await?;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            tx.commit().await
        }
    };
    let (a, b) = tokio::join!(tokio::spawn(attempt('1')), tokio::spawn(attempt('2')));
    let results = [a.unwrap(), b.unwrap()];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(StoreError::Conflict))),
        "{results:?}"
    );
    let (rows, total) = db
        .list_packages(&PackageQuery {
            space_id: Some("Spaces-3".into()),
            ..PackageQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 1, "{rows:?}");
}

fn build_info(space: &str, id: &str, version: &str, seq: i64) -> BuildInfoRow {
    let v = Version::parse(version).unwrap();
    BuildInfoRow {
        id: format!("BuildInformation-{seq}"),
        seq,
        space_id: space.to_string(),
        package_id: id.to_string(),
        package_key: package_key(id),
        version: version.to_string(),
        version_key: version_key(&v),
        version_sort: version_sort_key(&v),
        body: json!({"Branch": "main", "Commits": [{"Id": "abc", "Comment": "ünïcode ✓"}]})
            .to_string(),
        created: T0 + seq,
        updated: T0 + seq,
    }
}

async fn build_information(db: &Db) {
    let rows = [
        build_info("Spaces-1", "Hello", "1.0.0", 1),
        build_info("Spaces-1", "Hello", "1.10.0", 2),
        build_info("Spaces-1", "Hello", "1.2.0", 3),
        build_info("Spaces-1", "Other", "0.1.0", 4),
        build_info("Spaces-2", "Hello", "9.0.0", 5),
    ];
    let mut tx = db.begin().await.unwrap();
    for r in &rows {
        tx.insert_build_information(r).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    assert!(matches!(
        tx.insert_build_information(&build_info("Spaces-1", "HELLO", "1.0", 9))
            .await,
        Err(StoreError::Conflict)
    ));
    tx.rollback().await.unwrap();

    assert_eq!(
        db.get_build_information("Spaces-1", "BuildInformation-2")
            .await
            .unwrap(),
        Some(rows[1].clone())
    );
    assert_eq!(
        db.get_build_information("Spaces-2", "BuildInformation-2")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.find_build_information("Spaces-1", "hello", "1.2.0")
            .await
            .unwrap(),
        Some(rows[2].clone())
    );
    let list = |q: BuildInfoQuery| async move {
        let (rows, total) = db.list_build_information(&q).await.unwrap();
        (ids(&rows, |b| b.id.clone()), total)
    };
    let space1 = BuildInfoQuery {
        space_id: Some("Spaces-1".into()),
        ..BuildInfoQuery::default()
    };
    assert_eq!(
        list(space1.clone()).await,
        (
            v(&[
                "BuildInformation-2",
                "BuildInformation-3",
                "BuildInformation-1",
                "BuildInformation-4"
            ]),
            4
        )
    );
    assert_eq!(
        list(BuildInfoQuery {
            latest_only: true,
            ..space1.clone()
        })
        .await
        .0,
        v(&["BuildInformation-2", "BuildInformation-4"])
    );
    assert_eq!(
        list(BuildInfoQuery {
            package_id: Some("hello".into()),
            skip: 1,
            take: Some(1),
            ..BuildInfoQuery::default()
        })
        .await,
        // Spaces-2's 9.0.0 comes first.
        (v(&["BuildInformation-2"]), 4)
    );
    assert_eq!(
        list(BuildInfoQuery {
            filter: Some("THE".into()),
            ..BuildInfoQuery::default()
        })
        .await
        .0,
        v(&["BuildInformation-4"])
    );

    let mut tx = db.begin().await.unwrap();
    let mut changed = tx
        .find_build_information("Spaces-1", "hello", "1.0.0")
        .await
        .unwrap()
        .unwrap();
    changed.body = json!({"Branch": "release"}).to_string();
    changed.package_id = "HELLO".into();
    changed.updated = T0 + 100;
    assert!(tx.update_build_information(&changed).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        db.get_build_information("Spaces-1", "BuildInformation-1")
            .await
            .unwrap(),
        Some(changed)
    );
    let mut tx = db.begin().await.unwrap();
    assert!(
        !tx.update_build_information(&build_info("Spaces-1", "X", "1.0.0", 77))
            .await
            .unwrap()
    );
    assert_eq!(
        tx.delete_build_information("Spaces-1", "BuildInformation-4")
            .await
            .unwrap(),
        Some(rows[3].clone())
    );
    assert_eq!(
        tx.delete_build_information("Spaces-1", "BuildInformation-4")
            .await
            .unwrap(),
        None
    );
    tx.commit().await.unwrap();
    assert_eq!(list(space1).await.1, 3);
}

// ---- the tests ----------------------------------------------------------------------------

async fn sqlite_db(dir: &tempfile::TempDir) -> Db {
    let url = format!("sqlite://{}", dir.path().join("ferry.db").display());
    let db = Db::open(&url).await.unwrap();
    assert_eq!(db.backend(), Backend::Sqlite);
    db.migrate().await.unwrap();
    db
}

/// The number of rows in `ferry_migrations`, read straight from the pool.
async fn applied_migrations(db: &Db) -> Vec<i64> {
    let sql = "SELECT version FROM ferry_migrations ORDER BY version";
    let rows: Vec<(i64,)> = match db {
        Db::Sqlite { read, .. } => sqlx::query_as(sql).fetch_all(read).await.unwrap(),
        Db::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
    };
    rows.into_iter().map(|r| r.0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    suite(sqlite_db(&dir).await).await;
    // The file holds what the suite wrote after the pools are closed and opened again.
    let db = sqlite_db(&dir).await;
    assert_eq!(
        db.get_meta("installation_id").await.unwrap().as_deref(),
        Some("first")
    );
    assert_eq!(db.list_users().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_postgres() {
    let Some(pg) = PgCluster::start() else { return };
    let db = Db::open(&pg.url("ferry")).await.unwrap();
    assert_eq!(db.backend(), Backend::Postgres);
    db.migrate().await.unwrap();
    suite(db).await;
}

#[tokio::test]
async fn migrating_twice_is_a_noop() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir).await;
    let versions = ferry_store::migration_versions();
    assert_eq!(applied_migrations(&db).await, versions);
    let mut tx = db.begin().await.unwrap();
    tx.init_meta("kept", "yes").await.unwrap();
    tx.commit().await.unwrap();
    db.migrate().await.unwrap();
    db.close().await;
    // A fresh open (as a restarted server does) migrates again: nothing to do, nothing lost.
    let db = sqlite_db(&dir).await;
    assert_eq!(applied_migrations(&db).await, versions);
    assert_eq!(db.get_meta("kept").await.unwrap().as_deref(), Some("yes"));
}

#[tokio::test]
async fn unknown_database_scheme_is_refused() {
    let err = Db::open("mysql://ferry:s3cret@db/ferry").await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::BadUrl(_)), "{msg}");
    assert!(
        msg.contains("sqlite://") && msg.contains("postgres://"),
        "says what is accepted: {msg}"
    );
    assert!(!msg.contains("s3cret"), "the password is not shown: {msg}");
}

/// Two nodes starting at once migrate one PostgreSQL database concurrently through separate
/// pools: the advisory lock makes one wait for the other, and both succeed. Then a third run is a
/// no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_postgres() {
    let Some(pg) = PgCluster::start() else { return };
    for round in 0..3 {
        let name = format!("race_{round}");
        pg.create_database(&name);
        let url = pg.url(&name);
        let (a, b) = tokio::join!(Db::open(&url), Db::open(&url));
        let (a, b) = (a.unwrap(), b.unwrap());
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        ra.unwrap();
        rb.unwrap();
        let versions = ferry_store::migration_versions();
        assert_eq!(applied_migrations(&a).await, versions);
        a.migrate().await.unwrap();
        assert_eq!(applied_migrations(&b).await, versions);
        let mut tx = b.begin().await.unwrap();
        assert_eq!(tx.next_seq("Projects").await.unwrap(), 1);
        tx.commit().await.unwrap();
        a.close().await;
        b.close().await;
    }
}

// ---- the dashboard cells (migration 3) -----------------------------------------------------

fn dash_task(n: i64, env: &str, tenant: Option<&str>, release: &str) -> TaskRow {
    TaskRow {
        project_id: Some("Projects-D".to_string()),
        environment_id: Some(env.to_string()),
        tenant_id: tenant.map(str::to_string),
        deployment_id: Some(format!("Deployments-D{n}")),
        release_id: Some(release.to_string()),
        ..task(&format!("ServerTasks-{n}"), n, T0)
    }
}

fn dash_queued(t: &TaskRow, version: &str) -> DashboardQueued {
    DashboardQueued {
        space_id: "Spaces-1".to_string(),
        project_id: t.project_id.clone().unwrap(),
        environment_id: t.environment_id.clone().unwrap(),
        tenant_id: t.tenant_id.clone().unwrap_or_default(),
        deployment_id: t.deployment_id.clone().unwrap(),
        task_id: t.id.clone(),
        task_seq: t.seq,
        release_id: t.release_id.clone().unwrap(),
        release_version: version.to_string(),
        channel_id: "Channels-D".to_string(),
        created: T0 + t.seq,
    }
}

/// Queues a deployment: its document, its task and its cell in one transaction.
async fn dash_queue(db: &Db, t: &TaskRow, version: &str) {
    let mut tx = db.begin().await.unwrap();
    let mut d = doc(
        "Deployments",
        t.deployment_id.as_deref().unwrap(),
        "Spaces-1",
        "Projects-D",
        t.deployment_id.as_deref().unwrap(),
        t.seq,
    );
    d.ref1 = t.environment_id.clone().unwrap();
    d.ref2 = t.release_id.clone().unwrap();
    tx.insert_doc(&d).await.unwrap();
    tx.insert_task(t).await.unwrap();
    tx.dashboard_deployment_queued(&dash_queued(t, version))
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Claims the next task (which must be `id`) and finishes it with `state`.
async fn dash_run(db: &Db, id: &str, state: &str) {
    let now = T0 + 1_000;
    let c = db
        .claim_task("node-d", now, now + 30_000)
        .await
        .unwrap()
        .expect("a queued task");
    assert_eq!(c.task.id, id, "the dashboard section's tasks run in order");
    assert!(
        db.finish_task(
            id,
            "node-d",
            c.epoch,
            state,
            "",
            state != "Success",
            now + 50
        )
        .await
        .unwrap()
    );
}

async fn dash_cells(db: &Db, tenants: Option<Vec<String>>) -> Vec<DashboardCell> {
    db.dashboard_cells(&DashboardQuery {
        space_id: "Spaces-1".to_string(),
        project_ids: v(&["Projects-D"]),
        environment_ids: Vec::new(),
        tenant_ids: tenants,
    })
    .await
    .unwrap()
}

/// (deployment, state, previous deployment, previous version) of each cell.
fn dash_summary(cells: &[DashboardCell]) -> Vec<(String, String, Option<String>, Option<String>)> {
    cells
        .iter()
        .map(|c| {
            (
                c.deployment_id.clone(),
                c.state.clone(),
                c.prev_deployment_id.clone(),
                c.prev_release_version.clone(),
            )
        })
        .collect()
}

fn s(x: &str) -> String {
    x.to_string()
}

async fn dashboard(db: &Db) {
    let mut r1 = doc(
        "Releases",
        "Releases-D1",
        "Spaces-1",
        "Projects-D",
        "1.0.0",
        1,
    );
    r1.ref1 = "Channels-D".to_string();
    let mut r2 = doc(
        "Releases",
        "Releases-D2",
        "Spaces-1",
        "Projects-D",
        "2.0.0",
        2,
    );
    r2.ref1 = "Channels-D".to_string();
    insert_docs(db, &[r1, r2]).await;
    assert!(dash_cells(db, None).await.is_empty());

    // Queued: the cell appears with the task's state; nothing previous yet.
    let t1 = dash_task(9001, "Environments-D1", None, "Releases-D1");
    dash_queue(db, &t1, "1.0.0").await;
    let cells = dash_cells(db, None).await;
    assert_eq!(
        dash_summary(&cells),
        vec![(s("Deployments-D9001"), s("Queued"), None, None)]
    );
    let c = &cells[0];
    assert_eq!(
        (
            c.tenant_id.as_str(),
            c.release_version.as_str(),
            c.channel_id.as_str(),
            c.created
        ),
        ("", "1.0.0", "Channels-D", T0 + 9001)
    );
    assert_eq!(
        (c.queue_time, c.start_time, c.completed_time),
        (T0, None, None)
    );

    // Finished: the state and times follow the task row.
    dash_run(db, "ServerTasks-9001", "Success").await;
    let cells = dash_cells(db, None).await;
    assert_eq!(
        dash_summary(&cells),
        vec![(s("Deployments-D9001"), s("Success"), None, None)]
    );
    assert_eq!(
        (cells[0].start_time, cells[0].completed_time),
        (Some(T0 + 1_000), Some(T0 + 1_050))
    );

    // A newer deployment replaces it; the successful one becomes previous.
    let t2 = dash_task(9002, "Environments-D1", None, "Releases-D2");
    dash_queue(db, &t2, "2.0.0").await;
    let cells = dash_cells(db, None).await;
    assert_eq!(
        dash_summary(&cells),
        vec![(
            s("Deployments-D9002"),
            s("Queued"),
            Some(s("Deployments-D9001")),
            Some(s("1.0.0"))
        )]
    );
    assert_eq!(cells[0].prev_state.as_deref(), Some("Success"));
    assert_eq!(cells[0].prev_completed_time, Some(T0 + 1_050));

    // Another one while 9002 is still queued: previous stays 9001 until 9002 succeeds, then it
    // is 9002 (superseded but newer than the previous one).
    let t3 = dash_task(9003, "Environments-D1", None, "Releases-D2");
    dash_queue(db, &t3, "2.0.0").await;
    assert_eq!(
        dash_summary(&dash_cells(db, None).await),
        vec![(
            s("Deployments-D9003"),
            s("Queued"),
            Some(s("Deployments-D9001")),
            Some(s("1.0.0"))
        )]
    );
    dash_run(db, "ServerTasks-9002", "Success").await;
    assert_eq!(
        dash_summary(&dash_cells(db, None).await),
        vec![(
            s("Deployments-D9003"),
            s("Queued"),
            Some(s("Deployments-D9002")),
            Some(s("2.0.0"))
        )]
    );
    // The current one fails: it stays current, the previous success stays previous.
    dash_run(db, "ServerTasks-9003", "Failed").await;
    let cells = dash_cells(db, None).await;
    assert_eq!(
        dash_summary(&cells),
        vec![(
            s("Deployments-D9003"),
            s("Failed"),
            Some(s("Deployments-D9002")),
            Some(s("2.0.0"))
        )]
    );
    assert_eq!(cells[0].has_warnings_or_errors, 1);
    assert_eq!(cells[0].prev_task_seq, Some(9002));

    // An older deployment recorded late changes nothing.
    let mut late = dash_queued(&t1, "1.0.0");
    late.deployment_id = "Deployments-Late".to_string();
    let mut tx = db.begin().await.unwrap();
    tx.dashboard_deployment_queued(&late).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        dash_summary(&dash_cells(db, None).await)[0].0,
        "Deployments-D9003"
    );

    // A tenanted deployment has its own cell; tenant and environment filters.
    let t4 = dash_task(9004, "Environments-D2", Some("Tenants-D"), "Releases-D1");
    dash_queue(db, &t4, "1.0.0").await;
    dash_run(db, "ServerTasks-9004", "Success").await;
    let all = dash_cells(db, None).await;
    assert_eq!(
        all.iter()
            .map(|c| (c.environment_id.as_str(), c.tenant_id.as_str()))
            .collect::<Vec<_>>(),
        vec![("Environments-D1", ""), ("Environments-D2", "Tenants-D")]
    );
    assert_eq!(
        dash_cells(db, Some(Vec::new())).await.len(),
        1,
        "untenanted only"
    );
    assert_eq!(dash_cells(db, Some(v(&["Tenants-D"]))).await.len(), 2);
    assert_eq!(dash_cells(db, Some(v(&["Tenants-X"]))).await.len(), 1);
    let by_env = db
        .dashboard_cells(&DashboardQuery {
            space_id: "Spaces-1".to_string(),
            project_ids: Vec::new(),
            environment_ids: v(&["Environments-D2"]),
            tenant_ids: None,
        })
        .await
        .unwrap();
    assert_eq!(
        dash_summary(&by_env),
        vec![(s("Deployments-D9004"), s("Success"), None, None)]
    );
    for (space, projects) in [
        ("Spaces-2", v(&["Projects-D"])),
        ("Spaces-1", v(&["Projects-X"])),
    ] {
        let none = db
            .dashboard_cells(&DashboardQuery {
                space_id: space.to_string(),
                project_ids: projects,
                ..DashboardQuery::default()
            })
            .await
            .unwrap();
        assert!(none.is_empty());
    }
    // Long project lists are read in chunks.
    let many: Vec<String> = (0..1_200)
        .map(|i| format!("Projects-{i}"))
        .chain(["Projects-D".to_string()])
        .collect();
    let chunked = db
        .dashboard_cells(&DashboardQuery {
            space_id: "Spaces-1".to_string(),
            project_ids: many,
            ..DashboardQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(chunked, all);

    // Rebuilding from the remaining deployments: the same cells while nothing changed ...
    assert_eq!(db.rebuild_dashboard_project("Projects-D").await.unwrap(), 2);
    let rebuilt = dash_cells(db, None).await;
    assert_eq!(dash_summary(&rebuilt), dash_summary(&all));
    // ... and after release 2.0.0 is deleted, 1.0.0's deployment is current again.
    let mut tx = db.begin().await.unwrap();
    assert!(tx.delete_doc("Releases-D2").await.unwrap());
    assert_eq!(tx.rebuild_dashboard_project("Projects-D").await.unwrap(), 2);
    tx.commit().await.unwrap();
    assert_eq!(
        dash_summary(&dash_cells(db, None).await),
        vec![
            (s("Deployments-D9001"), s("Success"), None, None),
            (s("Deployments-D9004"), s("Success"), None, None),
        ]
    );
    // A rolled-back rebuild leaves the cells as they were.
    let mut tx = db.begin().await.unwrap();
    assert!(tx.delete_doc("Releases-D1").await.unwrap());
    assert_eq!(tx.rebuild_dashboard_project("Projects-D").await.unwrap(), 0);
    tx.rollback().await.unwrap();
    assert_eq!(dash_cells(db, None).await.len(), 2);
    // User text holding the separators the cell query packs with comes back with spaces.
    let t5 = dash_task(9005, "Environments-D3", None, "Releases-D1");
    dash_queue(db, &t5, "1.0.0\u{1f}odd\u{1e}").await;
    let now = T0 + 1_000;
    let c = db
        .claim_task("node-d", now, now + 30_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.task.id, "ServerTasks-9005");
    assert!(
        db.finish_task(
            "ServerTasks-9005",
            "node-d",
            c.epoch,
            "Failed",
            "bad\u{1e}line\u{1f}x ünï",
            true,
            now + 50
        )
        .await
        .unwrap()
    );
    let odd = dash_cells(db, None)
        .await
        .into_iter()
        .find(|c| c.environment_id == "Environments-D3")
        .unwrap();
    assert_eq!(
        (odd.release_version.as_str(), odd.error_message.as_str()),
        ("1.0.0 odd ", "bad line x ünï")
    );
    assert!(
        db.claim_task("node-d", T0 + 1_000, T0 + 2_000)
            .await
            .unwrap()
            .is_none(),
        "nothing left queued"
    );
}
