//! Both ends of a connection over an in-memory stream: requests and replies, a malformed
//! frame closing the connection without a crash, and pings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::Message;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::rpc::{RpcConn, RpcError};
use crate::serve::{BoxFuture, Handler, serve};
use crate::wire;

struct Echo;

impl Handler for Echo {
    fn handle(&self, msg: Message) -> BoxFuture<'_, Message> {
        Box::pin(async move {
            match msg {
                Message::Health => Message::HealthReply(ferry_protocol::HealthReply {
                    healthy: true,
                    running_scripts: 0,
                    free_disk_bytes: None,
                    warnings: vec![],
                }),
                _ => Message::Ack,
            }
        })
    }
}

async fn pair() -> (
    tokio_tungstenite::WebSocketStream<tokio::io::DuplexStream>,
    tokio_tungstenite::WebSocketStream<tokio::io::DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move {
        tokio_tungstenite::accept_async_with_config(b, Some(wire::ws_config()))
            .await
            .unwrap()
    });
    let (client, _) = tokio_tungstenite::client_async_with_config(
        "ws://agent/ferry/v1",
        a,
        Some(wire::ws_config()),
    )
    .await
    .unwrap();
    (client, server.await.unwrap())
}

#[tokio::test]
async fn requests_are_answered_in_order_of_ids() {
    let (requester, responder) = pair().await;
    let stop = CancellationToken::new();
    tokio::spawn(serve(responder, Arc::new(Echo), None, stop.clone()));
    let conn = RpcConn::spawn(requester, "test".into());
    let calls = (0..20).map(|_| conn.call(Message::Health, Duration::from_secs(5)));
    for r in futures_util::future::join_all(calls).await {
        assert!(matches!(r.unwrap(), Message::HealthReply(_)));
    }
    stop.cancel();
}

