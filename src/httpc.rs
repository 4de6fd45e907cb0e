//! The HTTP/1.1 client pieces orch's outgoing requests share (webhooks, etcd's JSON
//! gateway): URLs parsed without ever echoing their secrets, a kept-alive connection over
//! TCP or TLS (rustls with webpki-roots' roots, or a given CA, and a client certificate
//! when asked), and a JSON exchange with a deadline. I/O: TCP and TLS connections, and
//! reading the PEM files TLS is given.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why a connection could not be made.
#[derive(Debug)]
pub enum ConnectError {
    Connect(std::io::Error),
    Tls(std::io::Error),
    Http(hyper::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Connect(e) => write!(f, "cannot connect: {e}"),
            ConnectError::Tls(e) => write!(f, "{}", tls_text(e)),
            ConnectError::Http(e) => write!(f, "HTTP: {e}"),
        }
    }
}

/// A request to send with [`exchange`].
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub headers: &'a [(&'static str, HeaderValue)],
    pub body: Bytes,
}

/// One request on `conn` (made first when None): the status and the whole body, within
/// `deadline`. Any error drops the connection (the next request makes a new one).
pub async fn exchange(
    conn: &mut Option<Conn>,
    ep: &Endpoint,
    tls: Option<&TlsConnector>,
    call: Call<'_>,
    deadline: Duration,
) -> Result<(StatusCode, Bytes), String> {
    let result = match tokio::time::timeout(deadline, send_on(conn, ep, tls, call)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {deadline:?}")),
    };
    if result.is_err() {
        *conn = None;
    }
    result
}

async fn send_on(
    conn: &mut Option<Conn>,
    ep: &Endpoint,
    tls: Option<&TlsConnector>,
    call: Call<'_>,
) -> Result<(StatusCode, Bytes), String> {
    let c = match conn {
        Some(c) => c,
        slot @ None => slot.insert(connect(ep, tls).await.map_err(|e| e.to_string())?),
    };
    if let Err(e) = c.sender.ready().await {
        return Err(c.failed(e).await);
    }
    let mut request = Request::builder()
        .method(call.method)
        .uri(call.path)
        .header(header::HOST, ep.host_header.clone())
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    for (name, value) in call.headers {
        request = request.header(*name, value.clone());
    }
    let request = request
        .body(Full::new(call.body))
        .map_err(|e| format!("the request: {e}"))?;
    let answer = match c.sender.send_request(request).await {
        Ok(a) => a,
        Err(e) => return Err(c.failed(e).await),
    };
    let status = answer.status();
    let body = match answer.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(c.failed(e).await),
    };
    Ok((status, body))
}

pub const USER_AGENT: &str = concat!("orch/", env!("CARGO_PKG_VERSION"));

/// hyper's error with its causes: hyper's own words alone ("connection error") hide why,
/// e.g. the TLS alert of a server that wants a client certificate.
fn chain(e: &hyper::Error) -> String {
    let mut text = e.to_string();
    let mut refused = false;
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        refused |= c
            .downcast_ref::<std::io::Error>()
            .is_some_and(certificate_refused);
        cause = c.source();
    }
    if refused {
        text.push_str(&format!(" ({CERTIFICATE_REFUSED})"));
    }
    text
}

/// What an error about this client's certificate adds (a caller may look for it to say
/// which option gives one).
pub const CERTIFICATE_REFUSED: &str =
    "the server refused this client's certificate: none was sent, or one it does not trust";

/// What an error about the server's certificate's CA adds.
pub const ISSUER_UNKNOWN: &str =
    "the server's certificate is not signed by a CA this client trusts";

/// A TLS error in words, with what it means when it is about a certificate.
pub fn tls_text(e: &std::io::Error) -> String {
    if certificate_refused(e) {
        format!("TLS: {e} ({CERTIFICATE_REFUSED})")
    } else if issuer_unknown(e) {
        format!("TLS: {e} ({ISSUER_UNKNOWN})")
    } else {
        format!("TLS: {e}")
    }
}

