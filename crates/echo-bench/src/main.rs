//! `echo-bench`: check, load, run and compare the echo-server models.
//!
//! Run with:
//!   echo-bench check epoll
//!   echo-bench load --addr 127.0.0.1:7000 --conns 50 --size 64 --messages 50000
//!   echo-bench run thread-per-client --conns 100 -- --max-conns 200
//!   echo-bench run --bin target/release/fork-burn --conns 8 --messages 8 -- --child-burn-ms 150
//!   echo-bench all --models iterative,epoll
//!   echo-bench all --full --peers python
//!   echo-bench all --resume results/20261201T190000Z
//!
//! Exit status: 0 when everything was verified, 1 for a failed check, an
//! unverified byte or a runtime error, 2 for bad arguments (one line).

mod all;
mod check;
mod claims;
mod exits;
mod load;
mod matrix;
mod plot;
mod proc;
mod report;
mod results;
mod run;
mod stats;
mod syscalls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Parser, Subcommand};

use load::{LoadSpec, Stop};
use report::Rep;

#[derive(Debug, Parser)]
#[command(
    name = "echo-bench",
    version,
    about = "Check, load and compare echo servers."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the conformance cases and the fault suite against a model or a running server
    Check(CheckArgs),
    /// One fixed, verified workload against a running server, then exit
    Load(LoadArgs),
    /// Benchmark one model (or --bin): spawned, pinned and measured, several times
    Run(RunArgs),
    /// Benchmark every built model through the scenario matrix into a results
    /// folder (quick by default, --full for all of it; --resume DIR continues one)
    All(AllArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Model to spawn on a free port (each fault gets a fresh one)
    #[arg(value_parser = PossibleValuesParser::new(run::MODELS),
          required_unless_present = "addr", conflicts_with = "addr")]
    model: Option<String>,
    /// Check a server already listening here instead
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<SocketAddr>,
    /// Its process id: the memory checks, and the faults that signal or watch it
    #[arg(long, conflicts_with = "model")]
    pid: Option<u32>,
    /// The --max-conns it was started with, for the max-conns fault
    #[arg(long = "max-conns", value_name = "N", conflicts_with = "model",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_conns: Option<u32>,
    /// A case or fault the server cannot meet by design (repeatable)
    #[arg(long = "expect-limit", value_name = "NAME", conflicts_with = "model")]
    expect_limit: Vec<String>,
    /// Which suites to run
    #[arg(long, value_enum, default_value_t = check::Suite::All)]
    suite: check::Suite,
    /// Run only this case or fault (repeatable)
    #[arg(long = "case", value_name = "NAME")]
    cases: Vec<String>,
    /// Flags passed to the model binary
    #[arg(last = true, requires = "model")]
    model_args: Vec<String>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("amount").required(true).args(["messages", "duration"])))]
struct LoadArgs {
    /// The echo server
    #[arg(long, value_name = "HOST:PORT")]
    addr: SocketAddr,
    #[command(flatten)]
    shape: Shape,
    /// Messages in total, spread evenly over the connections
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u64).range(1..))]
    messages: Option<u64>,
    /// Send for this many seconds instead
    #[arg(long, value_name = "SECS", value_parser = positive_f64)]
    duration: Option<f64>,
    /// Write hyperfine-schema JSON here
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// The knobs `load` and `run` share.
#[derive(Debug, Args)]
struct Shape {
    /// Connections, all open before the clock starts
    #[arg(long, value_name = "C", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    conns: u32,
    /// Bytes per message
    #[arg(long, value_name = "S", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=(16 << 20)))]
    size: u32,
    /// Open loop: this many messages per second in total
    #[arg(long, value_name = "R", value_parser = positive_f64)]
    rate: Option<f64>,
    /// Load threads; connections are partitioned over them
    #[arg(long, value_name = "T", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: u32,
    /// A new connection per message: each of the C slots connects, sends
    /// one message, half-closes, reads the echo to EOF and closes, then
    /// starts over (closed loop only; latency includes the connect)
    #[arg(long, conflicts_with = "rate")]
    reconnect: bool,
    /// This many idle connections besides: opened before the clock, silent
    /// through the window, closed after it (what a server pays per
    /// connection it is not serving)
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    idle: u32,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Model to benchmark
    #[arg(value_parser = PossibleValuesParser::new(run::MODELS),
          required_unless_present = "bin", conflicts_with = "bin")]
    model: Option<String>,
    /// Benchmark this binary instead (it must follow the server contract)
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// How to measure the server: a cgroup per repetition, the /proc tree,
    /// or the first of the two that works
    #[arg(long, value_enum, default_value_t = MeasureArg::Auto)]
    measure: MeasureArg,
    #[command(flatten)]
    shape: Shape,
    /// Messages in total per repetition [default: 20000]
    #[arg(long, value_name = "M", conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..))]
    messages: Option<u64>,
    /// Send for this many seconds per repetition instead
    #[arg(long, value_name = "SECS", value_parser = positive_f64)]
    duration: Option<f64>,
    /// Repetitions, each with a fresh server
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: u32,
    /// Write hyperfine-schema JSON here
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Do not pin: server and load share every CPU (for a server that runs
    /// several threads or processes, which one pinned CPU would serialise;
    /// the figures then include the contention between the two)
    #[arg(long)]
    unpinned: bool,
    /// Flags passed to the model binary
    #[arg(last = true)]
    model_args: Vec<String>,
}

