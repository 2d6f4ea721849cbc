//! `axon`: the node binary.

use anyhow::Context;
use axon::config::{Config, LogFormat, Overrides};
use axon_supervisors::Exit;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Allocations cross threads on every action (a request is built on an HTTP worker and
/// freed on the pipeline's); mimalloc's per-thread free lists take that without the
/// arena locks and consolidation glibc's malloc spends its time in.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "axon", version, about = "Axon: a supervised actuation node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the node: the supervision tree and the admin HTTP endpoint.
    Run {
        /// A TOML file with the settings to change from the defaults (config/node.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the node keeps its state [default: ./axon-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The admin HTTP address [default: 127.0.0.1:7700].
        #[arg(long)]
        listen: Option<String>,
        /// Log format [default: human].
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
        /// Export traces with OTLP/HTTP to this endpoint, e.g. http://127.0.0.1:4318/v1/traces.
        #[arg(long)]
        otlp_endpoint: Option<String>,
    },
    /// Driver manifests, and the drivers of a running node.
    Drivers {
        #[command(subcommand)]
        what: DriversWhat,
    },
    /// Prints the effective configuration (defaults, file, environment, flags) as TOML.
    Config {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Measures parts of Axon on this machine and prints the figures.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Checks a journal proof against a signed checkpoint, offline. Exit 0: verified.
    VerifyProof {
        /// The verifier key (GET /v1/journal/key).
        #[arg(long)]
        key: PathBuf,
        /// The signed checkpoint (GET /v1/journal/checkpoint).
        #[arg(long)]
        checkpoint: PathBuf,
        /// The proof JSON (GET /v1/journal/proof/...); `-` reads standard input.
        #[arg(long, default_value = "-")]
        proof: PathBuf,
        /// With an inclusion proof: the entry JSON (GET /v1/journal/entries/{index}), whose
        /// bytes must hash to the proven leaf.
        #[arg(long)]
        entry: Option<PathBuf>,
        /// With a consistency proof: an older signed checkpoint it must start from.
        #[arg(long)]
        old_checkpoint: Option<PathBuf>,
    },
    /// Re-runs a recorded driver call offline with its recorded seeds and clock and compares
    /// the output bytes. Exit 1 on a difference (non-determinism), with both hashes.
    Replay {
        /// The action id (32 hex digits) or the barcode of the entry holding its capsule.
        action: String,
        #[arg(long)]
        config: Option<PathBuf>,
        /// [default: ./axon-data]
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Checks a stopped node's journal without writing to its segments: record checksums, canonical
    /// entries, order, links, commit records, every signed checkpoint it issued, and the
    /// derived index. Exit 1 names the first bad record.
    Audit {
        #[arg(long)]
        config: Option<PathBuf>,
        /// [default: ./axon-data]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Rebuild the derived index (sled) from the segments.
        #[arg(long)]
        rebuild_index: bool,
        /// A signed checkpoint this journal handed out, kept elsewhere (a file, or - for
        /// standard input); checked against the tree too. May be given many times.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// The journal's verifier key as the node printed it at its first start (the text,
        /// or a file holding it), kept outside the data directory: the journal's key must
        /// be this one and every checkpoint signed by it.
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
    },
}

#[derive(Subcommand)]
enum DriversWhat {
    /// Checks one driver manifest without starting anything. Exit 0 prints the driver's
    /// descriptor (with its artifact hash) as JSON; exit 1 names the file and the key
    /// that is wrong.
    Check { file: PathBuf },
    /// The drivers of a running node: name, lane, health, capability, artifact hash.
    List {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// One driver of a running node, as JSON.
    Show {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// How a driver's pushes have gone, as JSON: calls, errors by kind, latency
    /// percentiles, predicted and realized utility, restarts; over the sliding window and
    /// in total.
    Scorecard {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Grows an http driver manifest from one operation of an OpenAPI 3 document (JSON)
    /// and writes it to <data-dir>/drivers/<name>.toml, which the node loads at its next
    /// start, in lane testing. Prints the file; what the driver cannot carry goes to
    /// stderr. An existing file is never overwritten.
    Synthesize {
        /// The OpenAPI 3 document, as JSON.
        #[arg(long)]
        openapi: PathBuf,
        /// The operationId of the operation.
        #[arg(long)]
        operation: String,
        /// The service's base URL [default: the document's first `servers` URL].
        #[arg(long)]
        base_url: Option<String>,
        /// Write the manifest here instead of the data directory ("-": standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// [default: ./axon-data]
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Moves a driver towards live: testing → shadow (after its red-team suite passes),
    /// shadow → live (which puts it on trial first, after its shadow gate where a live
    /// driver exists), retired → testing.
    Promote {
        name: String,
        /// The lane to move to.
        #[arg(long)]
        to: String,
        /// Why (journaled with the move).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Moves a driver away from live: live → shadow, shadow → testing, any → retired.
    Demote {
        name: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// Where a running node is.
#[derive(clap::Args)]
struct NodeArgs {
    /// The node's admin endpoint [default: http://<http.listen of the configuration>].
    #[arg(long)]
    url: Option<String>,
    /// The admin token's file [default: <data-dir>/admin.token].
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
    /// [default: ./axon-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl NodeArgs {
    fn target(self) -> Result<axon::drivers_cli::Target, i32> {
        let cfg = load_config(self.config.as_deref(), self.data_dir)?;
        Ok(axon::drivers_cli::Target::new(
            &cfg,
            self.url,
            self.token_file,
        ))
    }
}

/// The configuration of `config` (else the embedded defaults) and the environment, with
/// `data_dir` over it; a bad one is printed and is exit 2.
fn load_config(config: Option<&Path>, data_dir: Option<PathBuf>) -> Result<Config, i32> {
    let flags = Overrides {
        data_dir,
        ..Default::default()
    };
    Config::load(config, std::env::vars(), &flags).map_err(|e| {
        eprintln!("axon: {e}");
        2
    })
}

/// Prints what a command against a running node answered; exit 1 on a refusal.
fn print_answer(r: anyhow::Result<String>) -> i32 {
    match r {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("axon: {e:#}");
            1
        }
    }
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Durable appends against raw fdatasync, audit time and proof latency.
    Journal {
        /// Where to write (a real disk: fdatasync on tmpfs proves nothing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Entries in the journal that is audited and proven against.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Keep that journal, as a data directory `axon audit --data-dir` reads.
        #[arg(long)]
        keep: bool,
    },
    /// POST /v1/act with the echo driver and the durable journal against a hello-world
    /// actix-web route: requests per second, latency at a fixed rate, and two
    /// back-to-back fdatasyncs on the same disk.
    Act {
        /// Where the node keeps its data (a real disk: fdatasync on tmpfs proves nothing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Requests per second of the fixed-rate run.
        #[arg(long, default_value_t = 3000)]
        rate: u64,
    },
    /// What mirroring each live push to a shadow driver adds to the live call: the same
    /// echo driver with and without a shadow, in alternating runs.
    Mirroring {
        /// Where the node keeps its data.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Seconds of each run.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Pairs of runs, plain then mirrored.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Time and calls from a fault in a live driver (every push failing) to its
    /// supervisor demoting it.
    Demotion {
        /// Where the node keeps its data.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Healthy pushes before the fault.
        #[arg(long, default_value_t = 1000)]
        healthy: u64,
        /// Requests per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
    },
}

fn main() {
    // Before any http client is built (the OTLP exporter, an http driver, the CLI).
    axon_drivers::tls::install_crypto_provider();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run {
            config,
            data_dir,
            listen,
            log_format,
            otlp_endpoint,
        } => {
            let flags = Overrides {
                data_dir,
                listen,
                log_format,
                otlp_endpoint,
            };
            match Config::load(config.as_deref(), std::env::vars(), &flags) {
                Ok(cfg) => run(cfg),
                Err(e) => {
                    eprintln!("axon: {e}");
                    2
                }
            }
        }
        Command::Bench {
            what: BenchWhat::Demotion { dir, healthy, rate },
        } => match axon::bench_demotion::demotion(
            &dir,
            &axon::bench_demotion::DemotionBench {
                healthy,
                rate: rate.clamp(1, 100_000),
            },
        ) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("axon: bench failed: {e:#}");
                1
            }
        },
        Command::Bench {
            what:
                BenchWhat::Mirroring {
                    dir,
                    seconds,
                    connections,
                    rounds,
                },
        } => match axon::bench_mirroring::mirroring(
            &dir,
            &axon::bench_mirroring::MirroringBench {
                seconds: seconds.clamp(1, 3600),
                connections: connections.clamp(1, 1024),
                rounds: rounds.clamp(1, 100),
            },
        ) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("axon: bench failed: {e:#}");
                1
            }
        },
        Command::Bench {
            what: BenchWhat::Journal { dir, entries, keep },
        } => match axon::bench::journal(&dir, entries.max(1), keep) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("axon: bench failed: {e:#}");
                1
            }
        },
        Command::Bench {
            what:
                BenchWhat::Act {
                    dir,
                    seconds,
                    connections,
                    rate,
                },
        } => match axon::bench_act::act(
            &dir,
            &axon::bench_act::ActBench {
                seconds: seconds.max(1),
                connections: connections.clamp(1, 1024),
                rate: rate.max(1),
            },
        ) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("axon: bench failed: {e:#}");
                1
            }
        },
        Command::VerifyProof {
            key,
            checkpoint,
            proof,
            entry,
            old_checkpoint,
        } => match verify_proof(
            &key,
            &checkpoint,
            &proof,
            entry.as_deref(),
            old_checkpoint.as_deref(),
        ) {
            Ok(what) => {
                println!("verify-proof: ok: {what}");
                0
            }
            Err(e) => {
                println!("verify-proof: FAILED: {e:#}");
                1
            }
        },
        Command::Replay {
            action,
            config,
            data_dir,
        } => match load_config(config.as_deref(), data_dir) {
            Ok(cfg) => match axon::replay::replay(&axon::node::journal_config(&cfg), &action) {
                Ok(report) => {
                    println!("{report}");
                    if report.matches {
                        0
                    } else {
                        1
                    }
                }
                Err(e) => {
                    println!("replay: FAILED: {e:#}");
                    1
                }
            },
            Err(code) => code,
        },
        Command::Audit {
            config,
            data_dir,
            rebuild_index,
            checkpoints,
            key,
        } => {
            let flags = Overrides {
                data_dir,
                ..Default::default()
            };
            let outside = checkpoints
                .iter()
                .map(|p| Ok((p.display().to_string(), read_input(p)?)))
                .collect::<anyhow::Result<Vec<_>>>()
                .and_then(|o| Ok((o, key.map(|k| vkey_argument(&k)).transpose()?)));
            match (
                Config::load(config.as_deref(), std::env::vars(), &flags),
                outside,
            ) {
                (Ok(cfg), Ok((outside, key))) => {
                    audit(&cfg, rebuild_index, &outside, key.as_deref())
                }
                (_, Err(e)) => {
                    eprintln!("axon: {e:#}");
                    2
                }
                (Err(e), _) => {
                    eprintln!("axon: {e}");
                    2
                }
            }
        }
        Command::Drivers {
            what: DriversWhat::Check { file },
        } => match axon_drivers::manifest::Manifest::load(&file) {
            Ok(m) => match serde_json::to_string_pretty(&m.descriptor()) {
                Ok(text) => {
                    println!("{text}");
                    0
                }
                Err(e) => {
                    eprintln!("axon: {e}");
                    1
                }
            },
            Err(e) => {
                eprintln!("axon: {e}");
                1
            }
        },
        Command::Drivers {
            what: DriversWhat::List { node },
        } => match node.target() {
            Ok(t) => print_answer(axon::drivers_cli::list(&t)),
            Err(code) => code,
        },
        Command::Drivers {
            what: DriversWhat::Show { name, node },
        } => match node.target() {
            Ok(t) => print_answer(axon::drivers_cli::show(&t, &name)),
            Err(code) => code,
        },
        Command::Drivers {
            what: DriversWhat::Scorecard { name, node },
        } => match node.target() {
            Ok(t) => print_answer(axon::drivers_cli::scorecard(&t, &name)),
            Err(code) => code,
        },
        Command::Drivers {
            what:
                DriversWhat::Synthesize {
                    openapi,
                    operation,
                    base_url,
                    out,
                    config,
                    data_dir,
                },
        } => match load_config(config.as_deref(), data_dir) {
            Ok(cfg) => print_answer(axon::drivers_cli::synthesize(
                &cfg,
                &openapi,
                &operation,
                base_url.as_deref(),
                out.as_deref(),
            )),
            Err(code) => code,
        },
        Command::Drivers {
            what:
                DriversWhat::Promote {
                    name,
                    to,
                    reason,
                    node,
                },
        } => match node.target() {
            Ok(t) => print_answer(axon::drivers_cli::move_lane(
                &t, &name, "promote", &to, &reason,
            )),
            Err(code) => code,
        },
        Command::Drivers {
            what:
                DriversWhat::Demote {
                    name,
                    to,
                    reason,
                    node,
                },
        } => match node.target() {
            Ok(t) => print_answer(axon::drivers_cli::move_lane(
                &t, &name, "demote", &to, &reason,
            )),
            Err(code) => code,
        },
        Command::Config { config } => {
            match Config::load(config.as_deref(), std::env::vars(), &Overrides::default()) {
                Ok(cfg) => match toml::to_string(&cfg) {
                    Ok(text) => {
                        print!("{text}");
                        0
                    }
                    Err(e) => {
                        eprintln!("axon: {e}");
                        1
                    }
                },
                Err(e) => {
                    eprintln!("axon: {e}");
                    2
                }
            }
        }
    };
    std::process::exit(code);
}

fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    if path == std::path::Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

fn verify_proof(
    key: &std::path::Path,
    checkpoint: &std::path::Path,
    proof: &std::path::Path,
    entry: Option<&std::path::Path>,
    old: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    let json = |p: &std::path::Path| -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&read_input(p)?)
            .with_context(|| format!("{} is not JSON", p.display()))
    };
    let entry = entry.map(json).transpose()?;
    let old = old.map(read_input).transpose()?;
    axon::verify::verify(
        &read_input(key)?,
        &read_input(checkpoint)?,
        &json(proof)?,
        entry.as_ref(),
        old.as_deref(),
    )
}

/// A verifier key given on the command line: the key itself (`name+id+key`), or a file
/// that holds it.
fn vkey_argument(arg: &str) -> anyhow::Result<String> {
    if axon_protocols::checkpoint::Verifier::parse(arg.trim()).is_ok() {
        return Ok(arg.trim().to_owned());
    }
    let text = std::fs::read_to_string(arg)
        .with_context(|| format!("--key {arg:?} is neither a verifier key nor a readable file"))?;
    axon_protocols::checkpoint::Verifier::parse(text.trim())
        .map_err(|e| anyhow::anyhow!("--key {arg}: not a verifier key: {e}"))?;
    Ok(text.trim().to_owned())
}

