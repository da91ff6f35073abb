//! The `wan` command: `wan up --link SPEC` holds a link up for manual use
//! until Ctrl-C; `wan measure` prints the measurement table of `docs/wan.md`.

use super::measure::{run_table, MeasurePlan, Part};
use super::{LinkSpec, Side, WanLink};
use memfabric_migration::units::{BytesPerSecond, Fraction, Nanos};
use std::time::Duration;

/// Arguments of `memfabric-validator wan`.
#[derive(Debug, clap::Args)]
pub struct WanArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: WanCommand,
}

/// The `wan` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WanCommand {
    /// Bring a link up between two fresh namespaces and hold it until Ctrl-C.
    Up(UpArgs),
    /// Measure RTT and TCP throughput across emulated links; print markdown tables.
    Measure(MeasureArgs),
}

/// Arguments of `wan up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The link, `RATE,DELAY[,LOSS][,jitter=D][,queue=SIZE|D][,mtu=N]`, e.g. "100Mbit/s,25ms,0.1%".
    #[arg(long)]
    pub link: LinkSpec,
    /// Seed of the loss and jitter draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Which parts `wan measure` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PartArg {
    /// Probe RTT against 2 × delay.
    Rtt,
    /// TCP throughput against one-way delay.
    Delay,
    /// TCP throughput against loss.
    Loss,
    /// Forwarding capacity (very fast link, no delay).
    Capacity,
}

/// Arguments of `wan measure`.
#[derive(Debug, clap::Args)]
pub struct MeasureArgs {
    /// Parts to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "rtt,delay,loss,capacity")]
    pub parts: Vec<PartArg>,
    /// Link rate of the RTT, delay and loss rows.
    #[arg(long, value_parser = parse_rate, default_value = "1Gbit/s")]
    pub rate: BytesPerSecond,
    /// One-way delays of the RTT and delay rows, comma-separated.
    #[arg(long, value_parser = parse_nanos, value_delimiter = ',', default_value = "0ms,10ms,25ms,50ms")]
    pub delays: Vec<Nanos>,
    /// Loss rates of the loss rows, comma-separated.
    #[arg(long, value_parser = parse_fraction, value_delimiter = ',', default_value = "0.01%,0.1%,1%")]
    pub losses: Vec<Fraction>,
    /// One-way delay of the loss rows.
    #[arg(long, value_parser = parse_nanos, default_value = "25ms")]
    pub loss_delay: Nanos,
    /// Congestion controls for each TCP row, comma-separated; "default" is the namespace's.
    #[arg(long, value_delimiter = ',', default_value = "default,cubic")]
    pub cc: Vec<String>,
    /// Sending time of each delay and capacity row.
    #[arg(long, value_parser = parse_nanos, default_value = "6s")]
    pub duration: Nanos,
    /// Sending time of each loss row.
    #[arg(long, value_parser = parse_nanos, default_value = "10s")]
    pub loss_duration: Nanos,
    /// Start of each TCP row left out of the goodput.
    #[arg(long, value_parser = parse_nanos, default_value = "2s")]
    pub warmup: Nanos,
    /// Probes per RTT row.
    #[arg(long, default_value_t = 20)]
    pub rtt_samples: usize,
    /// Links of the capacity rows, separated by ';'.
    #[arg(long, value_delimiter = ';', default_value = "10Gbit/s,0ms;10Gbit/s,0ms,mtu=9000")]
    pub capacity_links: Vec<LinkSpec>,
    /// Seed of every link.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn parse_rate(s: &str) -> Result<BytesPerSecond, String> {
    BytesPerSecond::parse(s).map_err(|e| e.to_string())
}

fn parse_nanos(s: &str) -> Result<Nanos, String> {
    Nanos::parse(s).map_err(|e| e.to_string())
}

fn parse_fraction(s: &str) -> Result<Fraction, String> {
    Fraction::parse(s).map_err(|e| e.to_string())
}

/// Runs `memfabric-validator wan ...`.
pub fn run(args: &WanArgs) -> anyhow::Result<()> {
    match &args.command {
        WanCommand::Up(up) => run_up(up),
        WanCommand::Measure(m) => run_measure(m),
    }
}

fn run_up(args: &UpArgs) -> anyhow::Result<()> {
    crate::interrupt::install()?;
    let link = WanLink::up(&args.link, args.seed)?;
    let (a, b) = (link.namespace(Side::A).to_string(), link.namespace(Side::B).to_string());
    let (addr_a, addr_b) = (link.address(Side::A), link.address(Side::B));
    println!("link {} up (seed {}), queue {} bytes per direction", args.link, args.seed, args.link.queue_limit_bytes());
    println!("  site A: namespace {a}, address {addr_a}");
    println!("  site B: namespace {b}, address {addr_b}");
    println!("try, in other terminals:");
    println!("  ip netns exec {b} python3 -m http.server --bind {addr_b} 8000");
    println!("  ip netns exec {a} python3 -c \"import urllib.request as u; print(len(u.urlopen('http://{addr_b}:8000/').read()))\"");
    println!("  ip netns exec {a} bash            # a shell in site A; site B is {addr_b}");
    println!("Ctrl-C tears the link down.");
    while !crate::interrupt::interrupted() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = link.down()?;
    println!("link down; namespaces {a} and {b} deleted\n\n{stats}");
    Ok(())
}

fn run_measure(args: &MeasureArgs) -> anyhow::Result<()> {
    let plan = MeasurePlan {
        parts: args
            .parts
            .iter()
            .map(|p| match p {
                PartArg::Rtt => Part::Rtt,
                PartArg::Delay => Part::Delay,
                PartArg::Loss => Part::Loss,
                PartArg::Capacity => Part::Capacity,
            })
            .collect(),
        rate: args.rate,
        delays: args.delays.clone(),
        losses: args.losses.clone(),
        loss_delay: args.loss_delay,
        congestion: args.cc.iter().map(|c| (c != "default").then(|| c.clone())).collect(),
        duration: Duration::from_nanos(args.duration.0),
        loss_duration: Duration::from_nanos(args.loss_duration.0),
        warmup: Duration::from_nanos(args.warmup.0),
        rtt_samples: args.rtt_samples,
        capacity_links: args.capacity_links.clone(),
        seed: args.seed,
    };
    super::check_prerequisites()?;
    WanLink::cleanup_stale()?;
    // The TCP settings every row runs under, as seen inside a site namespace.
    {
        let probe = WanLink::up(&LinkSpec::new(args.rate, Nanos(0)), args.seed)?;
        let s = super::measure::tcp_sysctls(&probe, Side::A)?;
        println!("TCP sysctls inside the site namespaces: tcp_rmem = {}, tcp_wmem = {}, tcp_congestion_control = {}, core rmem_max = {}, core wmem_max = {}", s.tcp_rmem, s.tcp_wmem, s.congestion_control, s.core_rmem_max, s.core_wmem_max);
    }
    crate::interrupt::install()?;
    let mut out = std::io::stdout();
    match run_table(&plan, &mut out, crate::interrupt::flag()) {
        Err(super::measure::MeasureError::Cancelled) => {
            eprintln!("interrupted; links torn down");
            Ok(())
        }
        other => Ok(other?),
    }
}
