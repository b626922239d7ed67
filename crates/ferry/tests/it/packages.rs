//! The built-in feed against the real server: pushes by multipart as the TypeScript client sends
//! them (field `fileToUpload`, Content-Length) and as the Go CLI streams them (field `file`,
//! chunked, no Content-Length); the overwrite modes; refusals; list, search, download, delete;
//! build information; interrupted and concurrent uploads; retention; the CLI; and the server's
//! memory while a 300 MB package streams in.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry_packages::archive;
use ferry_packages::filename::{PackageFormat, file_name};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{API_KEY, Server, ferry_bin};

// ---- building packages --------------------------------------------------------------------

/// Packs `files` into `dir/out/Id.Version.ext` with ferry-packages and returns the path.
fn make_package(
    dir: &Path,
    id: &str,
    version: &str,
    format: PackageFormat,
    files: &[(&str, &str)],
) -> PathBuf {
    let content = dir.join(format!("content-{id}-{version}-{format}"));
    std::fs::create_dir_all(&content).unwrap();
    for (name, text) in files {
        let p = content.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let v = ferry_domain::version::Version::parse(version).unwrap();
    let target = out.join(file_name(id, &v, format).unwrap());
    archive::pack(&content, &target, format).unwrap();
    target
}

/// A `.nupkg`: a zip with a `.nuspec` at its root.
fn make_nupkg(dir: &Path, id: &str, version: &str) -> PathBuf {
    let nuspec = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>{id}</id>
    <version>{version}</version>
    <title>Hello &amp; welcome</title>
    <authors>Ferry</authors>
    <summary>A greeting</summary>
    <description>Says hello to &lt;everyone&gt;</description>
    <releaseNotes>First release</releaseNotes>
  </metadata>
</package>"#
    );
    let zip = make_package(
        dir,
        id,
        version,
        PackageFormat::Zip,
        &[
            (&format!("{id}.nuspec"), &nuspec),
            ("content/hello.txt", "hello"),
        ],
    );
    let nupkg = zip.with_extension("nupkg");
    std::fs::rename(&zip, &nupkg).unwrap();
    nupkg
}

fn sha1_of(path: &Path) -> String {
    archive::hashes(path).unwrap().0
}

// ---- talking to the server ----------------------------------------------------------------