/// Whether a TLS error is about a certificate (either side's): a setting to mend, which
/// trying again will not.
pub fn certificate_problem(e: &std::io::Error) -> bool {
    certificate_refused(e)
        || matches!(
            e.get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
            Some(rustls::Error::InvalidCertificate(_))
        )
}

fn issuer_unknown(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        ))
    )
}

/// Whether the server ended the TLS session over this client's certificate. A server that
/// requires one (etcd's --client-cert-auth) says so with an alert: during the handshake in
/// TLS 1.2, on the first read in TLS 1.3 (the client has finished its side by then).
fn certificate_refused(e: &std::io::Error) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(
            A::BadCertificate
                | A::CertificateRequired
                | A::UnknownCA
                | A::UnsupportedCertificate
                | A::CertificateExpired
                | A::CertificateRevoked
                | A::CertificateUnknown
        ))
    )
}

/// A kept-alive connection; its driving task ends with it.
pub struct Conn {
    pub sender: SendRequest<Full<Bytes>>,
    /// Ends with the connection: with [`chain`] of its error, if it failed.
    task: tokio::task::JoinHandle<Option<String>>,
}

impl Conn {
    /// What to say when a request on this connection failed with `e`. When the connection
    /// ended before the request could go ("channel closed"), `e` has no cause: the
    /// connection's own error says why (a TLS 1.3 server refusing this client's
    /// certificate ends the session as the first request is written).
    async fn failed(&mut self, e: hyper::Error) -> String {
        if std::error::Error::source(&e).is_none()
            && (e.is_closed() || e.is_canceled())
            && let Ok(Some(why)) = (&mut self.task).await
        {
            return format!("HTTP: {e}: {why}");
        }
        format!("HTTP: {}", chain(&e))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn connect(ep: &Endpoint, tls: Option<&TlsConnector>) -> Result<Conn, ConnectError> {
    let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
        .await
        .map_err(ConnectError::Connect)?;
    // Small requests answered at once: do not let Nagle wait for the peer's delayed ACK.
    let _ = tcp.set_nodelay(true);
    match (&ep.server_name, tls) {
        (Some(name), Some(tls)) => {
            let stream = tls
                .connect(name.clone(), tcp)
                .await
                .map_err(ConnectError::Tls)?;
            handshake(TokioIo::new(stream)).await
        }
        _ => handshake(TokioIo::new(tcp)).await,
    }
}

async fn handshake<I>(io: I) -> Result<Conn, ConnectError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(ConnectError::Http)?;
    // Its error also reaches the request in flight, if there is one; when there is none,
    // the next request asks for it ([`Conn::failed`]).
    let task = tokio::spawn(async move { connection.await.err().map(|e| chain(&e)) });
    Ok(Conn { sender, task })
}

/// What a TLS client trusts and shows, from PEM files (etcdctl's `--cacert`, `--cert`,
/// `--key`).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// CA certificates to verify the server with, instead of webpki-roots' public roots:
    /// a private CA is all a private service's certificate chains up to.
    pub ca: Option<PathBuf>,
    /// A certificate (and its chain) and its private key, for servers that ask for one.
    pub client: Option<ClientCert>,
}

#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Which of [`TlsFiles`]' files a [`TlsError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    Ca,
    Cert,
    Key,
}

/// Why a TLS client could not be set up. Never holds a file's contents (a key file's are
/// secret): only its path and what is wrong with it.
#[derive(Debug)]
pub enum TlsError {
    File {
        which: TlsFile,
        path: PathBuf,
        problem: String,
    },
    /// rustls refused the configuration itself.
    Config(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::File { path, problem, .. } => write!(f, "{}: {problem}", path.display()),
            TlsError::Config(e) => write!(f, "TLS: {e}"),
        }
    }
}

