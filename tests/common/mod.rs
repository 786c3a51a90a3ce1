//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared` beside the project. Under CI it must exist (a missing corpus is a
/// failure, not a skip); elsewhere a test without it prints why and skips.
pub fn shared_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if p.join("corpus").is_dir() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "../shared/corpus is missing at {}: CI needs it",
            p.display()
        );
    }
    eprintln!("skipped: ../shared/corpus not found at {}", p.display());
    None
}

pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// `sipp` on PATH. Under CI it must be there (the test script installs it); elsewhere
/// the test prints why and skips.
pub fn sipp_available() -> bool {
    tool_available("sipp", "-v")
}

/// tshark on PATH, on the same terms as sipp.
pub fn tshark_available() -> bool {
    tool_available("tshark", "--version")
}

/// sipvicious' password guesser, on the same terms as sipp.
pub fn svcrack_available() -> bool {
    tool_available("svcrack", "--version")
}

/// Whether a tool scripts/deps.sh installs must be there: under CI, and under
/// `scripts/test.sh`, which runs deps.sh first and sets `SIPFENCE_TOOLS_REQUIRED=1` (QA
/// 204: the README's test command skipped a test whose tool was missing, and passed).
/// Elsewhere (a bare `cargo test`) such a test prints why and skips.
pub fn tools_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("SIPFENCE_TOOLS_REQUIRED").is_ok_and(|v| v == "1")
}

/// A tool scripts/deps.sh installs: missing where [`tools_required`] is a failure,
/// elsewhere a skip with the reason printed.
fn tool_available(tool: &str, version_arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        if tools_required() {
            panic!("{tool} is missing: run scripts/deps.sh (CI installs it)");
        }
        eprintln!("skipped: {tool} not installed (scripts/deps.sh installs it)");
    }
    ok
}

/// libfaketime's preload library (scripts/deps.sh installs it), on the same terms as
/// sipp: a process started with it reads a wall clock the test steps.
#[allow(dead_code)]
pub fn faketime_lib() -> Option<std::path::PathBuf> {
    let found = Command::new("dpkg")
        .args(["-S", "libfaketimeMT.so.1"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.split_once(": ").map(|(_, p)| p.trim().to_string()))
        })
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists());
    if found.is_none() {
        if tools_required() {
            panic!("libfaketime is missing: run scripts/deps.sh (CI installs it)");
        }
        eprintln!("skipped: libfaketime not installed (scripts/deps.sh installs it)");
    }
    found
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A block of 40 free-looking ports for one test (tests of one binary run in parallel).
/// Below Linux's ephemeral range (32768 and up): a client socket of another test (sipp,
/// a TcpStream, the proxy's own connections) is given a port from that range, and one
/// that lands in a block makes the proxy's listen fail.
pub fn port_block() -> u16 {
    // 10 process slots of 2,000 ports from 12000: fifty blocks of 40 in one binary (e2e
    // asks for 44), all under 32,000. With slots of 500 the forty-fourth block of a
    // process in the last slots reached 33,260, in the ephemeral range, and a sipp
    // there hung on a port another socket had (session 53's first CI run).
    let base = 12_000 + (std::process::id() % 10) as u16 * 2_000;
    base + NEXT_PORT.fetch_add(40, Ordering::Relaxed) % 2_000
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `sipfence run` with its config in a temp dir.
pub struct Proxy {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub metrics: String,
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Its log (stderr), line by line, as it comes.
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proxy {
    /// Starts the proxy and waits until it reports its workers (listeners are bound by then).
    pub fn start(config: &str, workers: usize) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, config, workers, &|_| {})
    }

    /// [`Proxy::start`] in `dir` (files the config names may be there), calling `hook`
    /// with the process id as soon as it runs, before it is ready.
    pub fn start_in(
        dir: tempfile::TempDir,
        config: &str,
        workers: usize,
        hook: &dyn Fn(u32),
    ) -> Proxy {
        Self::start_limited_in(dir, config, workers, hook, None, &[])
    }

    /// [`Proxy::start`] with these environment variables (libfaketime's).
    #[allow(dead_code)]
    pub fn start_env(config: &str, workers: usize, env: &[(&str, &std::ffi::OsStr)]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        Self::start_limited_in(dir, config, workers, &|_| {}, None, env)
    }

    /// [`Proxy::start`] with its open files limit (soft and hard) at `nofile`.
    pub fn start_limited(config: &str, workers: usize, nofile: u64) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        Self::start_limited_in(dir, config, workers, &|_| {}, Some(nofile), &[])
    }

    fn start_limited_in(
        dir: tempfile::TempDir,
        config: &str,
        workers: usize,
        hook: &dyn Fn(u32),
        nofile: Option<u64>,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Proxy {
        let path = dir.path().join("sipfence.toml");
        std::fs::write(&path, config).unwrap();
        let args = [
            "run",
            "--config",
            path.to_str().unwrap(),
            "--workers",
            &workers.to_string(),
        ];
        let mut cmd = match nofile {
            // The shell sets the limit and becomes sipfence (`exec`): the pid is its.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_sipfence"))
                    .args(args);
                c
            }
            None => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_sipfence"));
                c.args(args);
                c
            }
        };
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sipfence");
        hook(child.id());
        let out = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    if l.contains("worker(s)") {
                        let _ = tx.send(());
                    }
                    lines.lock().unwrap().push(l);
                }
            });
        }
        let err = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(err).lines().map_while(Result::ok) {
                    eprintln!("[sipfence] {l}");
                    log.lock().unwrap().push(l);
                }
            });
        }
        let mut proc = Proc(child);
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let st = proc.0.try_wait();
            panic!(
                "sipfence did not start: {st:?}; stdout: {:?}",
                lines.lock().unwrap()
            );
        }
        let metrics = lines
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| {
                l.strip_prefix("sipfence: metrics on ")
                    .map(|s| s.trim_end_matches("/metrics").to_string())
            })
            .unwrap_or_default();
        Proxy {
            proc,
            dir,
            metrics,
            stdout: lines,
            stderr: log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }

    /// GET over HTTP as Prometheus would (plain HTTP/1.1, no client library needed).
    pub fn http(&self, method: &str, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let addr = self.metrics.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        let code = body
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = body
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }

    /// What `sipfence check` prints (stdout, then stderr) of this proxy's policy file,
    /// compared `--against` another when given.
    pub fn check(&self, against: Option<&Path>) -> String {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sipfence"));
        cmd.args(["check", "--config"])
            .arg(self.dir.path().join("sipfence.toml"));
        if let Some(a) = against {
            cmd.arg("--against").arg(a);
        }
        let out = cmd.output().expect("sipfence check runs");
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Value of one metric sample (exact label set as printed). A sample that is not
    /// there fails the test: every closed label set is created at start, so a missing
    /// series is a misspelt name or label, and asserting 0 on it would always pass.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.http("GET", "/metrics");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|r| r.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no sample {sample} in /metrics"))
    }
}

