//! A minimal Lambda Runtime API, for the function's binary run as a process: it hands out one
//! invocation with the deadline a test needs (cargo-lambda's emulator fixes it at 10 minutes,
//! so a dead run's lease would last that long) and records the answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::stack::epoch_ms;

/// The one invocation a Runtime API hands out.
pub struct Event {
    pub request_id: String,
    pub body: String,
    /// The deadline is the instant of hand-out plus this.
    pub timeout: Duration,
    pub function_arn: String,
}

#[derive(Default)]
struct ApiState {
    /// When the invocation was handed out, and the deadline given (epoch ms).
    handed_out: Option<(Instant, u64)>,
    /// `("response" | "error", body)` as the function posted it.
    answer: Option<(String, String)>,
    init_error: Option<String>,
    /// Requests the API did not know, for the failure message.
    unknown: Vec<String>,
}

/// Lambda's Runtime API for one invocation, as lambda_runtime 1.x's client speaks it:
/// `GET /2018-06-01/runtime/invocation/next` answers the event with
/// `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms` (epoch milliseconds) and
/// `Lambda-Runtime-Invoked-Function-Arn`; later `next` calls wait, as Lambda's do, until the
/// API stops; `.../invocation/<id>/response` and `/error` and `/init/error` are recorded.
pub struct RuntimeApi {
    port: u16,
    state: Arc<Mutex<ApiState>>,
    stop: Arc<AtomicBool>,
}

struct HttpRequest {
    method: String,
    path: String,
    body: Vec<u8>,
}

impl RuntimeApi {
    pub fn start(event: Event) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Runtime API");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(ApiState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let event = Arc::new(event);
        {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (state, stop, event) = (state.clone(), stop.clone(), event.clone());
                            std::thread::spawn(move || serve(stream, &state, &stop, &event));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
        }
        Self { port, state, stop }
    }

    /// `AWS_LAMBDA_RUNTIME_API` as Lambda sets it: `host:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn handed_out(&self) -> Option<(Instant, u64)> {
        self.state.lock().unwrap().handed_out
    }

    pub fn answer(&self) -> Option<(String, String)> {
        self.state.lock().unwrap().answer.clone()
    }

    pub fn init_error(&self) -> Option<String> {
        self.state.lock().unwrap().init_error.clone()
    }

    pub fn unknown(&self) -> Vec<String> {
        self.state.lock().unwrap().unknown.clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One connection, request after request (keep-alive), until the client closes it.
fn serve(stream: TcpStream, state: &Mutex<ApiState>, stop: &AtomicBool, event: &Event) {
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    while let Ok(Some(request)) = read_request(&mut reader) {
        let path = request
            .path
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let invocation = "/2018-06-01/runtime/invocation/";
        let written = if request.method == "GET" && path == format!("{invocation}next") {
            let deadline = {
                let mut s = state.lock().unwrap();
                if s.handed_out.is_some() {
                    None
                } else {
                    let deadline = epoch_ms() + event.timeout.as_millis() as u64;
                    s.handed_out = Some((Instant::now(), deadline));
                    Some(deadline)
                }
            };
            match deadline {
                Some(deadline) => {
                    let headers = [
                        ("Lambda-Runtime-Aws-Request-Id", event.request_id.clone()),
                        ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
                        (
                            "Lambda-Runtime-Invoked-Function-Arn",
                            event.function_arn.clone(),
                        ),
                        (
                            "Lambda-Runtime-Trace-Id",
                            "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
                        ),
                    ];
                    respond(&mut writer, 200, &headers, event.body.as_bytes())
                }
                None => {
                    // No second event: wait as Lambda does, until the API stops.
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    return;
                }
            }
        } else if request.method == "POST" && path.starts_with(invocation) {
            let rest = &path[invocation.len()..];
            let body = String::from_utf8_lossy(&request.body).into_owned();
            let kind = match rest.rsplit_once('/') {
                Some((id, kind))
                    if id == event.request_id && (kind == "response" || kind == "error") =>
                {
                    Some(kind)
                }
                _ => None,
            };
            match kind {
                Some(kind) => {
                    state.lock().unwrap().answer = Some((kind.to_owned(), body));
                    respond(&mut writer, 202, &[], br#"{"status":"OK"}"#)
                }
                None => {
                    state.lock().unwrap().unknown.push(format!("POST {path}"));
                    respond(
                        &mut writer,
                        404,
                        &[],
                        br#"{"errorMessage":"unknown request id"}"#,
                    )
                }
            }
        } else if request.method == "POST" && path == "/2018-06-01/runtime/init/error" {
            state.lock().unwrap().init_error =
                Some(String::from_utf8_lossy(&request.body).into_owned());
            respond(&mut writer, 202, &[], br#"{"status":"OK"}"#)
        } else {
            state
                .lock()
                .unwrap()
                .unknown
                .push(format!("{} {path}", request.method));
            respond(&mut writer, 404, &[], br#"{"errorMessage":"not found"}"#)
        };
        if written.is_err() {
            return;
        }
    }
}

fn respond(
    w: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        _ => "Not Found",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// One HTTP/1.1 request; `None` when the client closed the connection. Bodies by
/// Content-Length or chunked.
fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<HttpRequest>> {
    let mut line = String::new();
    // Blank lines between requests are allowed.
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut content_length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if r.read_line(&mut header)? == 0 {
            return Ok(None);
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                content_length = v.parse().unwrap_or(0);
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            if r.read_line(&mut size)? == 0 {
                return Ok(None);
            }
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            let mut crlf = String::new();
            r.read_line(&mut crlf)?;
        }
    } else if content_length > 0 {
        body = vec![0; content_length];
        r.read_exact(&mut body)?;
    }
    Ok(Some(HttpRequest { method, path, body }))
}