/// A multipart upload as the TypeScript client sends it (Content-Length known).
async fn push_form(
    s: &Server,
    query: &str,
    field: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str("application/zip")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("note", "a non-file field before the file is skipped")
        .part(field.to_string(), part);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/Spaces-1/packages/raw{query}", s.url))
        .header("X-Octopus-ApiKey", API_KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn push_file(s: &Server, query: &str, path: &Path) -> (StatusCode, Value) {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    push_form(
        s,
        query,
        "fileToUpload",
        &name,
        std::fs::read(path).unwrap(),
    )
    .await
}

fn host(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_string()
}

const BOUNDARY: &str = "ferry-test-boundary-7d1f";

fn preamble(field: &str, name: &str) -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes()
}

fn epilogue() -> Vec<u8> {
    format!("\r\n--{BOUNDARY}--\r\n").into_bytes()
}

/// A multipart upload as the Go CLI streams it: `Transfer-Encoding: chunked`, no
/// Content-Length, field `file`; the file's bytes come from `chunks`.
async fn push_chunked(
    s: &Server,
    query: &str,
    name: &str,
    chunks: impl Iterator<Item = Vec<u8>>,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(host(s)).await.unwrap();
    let head = format!(
        "POST /api/Spaces-1/packages/raw{query} HTTP/1.1\r\nHost: {}\r\nX-Octopus-ApiKey: {API_KEY}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        host(s)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let body = std::iter::once(preamble("file", name))
        .chain(chunks)
        .chain(std::iter::once(epilogue()));
    for chunk in body {
        if chunk.is_empty() {
            continue;
        }
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(&chunk);
        framed.extend_from_slice(b"\r\n");
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    read_response(&mut stream).await
}

async fn read_response(stream: &mut tokio::net::TcpStream) -> (u16, Value) {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn tmp_files(s: &Server) -> Vec<String> {
    std::fs::read_dir(s.data_dir.join("packages/tmp"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn blobs(s: &Server) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(dirs) = std::fs::read_dir(s.data_dir.join("packages/sha256")) {
        for d in dirs.flatten() {
            for f in std::fs::read_dir(d.path()).unwrap().flatten() {
                out.push(f.file_name().to_string_lossy().to_string());
            }
        }
    }
    out.sort();
    out
}

async fn list(s: &Server, query: &str) -> Vec<(String, String)> {
    let v = s.get(&format!("/api/Spaces-1/packages{query}")).await;
    v["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["PackageId"].as_str().unwrap().to_string(),
                p["Version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn download(s: &Server, id: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(format!("{}/api/Spaces-1/packages/{id}/raw", s.url))
        .header("X-Octopus-ApiKey", API_KEY)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

// ---- the tests ----------------------------------------------------------------------------

/// zip, tar.gz and nupkg by both field names, Content-Length and chunked; the response shape;
/// list, filter, latest, get, download (identical bytes), delete (the file goes with its last
/// package); audit events.
#[tokio::test]
async fn push_list_get_download_delete() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let files = [("index.html", "<h1>hello</h1>"), ("bin/run.sh", "echo hi")];
    let zip = make_package(dir.path(), "Acme.Web", "1.0.0", PackageFormat::Zip, &files);
    let tgz = make_package(
        dir.path(),
        "Acme.Web",
        "1.10.0-beta.2",
        PackageFormat::TarGz,
        &files,
    );
    let tgz2 = make_package(
        dir.path(),
        "Acme.Web",
        "1.9.3",
        PackageFormat::TarGz,
        &[("a", "b")],
    );
    let nupkg = make_nupkg(dir.path(), "Hello", "2.0.0");

    // TS style: fileToUpload with a Content-Length.
    let (st, p) = push_file(&s, "", &zip).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    assert_eq!(p["Id"], "packages-Acme.Web.1.0.0");
    assert_eq!(p["PackageId"], "Acme.Web");
    assert_eq!(p["Version"], "1.0.0");
    assert_eq!(p["FeedId"], "feeds-builtin");
    assert_eq!(p["NuGetPackageId"], "Acme.Web");
    assert_eq!(p["NuGetFeedId"], "feeds-builtin");
    assert_eq!(p["FileExtension"], ".zip");
    assert_eq!(p["ReleaseNotes"], Value::Null);
    assert_eq!(p["Hash"], sha1_of(&zip));
    assert_eq!(
        p["PackageSizeBytes"],
        std::fs::metadata(&zip).unwrap().len()
    );
    assert!(
        ferry_domain::time::parse_ms(p["Published"].as_str().unwrap()).is_some(),
        "{p}"
    );
    assert!(p["Published"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(
        p["Links"]["Raw"],
        "/api/Spaces-1/packages/packages-Acme.Web.1.0.0/raw"
    );

    // Go style: field `file`, chunked, no Content-Length, in small pieces.
    let bytes = std::fs::read(&tgz).unwrap();
    let (st, p) = push_chunked(
        &s,
        "",
        "Acme.Web.1.10.0-beta.2.tar.gz",
        bytes
            .chunks(7)
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
            .into_iter(),
    )
    .await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["Version"], "1.10.0-beta.2");
    assert_eq!(p["FileExtension"], ".tar.gz");
    assert_eq!(p["Hash"], sha1_of(&tgz));
    let (st, _) = push_form(
        &s,
        "",
        "file",
        "Acme.Web.1.9.3.tar.gz",
        std::fs::read(&tgz2).unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);

    // A nupkg: its metadata is read; its release notes are never shown as a string.
    let (st, p) = push_file(&s, "", &nupkg).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    assert_eq!(p["Title"], "Hello & welcome");
    assert_eq!(p["Summary"], "A greeting");
    assert_eq!(p["Description"], "Says hello to <everyone>");
    assert_eq!(p["ReleaseNotes"], Value::Null);
    assert_eq!(p["FileExtension"], ".nupkg");

    // Lists: by id, then version descending (1.10.0-beta.2 > 1.9.3 numerically).
    assert_eq!(
        list(&s, "").await,
        pairs(&[
            ("Acme.Web", "1.10.0-beta.2"),
            ("Acme.Web", "1.9.3"),
            ("Acme.Web", "1.0.0"),
            ("Hello", "2.0.0")
        ])
    );
    assert_eq!(
        list(&s, "?filter=acme&latest=true").await,
        pairs(&[("Acme.Web", "1.10.0-beta.2")])
    );
    assert_eq!(
        list(&s, "?latest=true").await,
        pairs(&[("Acme.Web", "1.10.0-beta.2"), ("Hello", "2.0.0")])
    );
    assert_eq!(
        list(&s, "?nuGetPackageId=hello").await,
        pairs(&[("Hello", "2.0.0")])
    );
    let page = s.get("/api/Spaces-1/packages?skip=1&take=2").await;
    assert_eq!(page["TotalResults"], 4);
    assert_eq!(page["Items"].as_array().unwrap().len(), 2);
    assert_eq!(page["Items"][0]["Version"], "1.9.3");
    assert_eq!(
        page["Links"]["Page.Next"],
        "/api/Spaces-1/packages?skip=3&take=2"
    );
    // The default space's route and the Go CLI's take-all; the Go SDK's bare `all`.
    let all = s.get("/api/packages?take=2147483647").await;
    assert_eq!(all["TotalResults"], 4);
    let all = s.get("/api/Spaces-1/packages/all").await;
    assert_eq!(all.as_array().unwrap().len(), 4);
    assert_eq!(all[0]["Id"], "packages-Acme.Web.1.10.0-beta.2");

    // Get one; with build information once there is some.
    let p = s.get("/api/Spaces-1/packages/packages-Hello.2.0.0").await;
    assert_eq!(p["Title"], "Hello & welcome");
    // The id in another spelling of the same package and version.
    let same = s.get("/api/Spaces-1/packages/PACKAGES-hello.2.0").await;
    assert_eq!(same["Id"], "packages-Hello.2.0.0");
    assert_eq!(p["PackageVersionBuildInformation"], Value::Null);
    let (st, _) = s
        .request("GET", "/api/Spaces-1/packages/packages-Nope.1.0.0", None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Download: the same bytes, named as pushed.
    let (st, headers, got) = download(&s, "packages-Acme.Web.1.0.0").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got, std::fs::read(&zip).unwrap());
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"Acme.Web.1.0.0.zip\""
    );
    let (_, _, got) = download(&s, "packages-Acme.Web.1.10.0-beta.2").await;
    assert_eq!(got, bytes);

    // The same bytes under a second version share one file.
    let copy = dir.path().join("Acme.Web.1.0.1.zip");
    std::fs::copy(&zip, &copy).unwrap();
    assert_eq!(push_file(&s, "", &copy).await.0, StatusCode::CREATED);
    assert_eq!(blobs(&s).len(), 4);
    let (st, _) = s
        .request(
            "DELETE",
            "/api/Spaces-1/packages/packages-Acme.Web.1.0.0",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(blobs(&s).len(), 4, "still used by 1.0.1");
    let (_, _, got) = download(&s, "packages-Acme.Web.1.0.1").await;
    assert_eq!(got, std::fs::read(&zip).unwrap());
    let (st, _) = s
        .request(
            "DELETE",
            "/api/Spaces-1/packages/packages-Acme.Web.1.0.1",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(blobs(&s).len(), 3, "the last package using it is gone");
    let (st, _) = s
        .request(
            "DELETE",
            "/api/Spaces-1/packages/packages-Acme.Web.1.0.1",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, _) = download(&s, "packages-Acme.Web.1.0.0").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Every change has its audit event.
    let events = s.get("/api/events?regarding=packages-Acme.Web.1.0.0").await;
    let messages: Vec<&str> = events["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        vec![
            "Package Acme.Web 1.0.0 was deleted from the built-in feed",
            "Package Acme.Web 1.0.0 was pushed to the built-in feed"
        ]
    );
    assert!(tmp_files(&s).is_empty());
}

/// 201/200/409 in the three modes and with `replace=true`; the refusals name the problem and
/// leave nothing behind.
#[tokio::test]
async fn overwrite_modes_and_refusals() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let v1 = make_package(
        dir.path(),
        "App",
        "1.0.0",
        PackageFormat::Zip,
        &[("a.txt", "one")],
    );
    let content = dir.path().join("content-App-1.0.0-zip");
    // The same tree packed again: the same bytes (packing is deterministic).
    let v1b = dir.path().join("b/App.1.0.0.zip");
    std::fs::create_dir_all(v1b.parent().unwrap()).unwrap();
    archive::pack(&content, &v1b, PackageFormat::Zip).unwrap();
    assert_eq!(sha1_of(&v1), sha1_of(&v1b));
    std::fs::write(content.join("a.txt"), "changed").unwrap();
    let v1_changed = dir.path().join("c/App.1.0.0.zip");
    std::fs::create_dir_all(v1_changed.parent().unwrap()).unwrap();
    archive::pack(&content, &v1_changed, PackageFormat::Zip).unwrap();
    assert_ne!(sha1_of(&v1), sha1_of(&v1_changed));

    let (st, first) = push_file(&s, "?overwriteMode=FailIfExists", &v1).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, e) = push_file(&s, "", &v1_changed).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert!(
        e["Errors"][0].as_str().unwrap().contains("already exists"),
        "{e}"
    );
    let (st, e) = push_file(&s, "?overwriteMode=failifexists", &v1_changed).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    // Ignored: 200 with the package that is there.
    let (st, p) = push_file(&s, "?overwriteMode=IgnoreIfExists", &v1_changed).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(p["Hash"], first["Hash"]);
    // The same version written differently (1.0 = 1.0.0) is the same package.
    let (st, _) = push_form(
        &s,
        "",
        "file",
        "app.1.0.zip",
        std::fs::read(&v1_changed).unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);
    // Overwritten: 201 and the new file; the old file is gone.
    let (st, p) = push_file(&s, "?overwriteMode=OverwriteExisting", &v1_changed).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(p["Hash"], sha1_of(&v1_changed));
    assert_eq!(blobs(&s).len(), 1);
    let (_, _, got) = download(&s, "packages-App.1.0.0").await;
    assert_eq!(got, std::fs::read(&v1_changed).unwrap());
    // Legacy replace=true.
    let (st, p) = push_file(&s, "?replace=true", &v1).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(p["Hash"], first["Hash"]);
    assert_eq!(blobs(&s).len(), 1);
    // Same content again with overwrite: still one file.
    let (st, _) = push_file(&s, "?overwriteMode=OverwriteExisting", &v1b).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(blobs(&s).len(), 1);
    let events = s.get("/api/events?regarding=packages-App.1.0.0").await;
    assert_eq!(events["TotalResults"], 4, "pushed + 3 replaced: {events}");

    // Refusals, each naming its problem.
    let zip_bytes = std::fs::read(&v1).unwrap();
    let gz_bytes = std::fs::read(make_package(
        dir.path(),
        "Gz",
        "1.0.0",
        PackageFormat::TarGz,
        &[("a", "b")],
    ))
    .unwrap();
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        ("", "hello.zip", zip_bytes.clone(), "has no version"),
        (
            "",
            "hello.1.x.zip",
            zip_bytes.clone(),
            "'1.x' in 'hello.1.x.zip' is not a valid version",
        ),
        (
            "",
            "hello.1..2.zip",
            zip_bytes.clone(),
            "'1..2' in 'hello.1..2.zip' is not a valid version",
        ),
        (
            "",
            "he llo.1.0.0.zip",
            zip_bytes.clone(),
            "is not a valid package id",
        ),
        (
            "",
            "Hello.1.0.0.rar",
            zip_bytes.clone(),
            "unsupported extension",
        ),
        (
            "",
            "Hello.1.0.0",
            zip_bytes.clone(),
            "not a package file name",
        ),
        (
            "",
            "Hello.1.0.0.zip",
            gz_bytes.clone(),
            "is named as a zip package but its content is a gzip file",
        ),
        (
            "",
            "Hello.1.0.0.tar.gz",
            zip_bytes.clone(),
            "is named as a tar.gz package but its content is a zip archive",
        ),
        ("", "Hello.1.0.0.nupkg", zip_bytes.clone(), "has no .nuspec"),
        (
            "",
            "Hello.1.0.0.zip",
            b"PK\x03\x04 truncated".to_vec(),
            "not a valid zip archive",
        ),
        ("", "Hello.1.0.0.zip", Vec::new(), "is empty"),
        (
            "?overwriteMode=Sometimes",
            "Hello.1.0.0.zip",
            zip_bytes.clone(),
            "'Sometimes' is not an overwrite mode",
        ),
    ];
    for (query, name, bytes, expected) in cases {
        let (st, e) = push_form(&s, query, "fileToUpload", name, bytes).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{name}: {e}");
        let text = e["Errors"][0].as_str().unwrap_or_default();
        assert!(text.contains(expected), "{name}: {text}");
        assert!(
            !text.contains("/tmp") && !text.contains("upload-"),
            "{text}"
        );
    }
    // Not multipart at all; multipart without a file part.
    let (st, e) = s
        .request("POST", "/api/Spaces-1/packages/raw", Some(json!({"a": 1})))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["Errors"][0].as_str().unwrap().contains("multipart"),
        "{e}"
    );
    let form = reqwest::multipart::Form::new().text("fileToUpload", "not a file");
    let resp = reqwest::Client::new()
        .post(format!("{}/api/Spaces-1/packages/raw", s.url))
        .header("X-Octopus-ApiKey", API_KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("holds no file"));
    // Without a key; in an unknown space.
    let (st, _) = s
        .request_with_key("POST", "/api/Spaces-1/packages/raw", None, None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s.request("GET", "/api/Spaces-9/packages", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    assert_eq!(list(&s, "").await, pairs(&[("App", "1.0.0")]));
    assert_eq!(blobs(&s).len(), 1);
    assert!(tmp_files(&s).is_empty(), "{:?}", tmp_files(&s));
}

/// What the Go CLI and Octopus.Client call: feeds by type, versions of a package, the legacy
/// search (a bare array), package search, and the delta signature's 404.
#[tokio::test]
async fn feed_endpoints() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    for v in ["1.0.0", "1.1.0", "2.0.0-rc.1"] {
        let p = make_package(dir.path(), "Svc", v, PackageFormat::Zip, &[("a", v)]);
        assert_eq!(push_file(&s, "", &p).await.0, StatusCode::CREATED);
    }
    let p = make_package(
        dir.path(),
        "Svc.Tools",
        "0.1.0",
        PackageFormat::Zip,
        &[("a", "t")],
    );
    assert_eq!(push_file(&s, "", &p).await.0, StatusCode::CREATED);

    let feeds = s.get("/api/Spaces-1/feeds?feedType=BuiltIn&take=1").await;
    assert_eq!(feeds["Items"][0]["Id"], "feeds-builtin");
    assert_eq!(feeds["Items"][0]["FeedType"], "BuiltIn");
    let links = &feeds["Items"][0]["Links"];
    assert!(
        links["SearchPackageVersionsTemplate"]
            .as_str()
            .unwrap()
            .starts_with("/api/Spaces-1/feeds/feeds-builtin/packages/versions{?packageId")
    );
    let none = s.get("/api/Spaces-1/feeds?feedType=NuGet").await;
    assert_eq!(none["TotalResults"], 0);
    assert_eq!(none["Items"], json!([]));

    let v = s
        .get("/api/Spaces-1/feeds/feeds-builtin/packages/versions?packageId=svc&take=2147483647")
        .await;
    assert_eq!(v["ItemType"], "PackageVersion");
    let versions: Vec<&str> = v["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, vec!["2.0.0-rc.1", "1.1.0", "1.0.0"]);
    assert_eq!(v["Items"][0]["ReleaseNotes"], Value::Null);
    assert!(v["Items"][0]["SizeBytes"].as_u64().unwrap() > 0);
    assert!(
        v["Items"][0]["Published"]
            .as_str()
            .unwrap()
            .ends_with("+00:00")
    );
    let latest = s
        .get("/api/Spaces-1/feeds/feeds-builtin/packages/versions?packageId=Svc&take=1")
        .await;
    assert_eq!(latest["Items"][0]["Version"], "2.0.0-rc.1");
    assert_eq!(latest["TotalResults"], 3);
    let stable = s
        .get("/api/Spaces-1/feeds/feeds-builtin/packages/versions?packageId=Svc&take=1&includePreRelease=false")
        .await;
    assert_eq!(stable["Items"][0]["Version"], "1.1.0");
    let filtered = s
        .get("/api/Spaces-1/feeds/feeds-builtin/packages/versions?packageId=Svc&filter=rc")
        .await;
    assert_eq!(filtered["TotalResults"], 1);
    let (st, _) = s
        .request(
            "GET",
            "/api/Spaces-1/feeds/feeds-builtin/packages/versions",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .request(
            "GET",
            "/api/Spaces-1/feeds/Feeds-7/packages/versions?packageId=Svc",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let legacy = s
        .get("/api/Spaces-1/feeds/feeds-builtin/packages?packageId=Svc&partialMatch=false&includeMultipleVersions=true&take=10")
        .await;
    let got: Vec<&str> = legacy
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Version"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec!["2.0.0-rc.1", "1.1.0", "1.0.0"]);
    let legacy = s
        .get("/api/Spaces-1/feeds/feeds-builtin/packages?packageId=svc&partialMatch=true")
        .await;
    let got: Vec<String> = legacy
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["PackageId"].as_str().unwrap(),
                p["Version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(got, vec!["Svc 2.0.0-rc.1", "Svc.Tools 0.1.0"]);

    let search = s
        .get("/api/Spaces-1/feeds/feeds-builtin/packages/search?term=tools")
        .await;
    assert_eq!(search["Items"][0]["Id"], "Svc.Tools");
    assert_eq!(search["Items"][0]["LatestVersion"], "0.1.0");

    let (st, e) = s
        .request(
            "GET",
            "/api/Spaces-1/packages/Svc/1.0.0/delta-signature",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
    assert!(
        e["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("whole uploads")
    );
}

/// Build information as both clients send it, in the three modes; list, get, delete.
#[tokio::test]
async fn build_information() {
    let s = Server::start();
    let info = |branch: &str| {
        json!({
            "Branch": branch, "BuildEnvironment": "GitHub Actions", "BuildNumber": "42",
            "BuildUrl": "https://github.com/o/r/actions/runs/1",
            "Commits": [{"Id": "abc123", "Comment": "Add the thing"}],
            "VcsCommitNumber": "abc123", "VcsRoot": "https://github.com/o/r", "VcsType": "Git"
        })
    };
    // TS: camelCase space keys (ignored), the mode in the query.
    let ts = json!({"spaceId": "Spaces-1", "spaceName": "Default", "PackageId": "Hello",
        "Version": "1.0.0", "OctopusBuildInformation": info("main")});
    let path = "/api/Spaces-1/build-information";
    let (st, b) = s
        .request(
            "POST",
            &format!("{path}?overwriteMode=FailIfExists"),
            Some(ts.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(b["Id"], "BuildInformation-1");
    assert_eq!(b["PackageId"], "Hello");
    assert_eq!(b["Branch"], "main");
    assert_eq!(b["VcsCommitUrl"], "https://github.com/o/r/commit/abc123");
    assert_eq!(
        b["Commits"][0]["LinkUrl"],
        "https://github.com/o/r/commit/abc123"
    );
    assert_eq!(b["WorkItems"], json!([]));
    assert!(b["Created"].as_str().unwrap().ends_with("+00:00"));
    let (st, e) = s.request("POST", path, Some(ts.clone())).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    // Go: camelCase keys, the mode in the body.
    let go = json!({"spaceId": "Spaces-1", "packageId": "Hello", "version": "1.0.0",
        "overwriteMode": "IgnoreIfExists", "octopusBuildInformation": info("ignored")});
    let (st, b) = s.request("POST", path, Some(go)).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["Branch"], "main");
    let go = json!({"PackageId": "hello", "Version": "1.0", "OverwriteMode": "OverwriteExisting",
        "OctopusBuildInformation": info("release")});
    let (st, b) = s.request("POST", path, Some(go)).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(b["Id"], "BuildInformation-1");
    assert_eq!(b["Branch"], "release");
    // The query wins over the body.
    let both = json!({"PackageId": "Hello", "Version": "1.0.0", "OverwriteMode": "OverwriteExisting",
        "OctopusBuildInformation": info("x")});
    let (st, _) = s
        .request(
            "POST",
            &format!("{path}?overwriteMode=FailIfExists"),
            Some(both),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    for (v, id) in [("2.0.0", "Hello"), ("0.5.0", "Other")] {
        let body = json!({"PackageId": id, "Version": v, "OctopusBuildInformation": info("main")});
        assert_eq!(
            s.request("POST", path, Some(body)).await.0,
            StatusCode::CREATED
        );
    }
    for (body, expected) in [
        (
            json!({"PackageId": "Hello", "Version": "one", "OctopusBuildInformation": {}}),
            "'one' is not a valid version",
        ),
        (
            json!({"PackageId": "He llo", "Version": "1.0.0"}),
            "not a valid package id",
        ),
        (json!({"Version": "1.0.0"}), "PackageId"),
        (
            json!({"PackageId": "Hello", "Version": "1.0.0", "OverwriteMode": "Never"}),
            "not an overwrite mode",
        ),
    ] {
        let (st, e) = s.request("POST", path, Some(body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
        assert!(e["Errors"][0].as_str().unwrap().contains(expected), "{e}");
    }

    let all = s.get(path).await;
    let got: Vec<String> = all["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{} {}",
                b["PackageId"].as_str().unwrap(),
                b["Version"].as_str().unwrap()
            )
        })
        .collect();
    // The overwrite took the spelling it was sent with (hello 1.0).
    assert_eq!(got, vec!["Hello 2.0.0", "hello 1.0", "Other 0.5.0"]);
    let latest = s.get(&format!("{path}?latest=true&filter=hel")).await;
    assert_eq!(latest["TotalResults"], 1);
    assert_eq!(latest["Items"][0]["Version"], "2.0.0");
    let one = s.get(&format!("{path}?packageId=other")).await;
    assert_eq!(one["Items"][0]["PackageId"], "Other");
    let b = s.get(&format!("{path}/BuildInformation-1")).await;
    assert_eq!(b["Branch"], "release");

    // A package shows its build information.
    let dir = tempfile::tempdir().unwrap();
    let p = make_package(
        dir.path(),
        "Hello",
        "1.0.0",
        PackageFormat::Zip,
        &[("a", "b")],
    );
    assert_eq!(push_file(&s, "", &p).await.0, StatusCode::CREATED);
    let pkg = s.get("/api/Spaces-1/packages/packages-Hello.1.0.0").await;
    assert_eq!(pkg["PackageVersionBuildInformation"]["Branch"], "release");

    let (st, _) = s
        .request("DELETE", &format!("{path}/BuildInformation-1"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .request("GET", &format!("{path}/BuildInformation-1"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let events = s.get("/api/events?regarding=BuildInformation-1").await;
    assert_eq!(
        events["TotalResults"], 3,
        "created, replaced, deleted: {events}"
    );
}

/// A client that goes away half-way through an upload leaves no temporary file and no row.
#[tokio::test]
async fn an_interrupted_upload_leaves_nothing() {
    let s = Server::start();
    for chunked in [false, true] {
        let mut stream = tokio::net::TcpStream::connect(host(&s)).await.unwrap();
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            "Content-Length: 50000000".to_string()
        };
        let head = format!(
            "POST /api/Spaces-1/packages/raw HTTP/1.1\r\nHost: {}\r\nX-Octopus-ApiKey: {API_KEY}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n",
            host(&s)
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut body = preamble("file", "Broken.1.0.0.zip");
        body.extend_from_slice(b"PK\x03\x04");
        body.extend(std::iter::repeat_n(7u8, 2_000_000));
        if chunked {
            let mut framed = format!("{:x}\r\n", body.len()).into_bytes();
            framed.extend_from_slice(&body);
            framed.extend_from_slice(b"\r\n");
            body = framed;
        }
        stream.write_all(&body).await.unwrap();
        stream.flush().await.unwrap();
        // The server is writing the temporary file…
        let deadline = Instant::now() + Duration::from_secs(20);
        while tmp_files(&s).is_empty() {
            assert!(Instant::now() < deadline, "no temporary file appeared");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // …when the client goes away.
        drop(stream);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !tmp_files(&s).is_empty() {
            assert!(
                Instant::now() < deadline,
                "temporary files left: {:?}",
                tmp_files(&s)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(list(&s, "").await, Vec::<(String, String)>::new());
    assert!(blobs(&s).is_empty());
    // The server is fine afterwards.
    let dir = tempfile::tempdir().unwrap();
    let p = make_package(
        dir.path(),
        "Broken",
        "1.0.0",
        PackageFormat::Zip,
        &[("a", "b")],
    );
    assert_eq!(push_file(&s, "", &p).await.0, StatusCode::CREATED);
}

/// Different packages in parallel all land; the same package in parallel has one winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads() {
    let s = Arc::new(Server::start());
    let dir = tempfile::tempdir().unwrap();
    let mut different = Vec::new();
    for i in 0..8 {
        let p = make_package(
            dir.path(),
            &format!("Pkg{i}"),
            "1.0.0",
            PackageFormat::Zip,
            &[("n.txt", &format!("{i}").repeat(50_000))],
        );
        different.push(std::fs::read(&p).unwrap());
    }
    let same: Vec<Vec<u8>> = (0..6)
        .map(|i| {
            let p = make_package(
                &dir.path().join(format!("same{i}")),
                "Same",
                "1.0.0",
                PackageFormat::Zip,
                &[("n.txt", &format!("variant {i}").repeat(20_000))],
            );
            std::fs::read(p).unwrap()
        })
        .collect();
    let mut tasks = Vec::new();
    for (i, bytes) in different.into_iter().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("Pkg{i}.1.0.0.zip");
            (
                "different",
                push_form(&s, "", "fileToUpload", &name, bytes).await.0,
            )
        }));
    }
    for bytes in same {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            (
                "same",
                push_form(&s, "", "file", "Same.1.0.0.zip", bytes).await.0,
            )
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let count = |kind: &str, st: StatusCode| {
        results
            .iter()
            .filter(|(k, s)| *k == kind && *s == st)
            .count()
    };
    assert_eq!(count("different", StatusCode::CREATED), 8, "{results:?}");
    assert_eq!(count("same", StatusCode::CREATED), 1, "{results:?}");
    assert_eq!(count("same", StatusCode::CONFLICT), 5, "{results:?}");
    assert_eq!(list(&s, "").await.len(), 9);
    // Only the winner's file is kept, and the winner's file is what is served.
    assert_eq!(blobs(&s).len(), 9);
    let p = s.get("/api/Spaces-1/packages/packages-Same.1.0.0").await;
    let (_, _, got) = download(&s, "packages-Same.1.0.0").await;
    assert_eq!(got.len() as u64, p["PackageSizeBytes"].as_u64().unwrap());
    assert!(tmp_files(&s).is_empty());

    // IgnoreIfExists in parallel: everyone succeeds, one stored.
    let p = make_package(
        dir.path(),
        "Ign",
        "1.0.0",
        PackageFormat::Zip,
        &[("a", "b")],
    );
    let bytes = std::fs::read(&p).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (s, bytes) = (s.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            push_form(
                &s,
                "?overwriteMode=IgnoreIfExists",
                "file",
                "Ign.1.0.0.zip",
                bytes,
            )
            .await
            .0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        4,
        "{statuses:?}"
    );
}

/// Retention through the admin endpoint: newest N per id, by age, dry run; files removed.
#[tokio::test]
async fn retention_keeps_the_newest_versions() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    for v in ["1.0.0", "1.1.0", "1.2.0", "2.0.0-beta"] {
        let p = make_package(dir.path(), "Ret", v, PackageFormat::Zip, &[("v", v)]);
        assert_eq!(push_file(&s, "", &p).await.0, StatusCode::CREATED);
    }
    let p = make_package(
        dir.path(),
        "Solo",
        "0.1.0",
        PackageFormat::Zip,
        &[("v", "s")],
    );
    assert_eq!(push_file(&s, "", &p).await.0, StatusCode::CREATED);
    let path = "/api/Spaces-1/feeds/feeds-builtin/retention";

    let (st, e) = s.request("POST", path, Some(json!({}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let dry = s
        .post(path, json!({"KeepVersions": 2, "DryRun": true}))
        .await;
    let ids: Vec<&str> = dry["Deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["packages-Ret.1.1.0", "packages-Ret.1.0.0"]);
    assert_eq!(list(&s, "").await.len(), 5, "a dry run deletes nothing");
    // Nothing is old enough: with both rules, nothing goes.
    let none = s
        .post(path, json!({"KeepVersions": 2, "OlderThanDays": 1}))
        .await;
    assert_eq!(none["Deleted"], json!([]));
    let done = s.post(path, json!({"KeepVersions": 2})).await;
    assert_eq!(done["Deleted"].as_array().unwrap().len(), 2);
    assert_eq!(
        list(&s, "").await,
        pairs(&[("Ret", "2.0.0-beta"), ("Ret", "1.2.0"), ("Solo", "0.1.0")])
    );
    assert_eq!(blobs(&s).len(), 3);
    let events = s.get("/api/events?regarding=packages-Ret.1.0.0").await;
    assert_eq!(
        events["Items"][0]["Message"],
        "Package Ret 1.0.0 was removed by retention from the built-in feed"
    );
    // By age: everything is younger than a day.
    let by_age = s.post(path, json!({"OlderThanDays": 1})).await;
    assert_eq!(by_age["Deleted"], json!([]));
}

/// The periodic job: a server started with a policy applies it at start (then hourly).
#[tokio::test]
async fn retention_policy_from_the_command_line() {
    let mut s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    for v in ["1.0.0", "2.0.0", "3.0.0"] {
        let p = make_package(dir.path(), "Job", v, PackageFormat::Zip, &[("v", v)]);
        assert_eq!(push_file(&s, "", &p).await.0, StatusCode::CREATED);
    }
    assert_eq!(
        s.get("/api/Spaces-1/feeds/feeds-builtin").await["DeleteUnreleasedPackagesAfterDays"],
        0
    );
    s.stop();
    s.restart(crate::harness::Opts {
        args: vec![
            "--package-retention-versions".into(),
            "2".into(),
            "--package-retention-days".into(),
            "0".into(),
        ],
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while list(&s, "").await.len() > 2 {
        assert!(Instant::now() < deadline, "retention did not run at start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        list(&s, "").await,
        pairs(&[("Job", "3.0.0"), ("Job", "2.0.0")])
    );
    let events = s.get("/api/events?regarding=packages-Job.1.0.0").await;
    assert_eq!(events["Items"][0]["Username"], "system");
}

/// A version a release selects is never deleted by retention; once the release is deleted,
/// it is.
#[tokio::test]
async fn retention_keeps_versions_releases_use() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        let p = make_package(dir.path(), "Web", v, PackageFormat::Zip, &[("v", v)]);
        assert_eq!(push_file(&s, "", &p).await.0, StatusCode::CREATED);
    }
    s.create_project("Shop").await;
    s.put(
        "/api/Spaces-1/projects/Shop/deploymentprocesses",
        json!({"Steps": [{"Name": "Deploy web", "Actions": [{
            "Name": "Deploy web", "ActionType": "Octopus.TentaclePackage",
            "Packages": [{"Name": "", "PackageId": "Web", "FeedId": "feeds-builtin",
                          "AcquisitionLocation": "Server"}],
            "Properties": {"Octopus.Action.Package.PackageId": "Web",
                           "Octopus.Action.Package.FeedId": "feeds-builtin",
                           "Octopus.Action.RunOnServer": "true"}
        }]}]}),
    )
    .await;
    let release = s
        .post(
            "/api/Spaces-1/releases/create/v1",
            json!({"ProjectName": "Shop", "ReleaseVersion": "5.0.0", "PackageVersion": "1.0.0"}),
        )
        .await;
    let release = s
        .get(&format!(
            "/api/Spaces-1/releases/{}",
            release["ReleaseId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        release["SelectedPackages"][0]["Version"], "1.0.0",
        "{release}"
    );

    let path = "/api/Spaces-1/feeds/feeds-builtin/retention";
    let done = s.post(path, json!({"KeepVersions": 1})).await;
    let ids: Vec<&str> = done["Deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["packages-Web.1.1.0"],
        "1.0.0 is used by release 5.0.0"
    );
    assert_eq!(
        list(&s, "").await,
        pairs(&[("Web", "1.2.0"), ("Web", "1.0.0")])
    );

    let (st, _) = s
        .request(
            "DELETE",
            &format!("/api/Spaces-1/releases/{}", release["Id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let done = s.post(path, json!({"KeepVersions": 1})).await;
    assert_eq!(done["Deleted"][0]["Id"], "packages-Web.1.0.0");
    assert_eq!(list(&s, "").await, pairs(&[("Web", "1.2.0")]));
    assert_eq!(blobs(&s).len(), 1);
}

/// The CLI: pack, push (progress on standard error, overwrite modes, exit codes), list.
#[tokio::test]
async fn cli_pack_push_list() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("site");
    std::fs::create_dir_all(content.join("css")).unwrap();
    std::fs::write(content.join("index.html"), "<h1>hi</h1>").unwrap();
    std::fs::write(content.join("css/site.css"), "h1{}").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(ferry_bin())
            .args(args)
            .current_dir(dir.path())
            .env("FERRY_URL", &s.url)
            .env("FERRY_API_KEY", &s.api_key)
            .env_remove("FERRY_SPACE")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    let (code, out, err) = run(&[
        "package",
        "pack",
        "--id",
        "Site",
        "--version",
        "1.0.0",
        "site",
        "--out",
        "dist",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Packed 2 files into dist/Site.1.0.0.zip"),
        "{out}"
    );
    let (code, out, _) = run(&[
        "package",
        "pack",
        "--id",
        "Site",
        "--version",
        "1.1.0",
        "--format",
        "tar.gz",
        "site",
        "--out",
        "dist",
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = run(&[
        "package",
        "pack",
        "--id",
        "Site",
        "--version",
        "1.0.0",
        "site",
        "--out",
        "dist",
    ]);
    assert_eq!(code, 2, "exists without --overwrite: {err}");
    assert!(err.contains("--overwrite"), "{err}");
    let (code, _, err) = run(&[
        "package",
        "pack",
        "--id",
        "Site",
        "--version",
        "one",
        "site",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("'one' is not a valid version"), "{err}");

    let (code, out, err) = run(&[
        "package",
        "push",
        "dist/Site.1.0.0.zip",
        "dist/Site.1.1.0.tar.gz",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Uploaded package Site 1.0.0 (packages-Site.1.0.0)"),
        "{out}"
    );
    assert!(
        out.contains("Uploaded package Site 1.1.0 (packages-Site.1.1.0)"),
        "{out}"
    );
    assert!(err.contains("Site.1.0.0.zip: 100%"), "progress: {err}");
    // The file on the server is the one packed.
    let (_, _, got) = download(&s, "packages-Site.1.0.0").await;
    assert_eq!(
        got,
        std::fs::read(dir.path().join("dist/Site.1.0.0.zip")).unwrap()
    );

    let (code, _, err) = run(&["package", "push", "dist/Site.1.0.0.zip"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, out, _) = run(&[
        "package",
        "push",
        "dist/Site.1.0.0.zip",
        "--overwrite-mode",
        "ignore",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("Ignored existing package Site 1.0.0"), "{out}");
    let (code, out, _) = run(&[
        "package",
        "push",
        "dist/Site.1.0.0.zip",
        "--overwrite-mode",
        "overwrite",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("Uploaded package Site 1.0.0"), "{out}");
    // Several files, one failing: the others still go, exit 1.
    std::fs::copy(
        dir.path().join("dist/Site.1.0.0.zip"),
        dir.path().join("dist/Site.3.0.0.zip"),
    )
    .unwrap();
    let (code, out, err) = run(&[
        "package",
        "push",
        "dist/Site.1.1.0.tar.gz",
        "dist/Site.3.0.0.zip",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("Uploaded package Site 3.0.0"), "{out}");
    assert!(
        err.contains("Site.1.1.0.tar.gz: not pushed")
            && err.contains("1 of 2 packages were not pushed"),
        "{err}"
    );
    // Usage errors: a missing file, a name that is not PackageId.Version.ext.
    let (code, _, err) = run(&["package", "push", "dist/nope.1.0.0.zip"]);
    assert_eq!(code, 2, "{err}");
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let (code, _, err) = run(&["package", "push", "notes.txt"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a package file name"), "{err}");
    // Unreachable server: exit 4.
    let out = Command::new(ferry_bin())
        .args([
            "package",
            "push",
            "dist/Site.1.0.0.zip",
            "--server",
            "http://127.0.0.1:1",
        ])
        .current_dir(dir.path())
        .env("FERRY_API_KEY", &s.api_key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));

    let (code, out, _) = run(&["package", "list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("PACKAGE  VERSION"), "{out}");
    assert!(lines[1].starts_with("Site     3.0.0"), "{out}");
    assert_eq!(lines.len(), 4, "{out}");
    let (_, out, _) = run(&["package", "list", "--filter", "nothing"]);
    assert_eq!(out.trim(), "No packages");
    let (_, out, _) = run(&["package", "list", "--latest", "--output", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["Version"], "3.0.0");
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// A tar holding one file of `size` bytes, produced in 64 KiB pieces (never whole in memory).
fn big_tar(size: u64) -> impl Iterator<Item = Vec<u8>> {
    let mut header = [0u8; 512];
    header[..8].copy_from_slice(b"big.bin\0");
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let piece = 64 * 1024u64;
    let pieces = size.div_ceil(piece);
    let pad = (512 - size % 512) % 512;
    std::iter::once(header.to_vec())
        .chain((0..pieces).map(move |i| {
            let n = piece.min(size - i * piece) as usize;
            (0..n).map(|j| (i as usize * 31 + j) as u8).collect()
        }))
        .chain(std::iter::once(vec![0u8; pad as usize + 1024]))
}

/// A 300 MB package streams through the server in constant memory: its resident set stays
/// under 100 MB while the upload runs (the file is never held in memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mb_upload_streams_in_constant_memory() {
    let s = Server::start();
    let pid = s.pid();
    let before = rss_kb(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // 25 MB with a Content-Length, over the 20 MiB limit of other requests: accepted.
    let medium: Vec<u8> = big_tar(25 * 1024 * 1024).flatten().collect();
    let (st, p) = push_form(&s, "", "fileToUpload", "Medium.1.0.0.tar", medium).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");

    let size = 300 * 1024 * 1024;
    let started = Instant::now();
    let (st, p) = push_chunked(&s, "", "Big.1.0.0.tar", big_tar(size)).await;
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak_mb = peak.load(Ordering::Relaxed) / 1024;
    eprintln!(
        "300 MB upload: {:?}, server RSS {} MB before, peak {peak_mb} MB",
        started.elapsed(),
        before / 1024
    );
    assert_eq!(st, 201, "{p}");
    assert!(p["PackageSizeBytes"].as_u64().unwrap() > size);
    assert!(peak_mb < 100, "the server's RSS peaked at {peak_mb} MB");
    assert!(tmp_files(&s).is_empty());
    let (st, _) = s
        .request("DELETE", "/api/Spaces-1/packages/packages-Big.1.0.0", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(blobs(&s).len(), 1, "only Medium's file is left");
}
