//! The authenticated, encrypted migration channel (`migrate --tls DIR`):
//! a migration over mutual TLS 1.3 keeps its integrity, and a peer that is
//! not authenticated (its certificate from another CA, no certificate, not
//! TLS at all) is refused before any guest page is read or written.
//! Certificates come from `scripts/tls-keygen.sh` (openssl; scripts/test.sh
//! installs it); the migrations need /dev/kvm and skip without it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::migrate;
use memfabric_validator::kvm::kvm_or_skip;
use memfabric_validator::migrate::wire::{FrameWriter, Kind};

fn tmp(name: &str) -> PathBuf {
    memfabric_testkit::scratch::owned_path("validator-tls", name)
}

/// A fresh CA with its two certificates in `dir` (None: no openssl here).
fn keygen(dir: &Path) -> Option<()> {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipping: openssl is missing (apt-get install openssl)");
        return None;
    }
    let _ = std::fs::remove_dir_all(dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tls-keygen.sh");
    let o = Command::new("bash").arg(script).arg(dir).output().unwrap();
    assert!(o.status.success(), "tls-keygen: {}", String::from_utf8_lossy(&o.stderr));
    Some(())
}

/// `good`'s CA and files, but `side`'s certificate and key from `other`
/// (another CA).
fn mixed(name: &str, good: &Path, other: &Path, side: &str) -> PathBuf {
    let dir = tmp(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["ca.pem", "source.pem", "source.key", "destination.pem", "destination.key"] {
        let from = if f.starts_with(side) { other } else { good };
        std::fs::copy(from.join(f), dir.join(f)).unwrap();
    }
    dir
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Nothing of the guest moved: the source read no page to send, the
/// destination wrote none.
fn assert_no_page_moved(out: &Path) {
    let source = json(&out.join("source.json"));
    let dest = json(&out.join("destination.json"));
    assert_eq!(source["rounds"], serde_json::json!([]), "no round started: {source}");
    for stage in ["pages_zero", "pages_dedup", "pages_delta", "pages_compressed", "pages_raw"] {
        assert_eq!(source["stages"][stage], 0, "the source read no page: {stage}");
    }
    assert_eq!(dest["pages_received"], 0, "the destination wrote no page: {dest}");
    assert!(dest["resume_ns"].is_null());
    let (before, after) = (&source["guest_after_abort"]["writes_before"], &source["guest_after_abort"]["writes_after"]);
    assert!(after.as_u64() > before.as_u64(), "the source guest runs on: {before} -> {after}");
}

#[test]
fn migrates_over_mutual_tls_and_refuses_a_peer_of_another_ca() {
    if !kvm_or_skip("migrates_over_mutual_tls_and_refuses_a_peer_of_another_ca") {
        return;
    }
    let (good, other) = (tmp("good"), tmp("other"));
    if keygen(&good).is_none() || keygen(&other).is_none() {
        return;
    }
    let ok = migrate("tls-ok", &["--tls", good.to_str().unwrap(), "--pipeline", "zero+lz4"]);
    assert!(ok.ok, "{}\n{}", ok.stdout, ok.stderr);
    assert_eq!(ok.manifest["tls"], true);
    // The strategy says the stream was encrypted, so the simulator's replay
    // (scenario.toml) charges the encrypt stage.
    assert_eq!(ok.manifest["parameters"]["strategy"], "zero+lz4+encrypt");
    let scenario = std::fs::read_to_string(ok.out.join("scenario.toml")).unwrap();
    assert!(scenario.contains("strategy = \"zero+lz4+encrypt\""), "{scenario}");
    assert_eq!(ok.manifest["integrity_held"], true);

    // A source whose certificate the destination's CA did not sign.
    let bad_source = mixed("bad-source", &good, &other, "source");
    let r = migrate("tls-bad-source", &["--tls", bad_source.to_str().unwrap(), "--io-timeout", "2s"]);
    assert!(!r.ok);
    assert_eq!(r.manifest["outcome"], "aborted");
    let dest_error = json(&r.out.join("destination.json"))["error"].as_str().unwrap().to_string();
    assert!(dest_error.contains("TLS handshake with the source") && dest_error.contains("certificate"), "{dest_error}");
    assert_no_page_moved(&r.out);

    // A destination whose certificate the source's CA did not sign.
    let bad_dest = mixed("bad-dest", &good, &other, "destination");
    let r = migrate("tls-bad-dest", &["--tls", bad_dest.to_str().unwrap(), "--io-timeout", "2s"]);
    assert!(!r.ok);
    let error = r.manifest["error"].as_str().unwrap().to_string();
    assert!(error.contains("TLS handshake with the destination") && error.contains("certificate"), "{error}");
    assert_no_page_moved(&r.out);
}

/// Starts a TLS destination (no guest RAM prepared: nothing needs KVM
/// before the source's Hello) and returns it with its address.
fn tls_dest(dir: &Path, report: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_memfabric-validator"))
        .args(["dest", "--io-timeout", "2s", "--report"])
        .arg(report)
        .args(["--tls-ca", dir.join("ca.pem").to_str().unwrap()])
        .args(["--tls-cert", dir.join("destination.pem").to_str().unwrap()])
        .args(["--tls-key", dir.join("destination.key").to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").expect("listening").to_string();
    (child, addr)
}

#[test]
fn a_destination_refuses_a_plaintext_or_certificateless_peer() {
    let dir = tmp("peer");
    if keygen(&dir).is_none() {
        return;
    }
    // Plain frames, as a source without --tls sends them.
    let report = tmp("plain-report.json");
    let (mut dest, addr) = tls_dest(&dir, &report);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let mut w = FrameWriter::new(Vec::new());
    w.send_json(Kind::Hello, &serde_json::json!({"protocol": 1})).unwrap();
    let _ = s.write_all(&w.into_inner());
    assert!(dest.wait().unwrap().success(), "the destination reports, then exits");
    let r = json(&report);
    assert_eq!(r["outcome"], "failed");
    assert!(r["error"].as_str().unwrap().contains("TLS handshake with the source"), "{r}");
    assert_eq!(r["pages_received"], 0);
    assert_eq!(r["bytes_received"], 0, "no frame was read");

    // TLS with the right CA but no client certificate.
    let report = tmp("nocert-report.json");
    let (mut dest, addr) = tls_dest(&dir, &report);
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = std::net::TcpStream::connect(&addr).unwrap();
    // The client's side of the handshake may complete; the server refuses.
    let _ = memfabric_validator::migrate::tls::Conn::client(&std::sync::Arc::new(cfg), tcp);
    assert!(dest.wait().unwrap().success());
    let r = json(&report);
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("TLS handshake with the source") && error.to_lowercase().contains("certificate"), "{error}");
    assert_eq!(r["pages_received"], 0);
}