fn audit(
    cfg: &Config,
    rebuild_index: bool,
    outside: &[(String, String)],
    key: Option<&str>,
) -> i32 {
    let jc = axon::node::journal_config(cfg);
    eprintln!("audit: checking {}", jc.dir.display());
    let mut progress = |seg: &std::path::Path, entries: u64| {
        eprintln!("audit: {} ok ({entries} entries so far)", seg.display());
    };
    match axon_actors::journal::audit(jc, rebuild_index, outside, key, &mut progress) {
        Ok(r) => {
            use axon_actors::journal::IndexStatus;
            match &r.index {
                IndexStatus::Missing => println!("audit: index: none yet (the node builds it at start)"),
                IndexStatus::Consistent => println!("audit: index: consistent with the segments"),
                IndexStatus::Behind(n) => println!(
                    "audit: index: built for the first {n} entries; the node catches it up at start"
                ),
                IndexStatus::Stale(why) => println!(
                    "audit: warning: the index disagrees with the segments ({why}); the node rebuilds it at start, or run axon audit --rebuild-index"
                ),
                IndexStatus::Rebuilt => println!("audit: index: rebuilt from the segments"),
            }
            if let Some((seg, offset, bytes)) = &r.torn_tail {
                println!(
                    "audit: warning: a torn tail of {bytes} bytes at {} offset {offset} was never acknowledged; the next start moves it to {}.torn-at-{offset} and cuts it",
                    seg.display(),
                    seg.display()
                );
            }
            if let Some((log, offset, bytes)) = &r.torn_checkpoint {
                println!(
                    "audit: warning: a torn checkpoint of {bytes} bytes at {} offset {offset} was never served; the next start moves it to {}.torn-at-{offset} and cuts it",
                    log.display(),
                    log.display()
                );
            }
            let head = r
                .head_size
                .map(|s| format!("; the last records {s}"))
                .unwrap_or_default();
            let outside = match r.outside_checkpoints {
                0 => String::new(),
                n => format!("; {n} given checkpoint(s) hold"),
            };
            println!(
                "audit: ok: {} entries in {} segments; {} signed checkpoints hold{head}{outside}",
                r.entries, r.segments, r.checkpoints
            );
            let unsigned = r.entries - r.head_size.unwrap_or(0).min(r.entries);
            if unsigned > 0 {
                println!(
                    "audit: warning: the last {unsigned} entries come after the newest signed checkpoint: no signature covers them"
                );
            }
            match key {
                Some(_) if r.checkpoints == 0 => {
                    println!(
                        "audit: FAILED: the checkpoint log holds no signed checkpoint, so nothing here is signed by the key given with --key"
                    );
                    return 1;
                }
                Some(_) => println!("audit: signatures: by the key given with --key"),
                None => println!(
                    "audit: signatures: checked with the directory's own node.key only; whoever can write the directory can replace it and sign again: give --key with the key the node printed at its first start"
                ),
            }
            0
        }
        Err(e) => {
            println!("audit: FAILED: {e}");
            1
        }
    }
}

