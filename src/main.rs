use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use sipfence::cli;

/// sipfence: a SIP signaling firewall against fraud calls.
#[derive(Parser)]
#[command(version = sipfence::VERSION, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the inline proxy (built-in example policy on 127.0.0.1 when no --config).
    Run {
        /// Policy file (TOML); the built-in example policy on 127.0.0.1 when omitted.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Worker threads (one receive loop each); default: config, else one per core.
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Validate a policy file and the files it names; print a summary.
    Check {
        /// Policy file (TOML); the built-in example policy when omitted.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also say what it changes against this policy (the one running): what a
        /// reload would apply, and what would take a restart.
        #[arg(long)]
        against: Option<PathBuf>,
    },
    /// Replay pcap/pcapng captures through a policy: the verdict every call would get.
    Replay {
        /// Policy file (TOML); the built-in example policy when omitted.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Judge every packet as arriving on this trunk (default: match by address).
        #[arg(long)]
        trunk: Option<String>,
        /// One JSON record per decision, then a summary object.
        #[arg(long)]
        json: bool,
        /// Also replay through this policy (the running one) and print only the calls
        /// the two judge otherwise: what a policy change would do, before it goes live.
        #[arg(long, conflicts_with_all = ["write_blocked", "write_allowed"])]
        baseline: Option<PathBuf>,
        /// Write the packets of blocked calls to this pcap.
        #[arg(long)]
        write_blocked: Option<PathBuf>,
        /// Write the packets of allowed calls to this pcap.
        #[arg(long)]
        write_allowed: Option<PathBuf>,
        /// pcap, pcapng or gzipped captures (SIP over UDP, TCP, SCTP or WebSocket, bare or
        /// in tunnels, or HEP from a Homer server); `-` reads one from standard input as
        /// it comes
        /// (`tcpdump -U -w - | sipfence replay -`).
        #[arg(required = true)]
        captures: Vec<PathBuf>,
    },
    /// Trace-back: the decisions kept in the signaling records for a number, a call or
    /// a time (numbers in any form: they are normalised as the calls were).
    Trace(cli::trace::Args),
    /// What the filter makes of a calling number (normalised form, class, lists) and
    /// the verdict a call from it gets on each trunk. Exit 1 when a trunk refuses it.
    Number(cli::number::Args),
    /// Lists shared by every gateway through Redis.
    Lists {
        #[command(subcommand)]
        cmd: ListsCmd,
    },
    /// Show the verdict on SIP messages stored in files, and why.
    Explain {
        /// Policy file (TOML); the built-in example policy when omitted.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Judge as arriving on this trunk (default: the first of the file), from its
        /// first source address.
        #[arg(long, conflicts_with = "source")]
        trunk: Option<String>,
        /// Judge as arriving from this address (the trunk is matched as live).
        #[arg(long)]
        source: Option<SocketAddr>,
        /// With --source: the listen address it arrived at (`udp:127.0.0.1:5062`), which
        /// tells apart trunks that share sources, as the proxy and replay do.
        #[arg(long, requires = "source", conflicts_with = "trunk")]
        to: Option<String>,
        /// Time of the call (hour and day rules): Unix seconds or RFC 3339
        /// (`2026-11-30T10:00:00+08:00`); default now.
        #[arg(long)]
        at: Option<String>,
        /// One JSON object per message.
        #[arg(long)]
        json: bool,
        /// Also print the response or the rewritten request.
        #[arg(long)]
        output: bool,
        /// Files holding one SIP message each; `-` reads one from standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ListsCmd {
    /// Check list files and publish them as one new version; every gateway with
    /// `[redis] lists = true` swaps it in within `list_poll_ms`.
    Publish {
        /// Policy whose [redis] section (url, prefix) and numbering plan to use.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Redis URL (overrides the policy's).
        #[arg(long)]
        redis: Option<String>,
        /// The gateways' [redis] prefix (overrides the policy's; default "sipfence").
        #[arg(long)]
        prefix: Option<String>,
        /// Publish a list cut by more than half against the sets in Redis (refused
        /// otherwise, as a reload refuses a cut list file; the gateways take a set so
        /// published as it comes).
        #[arg(long)]
        force: bool,
        /// NAME=FILE: blacklist, protected, roamers, own_segments, exempt or whitelist:<trunk>.
        #[arg(required = true)]
        lists: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Run { .. }) {
        // Report tools end quietly when their reader goes away (`replay ... | head`),
        // as Unix tools do; the proxy keeps ignoring SIGPIPE (a peer closing a socket
        // must not kill it).
        // SAFETY: resetting a signal disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Cmd::Replay { captures, .. } = &cli.cmd
        && captures
            .iter()
            .any(|c| sipfence::replay::capture::is_stdin(c))
    {
        if std::io::stdin().is_terminal() {
            eprintln!(
                "sipfence: replay -: standard input is a terminal; pipe a capture in (tcpdump -U -w - ... | sipfence replay -)"
            );
            std::process::exit(2);
        }
        interrupt_ends_the_capture();
    }
    let code = match cli.cmd {
        Cmd::Run { config, workers } => {
            sipfence::proxy::run(sipfence::proxy::RunArgs { config, workers })
        }
        Cmd::Check { config, against } => cli::check(config, against),
        Cmd::Trace(args) => match cli::load_policy(args.config.as_deref()) {
            Ok(p) => cli::trace::run(&p, &args),
            Err(e) => {
                eprintln!("sipfence: config refused: {e}");
                2
            }
        },
        Cmd::Number(args) => match cli::load_policy(args.config.as_deref()) {
            Ok(p) => cli::number::run(&p, &args),
            Err(e) => {
                eprintln!("sipfence: config refused: {e}");
                2
            }
        },
        Cmd::Lists {
            cmd:
                ListsCmd::Publish {
                    config,
                    redis,
                    prefix,
                    force,
                    lists,
                },
        } => cli::lists::publish(&cli::lists::PublishArgs {
            config,
            redis,
            prefix,
            lists,
            force,
        }),
        Cmd::Replay {
            config,
            trunk,
            json,
            baseline,
            write_blocked,
            write_allowed,
            captures,
        } => match (
            cli::load_policy(config.as_deref()),
            baseline
                .as_deref()
                .map(|b| cli::load_policy(Some(b)))
                .transpose(),
        ) {
            (Err(e), _) => {
                eprintln!("sipfence: config refused: {e}");
                1
            }
            (_, Err(e)) => {
                eprintln!("sipfence: baseline config refused: {e}");
                1
            }
            (Ok(p), Ok(baseline)) => sipfence::replay::run(
                &p,
                &sipfence::replay::Args {
                    baseline,
                    trunk,
                    json,
                    write_blocked,
                    write_allowed,
                    files: captures,
                },
            ),
        },
        Cmd::Explain {
            config,
            trunk,
            source,
            to,
            at,
            json,
            output,
            files,
        } => match (
            cli::load_policy(config.as_deref()),
            at.as_deref().map(sipfence::time::parse_time).transpose(),
        ) {
            (_, Err(e)) => {
                eprintln!("sipfence: --at: {e}");
                2
            }
            (Ok(p), Ok(at_ms)) => cli::explain::run(
                &p,
                &cli::explain::Args {
                    trunk,
                    source,
                    to,
                    at_ms,
                    json,
                    show_output: output,
                    files,
                },
            ),
            (Err(e), _) => {
                eprintln!("sipfence: config refused: {e}");
                1
            }
        },
    };
    std::process::exit(code);
}

static INTERRUPTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn on_interrupt(_: libc::c_int) {
    // Only async-signal-safe calls here: write(2) and _exit(2).
    if INTERRUPTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
        const SAY: &[u8] =
            b"\nsipfence: interrupted: the summary follows when the capture ends (Ctrl-C again to quit now)\n";
        // SAFETY: writing a static buffer to fd 2.
        unsafe {
            libc::write(2, SAY.as_ptr().cast(), SAY.len());
        }
    } else {
        // SAFETY: ends the process at once, as the default action would.
        unsafe { libc::_exit(130) }
    }
}

/// `tcpdump -U -w - | sipfence replay -` stopped with Ctrl-C: the shell interrupts both
/// ends of the pipe. tcpdump writes its last packets and closes the pipe; sipfence, which
/// would die with its summary unprinted, lets that end of input finish the replay
/// instead. A second Ctrl-C quits at once.
fn interrupt_ends_the_capture() {
    // SAFETY: installs a handler that only makes async-signal-safe calls, before any
    // thread is started; SA_RESTART resumes the read the signal interrupted.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_interrupt as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}