#[derive(Debug, Args)]
struct AllArgs {
    /// Models to run, comma-separated [default: all that are built]
    #[arg(long, value_delimiter = ',', value_parser = PossibleValuesParser::new(run::MODELS))]
    models: Vec<String>,
    /// Scenarios to run, comma-separated [default: the quick set, or all with --full]
    #[arg(long, value_delimiter = ',',
          value_parser = PossibleValuesParser::new(matrix::SCENARIOS.iter().map(|s| s.name)))]
    scenarios: Vec<String>,
    /// The whole matrix (10 minutes on a 2-core machine) instead of the quick set (2)
    #[arg(long)]
    full: bool,
    /// Repetitions per scenario and server [default: 3]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: Option<u32>,
    /// Add the seeds' servers written in Python (twins/), next to the models
    #[arg(long, value_name = "LANG", value_parser = ["python"])]
    peers: Option<String>,
    /// Seed of the shuffled order of repetitions [default: from the clock]
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Do not count syscalls per echo under strace after the timed runs
    #[arg(long)]
    no_syscalls: bool,
    /// Results go to a timestamped folder inside this one
    #[arg(long, value_name = "DIR", default_value = "results")]
    out: PathBuf,
    /// Continue the run in this results folder: its plan is reused and the
    /// repetitions already recorded in it are not run again
    #[arg(long, value_name = "DIR",
          conflicts_with_all = ["models", "scenarios", "full", "repeat", "peers", "seed", "no_syscalls"])]
    resume: Option<PathBuf>,
}

/// `--measure`: see [`run::Measure`].
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MeasureArg {
    Auto,
    Cgroup,
    Proc,
}

impl From<MeasureArg> for run::Measure {
    fn from(m: MeasureArg) -> run::Measure {
        match m {
            MeasureArg::Auto => run::Measure::Auto,
            MeasureArg::Cgroup => run::Measure::Cgroup,
            MeasureArg::Proc => run::Measure::Proc,
        }
    }
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected a positive number, got '{s}'")),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.cmd {
        Cmd::Check(a) => {
            if let Err(e) = check::validate(a.suite, &a.cases, &a.expect_limit) {
                eprintln!("echo-bench: {e} (see --help)");
                return ExitCode::from(echo_protocol::EXIT_USAGE);
            }
            cmd_check(a)
        }
        Cmd::Load(a) => cmd_load(a),
        Cmd::Run(a) => cmd_run(a),
        Cmd::All(a) => all::all(&all::AllOptions {
            models: a.models,
            scenarios: a.scenarios,
            full: a.full,
            repeat: a.repeat.map(|r| r as usize),
            peers_python: a.peers.is_some(),
            seed: a.seed,
            syscalls: !a.no_syscalls,
            out: a.out,
            resume: a.resume,
            measure: run::Measure::Auto,
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(echo_protocol::EXIT_FAILURE),
        Err(e) => {
            eprintln!("echo-bench: {e}");
            ExitCode::from(echo_protocol::EXIT_FAILURE)
        }
    }
}

/// Help and version go out whole; a mistake gets one line and status 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("echo-bench: a subcommand is needed: check, load, run or all (see --help)");
            ExitCode::from(echo_protocol::EXIT_USAGE)
        }
        _ => {
            // clap's message may continue on indented lines (the missing
            // arguments); keep them, drop the usage block that follows.
            let text = e.render().to_string();
            let msg: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let msg = msg.join(" ");
            let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
            eprintln!("echo-bench: {msg} (see --help)");
            ExitCode::from(echo_protocol::EXIT_USAGE)
        }
    }
}

