//! A minimal WebSocket test client (tokio-tungstenite): what an app that did
//! not use our SDK would do.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct WsClient {
    pub socket: Socket,
    next_ref: u64,
}

/// How long a test waits for one frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

impl WsClient {
    /// Connects with the token in the `Authorization` header and reads `hello`.
    pub async fn connect(address: &str, token: &str) -> WsClient {
        let url = format!("{}/ws", address.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let mut client = WsClient {
            socket,
            next_ref: 0,
        };
        let hello = client.recv().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        assert_eq!(hello["protocol"], 1);
        client
    }

    /// Connects to the watch feed (`/watch/ws?{query}`) with a device token.
    pub async fn connect_watch(address: &str, token: &str, query: &str) -> WsClient {
        let url = format!("{}/watch/ws?{query}", address.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        WsClient {
            socket,
            next_ref: 0,
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    /// The next JSON frame (skipping pings), or a panic after the timeout.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(FRAME_TIMEOUT)
            .await
            .expect("a frame within the timeout")
    }

    /// The next JSON frame within `timeout`, if any.
    pub async fn try_recv(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??;
            match msg.ok()? {
                Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until the server closes the connection; its close code.
    pub async fn close_code(&mut self) -> Option<u16> {
        tokio::time::timeout(FRAME_TIMEOUT, async {
            while let Some(msg) = self.socket.next().await {
                if let Ok(Message::Close(frame)) = msg {
                    return frame.map(|f| u16::from(f.code));
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    /// Reads frames until one of type `kind`, returning the skipped ones too.
    pub async fn recv_type(&mut self, kind: &str) -> (Value, Vec<Value>) {
        let mut skipped = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return (frame, skipped);
            }
            skipped.push(frame);
        }
    }

    /// Sends `frame` with a fresh `ref` and returns the reply to it (and the
    /// frames that came before it).
    pub async fn request(&mut self, mut frame: Value) -> (Value, Vec<Value>) {
        self.next_ref += 1;
        let r = self.next_ref;
        frame["ref"] = json!(r);
        self.send(frame).await;
        let mut before = Vec::new();
        loop {
            let reply = self.recv().await;
            if reply["type"] == "reply" && reply["ref"] == r {
                return (reply, before);
            }
            before.push(reply);
        }
    }

    /// Joins and returns the reply and any frames before it.
    pub async fn join(&mut self, session: &str, last_seq: Option<u64>) -> Value {
        let mut frame = json!({"type": "join", "session_id": session});
        if let Some(seq) = last_seq {
            frame["last_seq"] = json!(seq);
        }
        let (reply, _) = self.request(frame).await;
        reply
    }

    /// Sends a chat message and waits for its acknowledgement.
    pub async fn chat(&mut self, session: &str, text: &str, client_msg_id: &str) -> Value {
        let (reply, _) = self
            .request(json!({"type": "chat.send", "session_id": session, "text": text, "client_msg_id": client_msg_id}))
            .await;
        reply
    }
}