/// rustls with `files`' CA (without one the Mozilla roots of webpki-roots, no system
/// store: the same trust on every machine orch runs on) and client
/// certificate (none without one), speaking HTTP/1.1. Reads the files.
fn tls_connector_with(files: &TlsFiles) -> Result<TlsConnector, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &files.ca {
        None => rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        Some(path) => {
            let bad = |problem: String| TlsError::File {
                which: TlsFile::Ca,
                path: path.clone(),
                problem,
            };
            let mut roots = rustls::RootCertStore::empty();
            for (i, cert) in pem_certificates(path).map_err(bad)?.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    bad(format!("certificate {} cannot be used as a CA: {e}", i + 1))
                })?;
            }
            roots
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match &files.client {
        None => builder.with_no_client_auth(),
        Some(ClientCert { cert, key }) => {
            let chain = pem_certificates(cert).map_err(|problem| TlsError::File {
                which: TlsFile::Cert,
                path: cert.clone(),
                problem,
            })?;
            let bad_key = |problem: String| TlsError::File {
                which: TlsFile::Key,
                path: key.clone(),
                problem,
            };
            let der = read_pem(key).map_err(bad_key)?;
            let private = PrivateKeyDer::from_pem_slice(&der).map_err(|e| {
                bad_key(match e {
                    pem::Error::NoItemsFound => "no private key in it (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY; an encrypted key must be decrypted first)".into(),
                    e => pem_problem(e),
                })
            })?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => bad_key(format!(
                        "this key does not belong to the certificate in {}",
                        cert.display()
                    )),
                    // rustls's words for a key it cannot use name no key material.
                    e => bad_key(format!("not a key orch can use: {e}")),
                })?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A TLS connector made from [`TlsFiles`], and made again when one of them changed (a
/// rotated certificate), so that a process running for months uses the new files from
/// its next connection on. Files that no longer make a client (a certificate replaced
/// before its key) are said once; connections keep the last good ones meanwhile.
pub struct TlsReloader {
    files: TlsFiles,
    current: std::sync::Mutex<(TlsConnector, Vec<FileStamp>)>,
}

/// What tells a file changed: its modification time, length and inode (a rename over it).
type FileStamp = Option<(std::time::SystemTime, u64, u64)>;

impl TlsReloader {
    /// Reads the files: an error says which one is wrong.
    pub fn new(files: TlsFiles) -> Result<TlsReloader, TlsError> {
        let stamps = stamps(&files);
        let connector = tls_connector_with(&files)?;
        Ok(TlsReloader {
            files,
            current: std::sync::Mutex::new((connector, stamps)),
        })
    }

    /// The connector for a new connection: from the files as they are now.
    pub fn connector(&self) -> TlsConnector {
        let now = stamps(&self.files);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.1 != now {
            match tls_connector_with(&self.files) {
                Ok(c) => {
                    tracing::info!("TLS files changed: new connections use them");
                    current.0 = c;
                }
                Err(e) => tracing::warn!(
                    "TLS files changed, but {e}: new connections keep the previous ones until it is mended"
                ),
            }
            current.1 = now;
        }
        current.0.clone()
    }
}

fn stamps(files: &TlsFiles) -> Vec<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let client = files.client.as_ref();
    [
        files.ca.as_deref(),
        client.map(|c| c.cert.as_path()),
        client.map(|c| c.key.as_path()),
    ]
    .into_iter()
    .flatten()
    .map(|path| {
        let m = std::fs::metadata(path).ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    })
    .collect()
}

/// A PEM file's bytes; the error says what is wrong, never what is in it.
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))
}

