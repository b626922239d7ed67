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
