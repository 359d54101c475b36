//! The agent's small HTTP face, for probes and for getting recordings off the node
//! (`kubectl port-forward`): `GET /healthz`, `GET /status` (JSON), `GET /traces` (the files,
//! JSON) and `GET /traces/<namespace>/<pod>/<file>.kt` (the file). Only GET and HEAD, one
//! request per connection: a probe and a download need no more.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::recordings::{served_file, stored_files};

/// How long a client may take to send its request line and headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a request's head may hold.
const MAX_HEAD: usize = 16 << 10;

/// What the server answers from: the status the agent keeps up to date, and `OUT`.
#[derive(Clone)]
pub struct Served {
    pub status: Arc<Mutex<serde_json::Value>>,
    pub out: PathBuf,
}

/// Answers connections on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, served: Served) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let served = served.clone();
        tokio::spawn(async move {
            if let Err(err) = answer(stream, &served).await {
                log::debug!("HTTP client {peer}: {err}");
            }
        });
    }
}

/// A parsed request line: method and path (without the query).
fn request_line(head: &str) -> Option<(&str, &str)> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    parts.next()?.starts_with("HTTP/").then_some(())?;
    let path = target.split('?').next()?;
    Some((method, path))
}

async fn answer(mut stream: TcpStream, served: &Served) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buffer[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read_head)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let head = String::from_utf8_lossy(&head);
    let Some((method, path)) = request_line(&head) else {
        return respond(&mut stream, 400, "text/plain", b"bad request\n", false).await;
    };
    let with_body = method != "HEAD";
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, 405, "text/plain", b"GET or HEAD only\n", false).await;
    }
    match path {
        "/healthz" => respond(&mut stream, 200, "text/plain", b"ok\n", with_body).await,
        "/status" => {
            let body = {
                let status = served.status.lock().unwrap_or_else(|e| e.into_inner());
                serde_json::to_vec_pretty(&*status).unwrap_or_default()
            };
            respond(&mut stream, 200, "application/json", &body, with_body).await
        }
        "/traces" | "/traces/" => {
            let body = serde_json::to_vec_pretty(&stored_files(&served.out)).unwrap_or_default();
            respond(&mut stream, 200, "application/json", &body, with_body).await
        }
        _ => match path
            .strip_prefix("/traces/")
            .and_then(|relative| served_file(&served.out, relative))
        {
            Some(file) => send_file(&mut stream, &file, with_body).await,
            None => respond(&mut stream, 404, "text/plain", b"not found\n", with_body).await,
        },
    }
}

async fn respond(
    stream: &mut TcpStream,
    code: u16,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n",
        reason(code),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

/// Sends a recording as it is now (a file being written is sent up to where it is).
async fn send_file(
    stream: &mut TcpStream,
    path: &std::path::Path,
    with_body: bool,
) -> std::io::Result<()> {
    let mut file = tokio::fs::File::open(path).await?;
    let length = file.metadata().await?.len();
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: \
         {length}\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nConnection: \
         close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        // No more than the length announced, should the file grow meanwhile.
        let mut limited = (&mut file).take(length);
        tokio::io::copy(&mut limited, stream).await?;
    }
    stream.shutdown().await
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_give_the_method_and_path() {
        assert_eq!(
            request_line("GET /status?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(("GET", "/status"))
        );
        assert_eq!(request_line("GET /status\r\n"), None);
        assert_eq!(request_line(""), None);
    }
}
