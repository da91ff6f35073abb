//! `memfabric-validator tls-bench`: the CPU cost of the TLS channel's
//! record protection alone, in memory (no sockets, no guest), against a
//! memcpy of the same bytes measured in the same run. One thread encrypts
//! 16 KiB application writes with the source's rustls connection and
//! decrypts them with the destination's; the figures are CPU time of that
//! thread. They are the simulator's `tls_encrypt` / `tls_decrypt` profile
//! costs (docs/validator.md, "The encrypted channel").

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ConnectionCommon, ServerConnection};

use super::thread_cpu_s;
use super::tls::{client_config, server_config, TlsFiles, DESTINATION_NAME};

/// `tls-bench`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsBenchArgs {
    /// Certificates as for `migrate --tls DIR`.
    #[arg(long, value_name = "DIR")]
    pub tls: PathBuf,
    /// MiB to push through each operation.
    #[arg(long, default_value_t = 512)]
    pub mib: u64,
}

/// Bytes per application write (a TLS record's plaintext maximum).
const CHUNK: usize = 16 << 10;

/// Moves `from`'s pending TLS bytes into `to`.
fn pump<A, B>(from: &mut ConnectionCommon<A>, to: &mut ConnectionCommon<B>, wire: &mut Vec<u8>) -> anyhow::Result<()> {
    wire.clear();
    while from.wants_write() {
        from.write_tls(wire)?;
    }
    let mut rd = &wire[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd)?;
        to.process_new_packets().map_err(|e| anyhow!("TLS: {e}"))?;
    }
    Ok(())
}

/// Runs the benchmark and prints its table.
pub fn run(args: &TlsBenchArgs) -> anyhow::Result<()> {
    let client_cfg = client_config(&TlsFiles::in_dir(&args.tls, "source"))?;
    let server_cfg = server_config(&TlsFiles::in_dir(&args.tls, "destination"))?;
    let name = ServerName::try_from(DESTINATION_NAME).expect("a valid DNS name");
    let mut client = ClientConnection::new(client_cfg, name).context("client")?;
    let mut server = ServerConnection::new(server_cfg).context("server")?;
    let mut hs = Vec::new();
    while client.is_handshaking() || server.is_handshaking() {
        pump(&mut client, &mut server, &mut hs)?;
        pump(&mut server, &mut client, &mut hs)?;
    }
    let suite = client.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
    // Timed a batch at a time, so that reading the clock costs nothing.
    const BATCH: usize = 64;
    let batches = ((args.mib << 20) as usize / CHUNK).div_ceil(BATCH);
    let chunks = batches * BATCH;
    let data: Vec<u8> = (0..CHUNK * BATCH).map(|i| (i * 131 % 251) as u8).collect();
    let (mut copy, mut out) = (vec![0u8; CHUNK * BATCH], vec![0u8; CHUNK * BATCH]);
    let (mut memcpy_s, mut enc_s, mut dec_s, mut wire_bytes) = (0.0, 0.0, 0.0, 0u64);
    let mut wire = Vec::with_capacity(CHUNK * BATCH * 2);
    for b in 0..batches {
        let t0 = thread_cpu_s();
        for (c, d) in copy.chunks_mut(CHUNK).zip(data.chunks(CHUNK)) {
            c.copy_from_slice(d);
        }
        let t1 = thread_cpu_s();
        wire.clear();
        for c in copy.chunks(CHUNK) {
            client.writer().write_all(c)?;
            while client.wants_write() {
                client.write_tls(&mut wire)?;
            }
        }
        let t2 = thread_cpu_s();
        let (mut rd, mut got) = (&wire[..], 0);
        while !rd.is_empty() {
            server.read_tls(&mut rd)?;
            server.process_new_packets().map_err(|e| anyhow!("TLS: {e}"))?;
            // Take the plaintext as it comes (rustls buffers only so much).
            while got < out.len() {
                match server.reader().read(&mut out[got..]) {
                    Ok(0) => anyhow::bail!("the connection closed"),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let t3 = thread_cpu_s();
        if out != copy {
            anyhow::bail!("batch {b} did not survive the round trip");
        }
        memcpy_s += t1 - t0;
        enc_s += t2 - t1;
        dec_s += t3 - t2;
        wire_bytes += wire.len() as u64;
    }
    let bytes = (chunks * CHUNK) as f64;
    let per_page_ns = |s: f64| s / bytes * 4096.0 * 1e9;
    println!("TLS 1.3 {suite}, {} MiB in {} KiB writes, one thread, CPU time", args.mib, CHUNK >> 10);
    println!("| operation | ns per 4 KiB | GiB/s | x memcpy |");
    println!("|---|---|---|---|");
    for (op, s) in [("memcpy (baseline)", memcpy_s), ("encrypt (source)", enc_s), ("decrypt (destination)", dec_s)] {
        println!("| {op} | {:.0} | {:.2} | {:.1} |", per_page_ns(s), bytes / s.max(1e-12) / (1u64 << 30) as f64, s / memcpy_s.max(1e-12));
    }
    println!("record overhead: {:.3}% of the plaintext", 100.0 * (wire_bytes as f64 / bytes - 1.0));
    Ok(())
}