/// Runs a sipp process to completion with a deadline; returns (exit code, stdout+stderr).
pub fn run_sipp(args: &[&str], dir: &std::path::Path, deadline: Duration) -> (i32, String) {
    let mut child = Command::new("sipp")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp");
    let t = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            let out = child
                .wait_with_output()
                .map(|o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .unwrap_or_default();
            return (st.code().unwrap_or(-1), out);
        }
        if t.elapsed() > deadline {
            let _ = child.kill();
            let out = child
                .wait_with_output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            return (-2, out);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A sipp UAS on a UDP port, killed on drop.
pub fn sipp_uas(port: u16, scenario: Option<&std::path::Path>, dir: &std::path::Path) -> Proc {
    sipp_uas_on(port, scenario, dir, "u1")
}

/// A sipp UAS on a port over `transport` (u1 / t1), killed on drop.
pub fn sipp_uas_on(
    port: u16,
    scenario: Option<&std::path::Path>,
    dir: &std::path::Path,
    transport: &str,
) -> Proc {
    sipp_uas_at("127.0.0.1", port, scenario, dir, transport)
}

/// A sipp UAS on `ip` (an IPv4 or IPv6 address, without brackets), killed on drop.
pub fn sipp_uas_at(
    ip: &str,
    port: u16,
    scenario: Option<&std::path::Path>,
    dir: &std::path::Path,
    transport: &str,
) -> Proc {
    let port_s = port.to_string();
    let mut args: Vec<String> = vec![
        "-i".into(),
        ip.into(),
        "-p".into(),
        port_s,
        "-t".into(),
        transport.into(),
        "-nostdin".into(),
        "-bind_local".into(),
    ];
    match scenario {
        Some(s) => {
            args.push("-sf".into());
            args.push(s.display().to_string());
            args.push("-trace_err".into());
        }
        None => {
            args.push("-sn".into());
            args.push("uas".into());
        }
    }
    let c = Command::new("sipp")
        .args(&args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas");
    std::thread::sleep(Duration::from_millis(300));
    Proc(c)
}

/// The end-to-end UAC scenario expecting `expect` (200: a full call; else that rejection
/// code, then the ACK to the proxy).
pub fn uac_scenario(dir: &std::path::Path, expect: u16) -> std::path::PathBuf {
    let tpl = include_str!("../../testdata/sipp/uac.xml.in");
    let body = if expect == 200 {
        r#"  <recv response="180" optional="true"> </recv>
  <recv response="200" rtd="true" rrs="true"> </recv>
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0][local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:4008001234@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0][local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:4008001234@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="180" optional="true"> </recv>
  <recv response="200"> </recv>"#
            .to_string()
    } else {
        format!(
            r#"  <recv response="{expect}"> </recv>
  <send>
    <![CDATA[

      ACK sip:4008001234@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-4]
      From: <sip:[field0][local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:4008001234@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>"#
        )
    };
    let p = dir.join(format!("uac-{expect}.xml"));
    std::fs::write(&p, tpl.replace("@BODY@", &body)).unwrap();
    p
}

/// A sipp UAC run: `calls` calls at `rate` per second from `uac_port` to
/// 127.0.0.1:`port` over `transport` (u1 / t1), one CSV row per call.
pub struct Uac<'a> {
    pub dir: &'a std::path::Path,
    pub scenario: &'a std::path::Path,
    pub csv: &'a std::path::Path,
    pub port: u16,
    pub uac_port: u16,
    pub transport: &'a str,
    pub calls: usize,
    pub rate: u32,
}

impl Uac<'_> {
    /// Runs to completion (bounded); returns sipp's exit code and output.
    pub fn run(&self) -> (i32, String) {
        self.run_at("127.0.0.1")
    }

    /// The same from and to `ip` (an IPv4 or IPv6 address, without brackets).
    pub fn run_at(&self, ip: &str) -> (i32, String) {
        let target =
            std::net::SocketAddr::new(ip.parse().expect("an IP address"), self.port).to_string();
        let (p, n, r) = (
            self.uac_port.to_string(),
            self.calls.to_string(),
            self.rate.to_string(),
        );
        let args = [
            target.as_str(),
            "-sf",
            self.scenario.to_str().unwrap(),
            "-inf",
            self.csv.to_str().unwrap(),
            "-i",
            ip,
            "-p",
            &p,
            "-t",
            self.transport,
            "-m",
            &n,
            "-r",
            &r,
            "-nostdin",
            "-timeout",
            "40s",
            "-recv_timeout",
            "4000",
            "-trace_err",
        ];
        run_sipp(&args, self.dir, Duration::from_secs(60))
    }
}

/// How a call of the refusable UAC goes on once the proxy let it through.
pub enum Tail {
    /// Answered; the caller hangs up after this many ms.
    Answer(u32),
    Busy,
    /// Cancelled this many ms after the 180.
    Cancel(u32),
}

/// The refusable UAC (testdata/sipp/refusable-uac.xml.in) with `tail`, acknowledging
/// `refused` from the proxy as a normal end.
pub fn refusable_uac(dir: &Path, refused: u16, tail: &Tail, uac_port: u16) -> PathBuf {
    let tpl = include_str!("../../testdata/sipp/refusable-uac.xml.in");
    let ack_bye = |pause: u32| {
        format!(
            r#"  <recv response="180" optional="true"> </recv>
  <recv response="200" rrs="true"> </recv>
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-ack
      [routes]
      From: <sip:[field0]@[local_ip]:[local_port];user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port];user=phone>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="{pause}"/>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-bye
      [routes]
      From: <sip:[field0]@[local_ip]:[local_port];user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port];user=phone>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" next="10"> </recv>"#
        )
    };
    let ack_inv = |next: &str| {
        format!(
            r#"  <send next="{next}">
    <![CDATA[

      ACK sip:[field1]@[remote_ip]:[remote_port];user=phone SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-inv
      From: <sip:[field0]@[local_ip]:[local_port];user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port];user=phone>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>"#
        )
    };
    let (name, body) = match tail {
        Tail::Answer(ms) => (format!("answer-{ms}"), ack_bye(*ms)),
        Tail::Busy => (
            "busy".to_string(),
            format!("  <recv response=\"486\"> </recv>\n{}", ack_inv("10")),
        ),
        Tail::Cancel(ms) => (
            format!("cancel-{ms}"),
            format!(
                r#"  <recv response="180"> </recv>
  <pause milliseconds="{ms}"/>
  <send retrans="500">
    <![CDATA[

      CANCEL sip:[field1]@[remote_ip]:[remote_port];user=phone SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-inv
      From: <sip:[field0]@[local_ip]:[local_port];user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port];user=phone>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" optional="true"> </recv>
  <recv response="487"> </recv>
{}"#,
                ack_inv("10")
            ),
        ),
    };
    // One file per UAC: tests play several UACs at once from one directory, and sipp
    // must never read a scenario another thread is rewriting.
    let p = dir.join(format!("refusable-uac-{refused}-{name}-{uac_port}.xml"));
    std::fs::write(
        &p,
        tpl.replace("@TAIL@", &body)
            .replace("@REFUSED@", &refused.to_string()),
    )
    .unwrap();
    p
}

/// Plays `rows` (caller, callee) as calls at `rate` per second, one at a time, to the
/// proxy on `base`; a call the proxy refuses with `refused` ends normally.
pub fn play(
    dir: &Path,
    base: u16,
    uac_port: u16,
    refused: u16,
    tail: &Tail,
    rows: &[(String, String)],
    rate: u32,
) {
    play_at_once(dir, base, uac_port, refused, tail, rows, rate, 1)
}

/// [`play`] with up to `at_once` calls up at the same time.
#[allow(clippy::too_many_arguments, dead_code)]
pub fn play_at_once(
    dir: &Path,
    base: u16,
    uac_port: u16,
    refused: u16,
    tail: &Tail,
    rows: &[(String, String)],
    rate: u32,
    at_once: u32,
) {
    let sc = refusable_uac(dir, refused, tail, uac_port);
    let csv = dir.join(format!("calls-{uac_port}.csv"));
    let mut text = String::from("SEQUENTIAL\n");
    for (a, b) in rows {
        text.push_str(&format!("{a};{b};\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let target = format!("127.0.0.1:{base}");
    let (p, n, r, l) = (
        uac_port.to_string(),
        rows.len().to_string(),
        rate.to_string(),
        at_once.to_string(),
    );
    let (code, out) = run_sipp(
        &[
            &target,
            "-sf",
            sc.to_str().unwrap(),
            "-inf",
            csv.to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            &p,
            "-m",
            &n,
            "-r",
            &r,
            "-l",
            &l,
            "-nostdin",
            "-timeout",
            "40s",
            "-recv_timeout",
            "5000",
            "-trace_err",
        ],
        dir,
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "sipp UAC failed calls:\n{out}");
}

/// `redis-server` on PATH, on the same terms as sipp.
pub fn redis_available() -> bool {
    tool_available("redis-server", "--version")
}

/// A throw-away redis-server on 127.0.0.1:`port` (no persistence), killed on drop.
pub struct RedisServer {
    pub port: u16,
    proc: Option<Proc>,
}

impl RedisServer {
    pub fn start(port: u16) -> RedisServer {
        let mut r = RedisServer { port, proc: None };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would: SIGKILL).
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// Stops (`SIGSTOP`) or resumes (`SIGCONT`) the server: a Redis paused rather than
    /// gone, whose socket still takes what is sent to it.
    #[allow(dead_code)]
    pub fn pause(&self, paused: bool) {
        let Some(p) = &self.proc else { return };
        let sig = if paused { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([sig, &p.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} redis-server");
    }

    /// Starts it (again) and waits until it answers.
    pub fn restart(&mut self) {
        let c = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.proc = Some(Proc(c));
        let t = Instant::now();
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One redis-cli command; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

/// A UAS's answer to the request `req`: `status` (`200 OK`) with the request's Via,
/// From, To, Call-ID and CSeq lines, no body.
pub fn answer_as_uas(req: &str, status: &str) -> String {
    let head: String = req
        .split("\r\n")
        .filter(|l| {
            ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                .iter()
                .any(|h| l.starts_with(h))
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    format!("SIP/2.0 {status}\r\n{head}Content-Length: 0\r\n\r\n")
}

/// A UDP core on 127.0.0.1:`port`: every datagram it gets, until `stop`, goes to `on`
/// (the message, its sender, the core's socket to answer by).
pub fn udp_core(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    mut on: impl FnMut(&str, std::net::SocketAddr, &std::net::UdpSocket) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let core = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    core.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, from)) = core.recv_from(&mut b) {
                on(&String::from_utf8_lossy(&b[..n]), from, &core);
            }
        }
    })
}

/// A UDP core on 127.0.0.1:`port` ([`udp_core`]) that answers every request 200 OK but
/// ACK, an INVITE to `+861012345678` outside a dialog with its To tagged `core`;
/// answers and ACKs it takes in silence.
pub fn answering_core(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    udp_core(port, stop, |m, from, core| {
        if m.starts_with("ACK ") || m.starts_with("SIP/") {
            return;
        }
        let mut answer = answer_as_uas(m, "200 OK");
        if m.starts_with("INVITE ") && !m.contains(";tag=core") {
            answer = answer.replacen(
                "\r\nTo: <sip:+861012345678@127.0.0.1>",
                "\r\nTo: <sip:+861012345678@127.0.0.1>;tag=core",
                1,
            );
        }
        core.send_to(answer.as_bytes(), from).unwrap();
    })
}