fn run(cfg: Config) -> i32 {
    let telemetry = match axon::telemetry::init(&cfg.log) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("axon: {e:#}");
            return 2;
        }
    };
    axon::telemetry::log_panics();
    let code = actix::System::new().block_on(serve(cfg));
    drop(telemetry);
    code
}

async fn serve(cfg: Config) -> i32 {
    let grace = Duration::from_secs(cfg.http.shutdown_timeout_seconds + 10);
    // Signals are watched from the start: whoever reads the address may stop the node at
    // once, and that stop must be the graceful one.
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("cannot watch signals: {e}");
            return 1;
        }
    };
    let signals = async {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    };
    let mut node = match axon::start(&cfg, Default::default()).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("node cannot start: {e:#}");
            return 1;
        }
    };
    if node.admin_token_created {
        // The token goes to its file only; the path is what an operator needs.
        println!(
            "axon: admin token written to {} (send it as Authorization: Bearer <token>)",
            cfg.data_dir.join(axon::admin_token::FILE).display()
        );
    }
    if let Some(vkey) = node.journal.shared().key() {
        tracing::info!(%vkey, "journal verifier key");
        if node.journal.shared().key_created() {
            println!(
                "axon: journal verifier key (public; keep a copy away from this machine and audit with `axon audit --key`): {vkey}"
            );
        }
    }
    println!("axon: listening on http://{}", node.http_addr);
    tokio::select! {
        exit = &mut node.root.exit => {
            let why = match exit {
                Ok(e) => e.to_string(),
                Err(_) => "its task ended without an exit".to_owned(),
            };
            tracing::error!("node stopping: the root supervisor {why}");
            1
        }
        name = signals => {
            tracing::info!(signal = name, "stopping: in-flight requests finish, then the tree stops");
            match node.shutdown(grace).await {
                Exit::Shutdown => {
                    tracing::info!("stopped");
                    0
                }
                other => {
                    tracing::error!("the tree {other} while stopping");
                    1
                }
            }
        }
    }
}