/// Every certificate in a PEM file, at least one.
fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_problem)?;
    if certs.is_empty() {
        return Err("no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// What is wrong with a PEM file, in words that quote none of it (the parser's own
/// errors may hold a line of the file).
fn pem_problem(e: pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "not valid PEM: a section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "not valid PEM: a malformed BEGIN line".into(),
        pem::Error::Base64Decode(_) => "not valid PEM: a section is not base64".into(),
        pem::Error::SectionTooLarge => "not valid PEM: a section is too large".into(),
        pem::Error::NoItemsFound => "nothing usable in it".into(),
        _ => "not valid PEM".into(),
    }
}

/// A parsed webhook URL.
pub struct Endpoint {
    /// The host to connect to (an IPv6 literal without its brackets).
    pub host: String,
    pub port: u16,
    /// `Host:` as written (brackets kept), with the port when it is not the default.
    pub host_header: HeaderValue,
    /// Path and query, at least `/`.
    pub path: String,
    /// HTTPS: the name the certificate must carry (also sent as SNI).
    pub server_name: Option<ServerName<'static>>,
    /// The userinfo as HTTP Basic.
    pub authorization: Option<HeaderValue>,
    /// The URL without userinfo, query or fragment ([`url_label`]): what logs show.
    pub label: String,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The query may hold a token, the userinfo a password.
        write!(f, "Endpoint({})", self.label)
    }
}

impl Endpoint {
    /// Parses `scheme://[userinfo@]host[:port][/path][?query][#fragment]` for http and
    /// https. Errors never repeat the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("not a URL: expected http://HOST/PATH or https://HOST/PATH")?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => {
                return Err(format!(
                    "scheme `{scheme}` is not supported: use http:// or https://"
                ));
            }
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        // The fragment is the client's own business: never sent.
        let tail = tail.split('#').next().unwrap_or("");
        let path = match tail.chars().next() {
            None => "/".to_string(),
            Some('?') => format!("/{tail}"),
            _ => tail.to_string(),
        };
        if path.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
            return Err("the path has spaces or non-ASCII characters: percent-encode them".into());
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, host_written, port) = if let Some(after) = hostport.strip_prefix('[') {
            let (ip, after) = after
                .split_once(']')
                .ok_or("an IPv6 address in brackets is not closed by `]`")?;
            ip.parse::<Ipv6Addr>()
                .map_err(|_| format!("`[{ip}]` is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("expected `:PORT` after `]`")?),
            };
            (ip.to_string(), &hostport[..ip.len() + 2], port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), h, Some(p)),
                None => (hostport.to_string(), hostport, None),
            }
        };
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        if host_written == host && host.contains(':') {
            return Err("an IPv6 address must be in brackets: http://[::1]:8080/".into());
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%:".contains(&b))
        {
            return Err(format!("`{host_written}` is not a host name or address"));
        }
        let default_port = if tls { 443 } else { 80 };
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("port `{p}` is not a number from 1 to 65535"))?,
        };
        let host_header = if port == default_port {
            host_written.to_string()
        } else {
            format!("{host_written}:{port}")
        };
        let host_header = HeaderValue::from_str(&host_header)
            .map_err(|_| format!("`{host_written}` is not a host name or address"))?;
        // Exactly what the request builder will parse, so that building cannot fail later.
        hyper::Uri::try_from(path.as_str()).map_err(|e| format!("the path is not valid: {e}"))?;
        let server_name = if tls {
            Some(
                ServerName::try_from(host.clone())
                    .map_err(|_| format!("`{host}` is not a valid TLS server name"))?,
            )
        } else {
            None
        };
        let authorization = match userinfo {
            None => None,
            Some(u) => {
                let decoded = percent_decode(u).ok_or("the userinfo has a bad %-escape")?;
                let mut value = HeaderValue::from_str(&format!("Basic {}", base64(&decoded)))
                    .map_err(|_| "the userinfo cannot be sent as a header")?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Endpoint {
            host,
            port,
            host_header,
            path,
            server_name,
            authorization,
            label: url_label(url),
        })
    }
}