/// The agent end receives garbage: it closes the connection and says why; nothing panics.
#[tokio::test]
async fn a_malformed_frame_closes_the_agent_end() {
    for garbage in [
        WsMessage::Binary(b"{not json".to_vec().into()),
        WsMessage::Binary(br#"{"v":9,"id":1,"kind":"Health"}"#.to_vec().into()),
        WsMessage::Text(r#"{"v":1,"id":1,"kind":"StartScript","body":{"ticket":5}}"#.into()),
        WsMessage::Binary(vec![0xff; 4096].into()),
    ] {
        let (mut requester, responder) = pair().await;
        let task = tokio::spawn(serve(
            responder,
            Arc::new(Echo),
            None,
            CancellationToken::new(),
        ));
        requester.send(garbage).await.unwrap();
        let why = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(why.contains("malformed frame"), "{why}");
    }
}

/// The server end receives garbage from an agent: the connection closes, pending calls fail
/// with `Closed` (retryable), nothing panics.
#[tokio::test]
async fn a_malformed_frame_closes_the_server_end() {
    let (requester, mut responder) = pair().await;
    let conn = RpcConn::spawn(requester, "test".into());
    let c2 = conn.clone();
    let call = tokio::spawn(async move { c2.call(Message::Health, Duration::from_secs(5)).await });
    // Read the request, answer with garbage.
    let _ = responder.next().await;
    responder
        .send(WsMessage::Binary(b"\x00\x01garbage".to_vec().into()))
        .await
        .unwrap();
    let r = call.await.unwrap();
    assert!(
        matches!(r, Err(RpcError::Closed(ref why)) if why.contains("malformed")),
        "{r:?}"
    );
    assert!(conn.is_closed());
}

/// An oversized message is refused by the WebSocket layer itself.
#[tokio::test]
async fn an_oversized_message_is_refused() {
    let (mut requester, responder) = pair().await;
    let task = tokio::spawn(serve(
        responder,
        Arc::new(Echo),
        None,
        CancellationToken::new(),
    ));
    let big = vec![b'a'; ferry_protocol::DEFAULT_MAX_FRAME + 1];
    let _ = requester.send(WsMessage::Binary(big.into())).await;
    let why = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        why.contains("read failed") || why.contains("malformed"),
        "{why}"
    );
}

mod delta {
    use super::*;
    use crate::runtime::{AgentHandler, Runtime};
    use ferry_protocol::{ErrorCode, UploadBegin, UploadChunk, UploadEnd};
    use sha2::Digest;

    fn sha(b: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(b))
    }

    async fn send(h: &AgentHandler, transfer: &str, begin: UploadBegin, bytes: &[u8]) -> Message {
        let r = h.handle(Message::UploadBegin(begin)).await;
        assert!(matches!(r, Message::UploadProgress(_)), "{r:?}");
        let mut off = 0u64;
        for piece in bytes.chunks(100_000) {
            let r = h
                .handle(Message::UploadChunk(UploadChunk {
                    transfer: transfer.into(),
                    offset: off,
                    data: piece.to_vec(),
                }))
                .await;
            assert!(matches!(r, Message::UploadProgress(_)), "{r:?}");
            off += piece.len() as u64;
        }
        h.handle(Message::UploadEnd(UploadEnd {
            transfer: transfer.into(),
        }))
        .await
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// A delta rebuilds the new version from the cached one; a delta whose result does not
    /// hash right is discarded and leaves nothing in the cache.
    #[tokio::test]
    async fn deltas_rebuild_exactly_or_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::open(dir.path(), CancellationToken::new()).unwrap();
        let h = AgentHandler { rt };
        let v1 = pseudo_random(600_000, 7);
        let mut v2 = v1.clone();
        v2[300_000..300_100].copy_from_slice(&[b'x'; 100]);
        let base = UploadBegin {
            transfer: "t1".into(),
            name: Some(format!("{}.zip", sha(&v1))),
            size: v1.len() as u64,
            sha256: sha(&v1),
            package_id: Some("Acme.Web".into()),
            delta_from: None,
            result_sha256: None,
            result_size: None,
        };
        assert!(matches!(
            send(&h, "t1", base, &v1).await,
            Message::UploadDone(_)
        ));

        // The basis and its signature.
        let r = h
            .handle(Message::PackageBasis(ferry_protocol::PackageBasis {
                package_id: "acme.web".into(),
                exclude_sha256: sha(&v2),
            }))
            .await;
        let Message::PackageBasisReply(ferry_protocol::PackageBasisReply { basis: Some(b) }) = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(b.sha256, sha(&v1));
        let sig = fast_rsync::Signature::deserialize(b.signature).unwrap();
        let mut delta = Vec::new();
        fast_rsync::diff(&sig.index(), &v2, &mut delta).unwrap();
        assert!(delta.len() < v2.len() / 20, "{}", delta.len());

        // A delta claiming the wrong result is discarded.
        let wrong = UploadBegin {
            transfer: "t2".into(),
            name: Some(format!("{}.zip", "ab".repeat(32))),
            size: delta.len() as u64,
            sha256: sha(&delta),
            package_id: Some("Acme.Web".into()),
            delta_from: Some(sha(&v1)),
            result_sha256: Some("ab".repeat(32)),
            result_size: Some(v2.len() as u64),
        };
        match send(&h, "t2", wrong, &delta).await {
            Message::Error(e) => assert_eq!(e.code, ErrorCode::HashMismatch, "{e:?}"),
            other => panic!("{other:?}"),
        }
        let cached: Vec<String> = std::fs::read_dir(dir.path().join("packages"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            !cached.iter().any(|n| n.starts_with(&"ab".repeat(32))),
            "{cached:?}"
        );

        // The right one rebuilds v2 exactly.
        let right = UploadBegin {
            transfer: "t3".into(),
            name: Some(format!("{}.zip", sha(&v2))),
            size: delta.len() as u64,
            sha256: sha(&delta),
            package_id: Some("Acme.Web".into()),
            delta_from: Some(sha(&v1)),
            result_sha256: Some(sha(&v2)),
            result_size: Some(v2.len() as u64),
        };
        assert!(matches!(
            send(&h, "t3", right, &delta).await,
            Message::UploadDone(_)
        ));
        let rebuilt = std::fs::read(
            dir.path()
                .join("packages")
                .join(format!("{}.zip", sha(&v2))),
        )
        .unwrap();
        assert_eq!(rebuilt, v2);
    }
}