fn cmd_check(a: CheckArgs) -> Result<bool, String> {
    match (a.model, a.addr) {
        (Some(model), _) => check::model(&model, a.suite, &a.cases, &a.model_args),
        (None, Some(addr)) => check::external(
            addr,
            a.pid,
            a.max_conns.map(|n| n as usize),
            &a.expect_limit,
            a.suite,
            &a.cases,
        ),
        (None, None) => Err("give a model or --addr".into()),
    }
}

fn stop_of(messages: Option<u64>, duration: Option<f64>, default_messages: u64) -> Stop {
    match (messages, duration) {
        (_, Some(secs)) => Stop::Duration(Duration::from_secs_f64(secs)),
        (Some(m), None) => Stop::Messages(m),
        (None, None) => Stop::Messages(default_messages),
    }
}

fn spec_of(addr: SocketAddr, shape: &Shape, stop: Stop) -> LoadSpec {
    LoadSpec {
        addr,
        conns: shape.conns as usize,
        size: shape.size as usize,
        stop,
        rate: shape.rate,
        threads: shape.threads as usize,
        reconnect: shape.reconnect,
        idle: shape.idle as usize,
    }
}

fn parameters(spec: &LoadSpec) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    p.insert("conns".to_string(), spec.conns.to_string());
    p.insert("size".to_string(), spec.size.to_string());
    p.insert("threads".to_string(), spec.threads.to_string());
    if spec.reconnect {
        p.insert("reconnect".to_string(), "per message".to_string());
    }
    if spec.idle > 0 {
        p.insert("idle".to_string(), spec.idle.to_string());
    }
    match spec.stop {
        Stop::Messages(m) => p.insert("messages".to_string(), m.to_string()),
        Stop::Duration(d) => p.insert("duration".to_string(), d.as_secs_f64().to_string()),
    };
    match spec.rate {
        Some(r) => {
            p.insert("loop".to_string(), "open".to_string());
            p.insert("rate".to_string(), r.to_string());
        }
        None => {
            p.insert("loop".to_string(), "closed".to_string());
        }
    }
    p
}

fn cmd_load(a: LoadArgs) -> Result<bool, String> {
    let spec = spec_of(a.addr, &a.shape, stop_of(a.messages, a.duration, 0));
    println!("load: {}", spec.describe());
    let result = load::run(&spec)?;
    print!("{}", result.render());
    let ok = result.ok();
    if let Some(path) = a.json {
        let mut params = parameters(&spec);
        params.insert("addr".to_string(), spec.addr.to_string());
        let rep = Rep {
            load: result,
            server: None,
        };
        let json = report::json_result(&report::command_line(), params, &[rep])
            .ok_or("no result to write")?;
        report::write_json(&path, vec![json])?;
    }
    Ok(ok)
}

fn cmd_run(a: RunArgs) -> Result<bool, String> {
    let (name, bin) = match (&a.model, &a.bin) {
        (Some(model), _) => (format!("echo-{model}"), run::existing_binary(model)?),
        (None, Some(bin)) if bin.is_file() => (bin.display().to_string(), bin.clone()),
        (None, Some(bin)) => return Err(format!("{} is not a file", bin.display())),
        (None, None) => return Err("give a model or --bin".into()),
    };
    let spec = spec_of(
        ([127, 0, 0, 1], 0).into(),
        &a.shape,
        stop_of(a.messages, a.duration, 50_000),
    );
    let pinning = if a.unpinned {
        run::Pinning::Shared("asked for (--unpinned); server and load share every CPU".into())
    } else {
        run::pin_self()
    };
    let (method, why) = run::choose_method(a.measure.into())?;
    println!("{name}: {}", pinning.describe());
    println!("{}", run::describe_method(method, why.as_deref()));
    let mut reps = Vec::new();
    let mut ok = true;
    for r in 1..=a.repeat {
        println!(
            "rep {r}/{}: {}",
            a.repeat,
            spec.describe().replace("127.0.0.1:0", "a fresh server")
        );
        let rep = run::one_rep(&bin, &a.model_args, &spec, &pinning, method)?;
        print!("{}", run::render_rep(&rep));
        ok &= rep.load.ok();
        reps.push(rep);
    }
    println!("{}", run::render_summary(&reps));
    if let Some(path) = a.json {
        let mut params = parameters(&spec);
        match &a.model {
            Some(model) => params.insert("model".to_string(), model.clone()),
            None => params.insert("bin".to_string(), name.clone()),
        };
        params.insert("pinning".to_string(), pinning.describe());
        let json = report::json_result(&report::command_line(), params, &reps)
            .ok_or("no result to write")?;
        report::write_json(&path, vec![json])?;
    }
    Ok(ok)
}
