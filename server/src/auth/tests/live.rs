//! The live websocket (`/api/backups/updates`) over a real socket: it ends soon after the login it
//! was opened with ends. Before, it kept streaming after logout or expiry until the browser closed
//! it.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt as _;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue as WsHeaderValue;

use super::*;

#[tokio::test]
async fn the_live_socket_ends_after_logout() {
    let server = server(false).await;
    let login = send(
        &server,
        request("POST", "/auth/login", &login_body("ada", PASSWORD)),
    )
    .await;
    let token = login.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = server.app.clone();
    let serving = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let mut upgrade = format!("ws://127.0.0.1:{port}/api/backups/updates")
        .into_client_request()
        .unwrap();
    // The Host is the socket's address (an IP literal, always served); the Origin matches it.
    let headers = upgrade.headers_mut();
    headers.insert(
        "origin",
        WsHeaderValue::from_str(&format!("http://127.0.0.1:{port}")).unwrap(),
    );
    headers.insert(
        "cookie",
        WsHeaderValue::from_str(&format!("{SESSION_COOKIE}={token}")).unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(upgrade).await.unwrap();
    // The snapshot arrives: the socket is live.
    let first = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("a snapshot")
        .expect("an open socket")
        .unwrap();
    let text = String::from_utf8_lossy(&first.into_data()).into_owned();
    assert!(text.contains("Snapshot"), "{text}");

    let mut logout = request("POST", "/auth/logout", "");
    logout.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{SESSION_COOKIE}={token}")).unwrap(),
    );
    send(&server, logout).await;

    // Within a few re-check periods the server ends the stream (a close, or the end of the
    // socket); before, nothing came and the socket stayed open.
    let ended = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(message)) if message.is_close() => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the live socket still streams after logout");
    serving.abort();
}