/// `url` without userinfo (`user:password@`), query or fragment: what logs and metric
/// labels show. Works on any string, parsed or not.
pub fn url_label(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = tail.split(['?', '#']).next().unwrap_or("");
    match scheme {
        Some(s) => format!("{s}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Standard base64 with padding (RFC 4648), for HTTP Basic.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes `%XX` escapes (userinfo in a URL is percent-encoded: `p%40ss` is `p@ss`).
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// Decodes standard base64 (with or without padding); None when it is not base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for &c in chunk {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * (4 - chunk.len() as u32);
        let keep = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&n.to_be_bytes()[1..1 + keep]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for text in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "orch/clusters/shop",
        ] {
            let encoded = base64(text.as_bytes());
            assert_eq!(
                base64_decode(&encoded).unwrap(),
                text.as_bytes(),
                "{encoded}"
            );
        }
        assert_eq!(base64_decode("b3JjaC9sZWFkZXI").unwrap(), b"orch/leader");
        assert!(base64_decode("a$==").is_none());
    }

    /// A rotated file makes a new connector; a broken one keeps the last good one until
    /// it is mended; unchanged files keep the same one.
    #[test]
    fn a_rotated_certificate_is_used_by_the_next_connection() {
        use crate::sandbox::tls::{make_ca, make_signed};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_ca(d, "ca", "/CN=one").unwrap();
        let client = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n";
        make_signed(d, "ca", ("client.pem", "client-key.pem"), "/CN=c", client).unwrap();
        let files = TlsFiles {
            ca: Some(d.join("ca.pem")),
            client: Some(ClientCert {
                cert: d.join("client.pem"),
                key: d.join("client-key.pem"),
            }),
        };
        let tls = TlsReloader::new(files).unwrap();
        let same = |a: &TlsConnector, b: &TlsConnector| Arc::ptr_eq(a.config(), b.config());
        let first = tls.connector();
        assert!(
            same(&first, &tls.connector()),
            "unchanged files, same connector"
        );
        // Half a rotation: a new certificate, its key not yet written.
        let key = d.join("client-key.pem");
        let old_key = std::fs::read(&key).unwrap();
        make_signed(d, "ca", ("client.pem", "client-key.pem"), "/CN=c2", client).unwrap();
        let new_key = std::fs::read(&key).unwrap();
        std::fs::write(d.join("next-key.pem"), &old_key).unwrap();
        std::fs::rename(d.join("next-key.pem"), &key).unwrap();
        assert!(
            same(&first, &tls.connector()),
            "a broken pair keeps the old one"
        );
        // The key follows: the new pair is used.
        std::fs::write(d.join("next-key.pem"), &new_key).unwrap();
        std::fs::rename(d.join("next-key.pem"), &key).unwrap();
        let second = tls.connector();
        assert!(!same(&first, &second), "the rotated pair is used");
        assert!(same(&second, &tls.connector()));
    }

    #[test]
    fn tls_errors_about_certificates_say_whose() {
        let io = |e: rustls::Error| std::io::Error::other(e);
        let alert = |a| io(rustls::Error::AlertReceived(a));
        for a in [
            rustls::AlertDescription::BadCertificate,
            rustls::AlertDescription::CertificateRequired,
            rustls::AlertDescription::UnknownCA,
        ] {
            let text = ConnectError::Tls(alert(a)).to_string();
            assert!(
                text.ends_with(&format!("({CERTIFICATE_REFUSED})")),
                "{text}"
            );
        }
        let text = ConnectError::Tls(io(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )))
        .to_string();
        assert!(text.ends_with(&format!("({ISSUER_UNKNOWN})")), "{text}");
        for other in [
            alert(rustls::AlertDescription::HandshakeFailure),
            io(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            )),
        ] {
            let text = ConnectError::Tls(other).to_string();
            assert!(!text.contains(" (the "), "{text}");
        }
    }

    #[test]
    fn base64_and_hex() {
        for (input, out) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), out);
        }
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
    }
}
