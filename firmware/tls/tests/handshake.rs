//! Real TLS 1.3 handshakes in memory between the box and server
//! configurations: identity, cipher preference, resumption, and refusals of
//! revoked, foreign and absent certificates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;

use rustls::{ClientConnection, HandshakeKind, ServerConnection};
use rustls_pki_types::ServerName;
use tls::{CipherPreference, Pki, client_config, peer_box_id, server_config};
use wire::BoxId;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cbox-tls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn setup(tag: &str) -> (Pki, PathBuf) {
    let d = dir(tag);
    let pki = Pki::new(&d);
    pki.init("test CA", 1).unwrap();
    pki.issue_server("snapt", &["snapt.test".into(), "127.0.0.1".into()], 10)
        .unwrap();
    pki.issue_box(&BoxId::new("box-1").unwrap(), 10).unwrap();
    (pki, d)
}

/// Runs a handshake to completion; Err with the first side's error.
fn handshake(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), rustls::Error> {
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
            server.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets()?;
        }
        if !client.is_handshaking()
            && !server.is_handshaking()
            && !client.wants_write()
            && !server.wants_write()
        {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

fn connect(
    ccfg: &Arc<rustls::ClientConfig>,
    scfg: &Arc<rustls::ServerConfig>,
) -> (
    ClientConnection,
    ServerConnection,
    Result<(), rustls::Error>,
) {
    let mut c =
        ClientConnection::new(ccfg.clone(), ServerName::try_from("snapt.test").unwrap()).unwrap();
    let mut s = ServerConnection::new(scfg.clone()).unwrap();
    let r = handshake(&mut c, &mut s);
    (c, s, r)
}

#[test]
fn box_identity_comes_from_its_certificate_and_resumption_works() {
    let (pki, d) = setup("ok");
    let (bc, bk) = pki.box_files("box-1");
    let (sc, sk) = pki.server_files("snapt");
    let ccfg = client_config(&pki.ca_cert(), &bc, &bk, CipherPreference::Chacha20).unwrap();
    let scfg = server_config(
        &pki.ca_cert(),
        &sc,
        &sk,
        Some(&pki.crl()),
        CipherPreference::Chacha20,
    )
    .unwrap();
    let (c, s, r) = connect(&ccfg, &scfg);
    r.unwrap();
    assert_eq!(
        peer_box_id(s.peer_certificates()).unwrap(),
        BoxId::new("box-1").unwrap()
    );
    assert_eq!(
        format!("{:?}", s.negotiated_cipher_suite().unwrap().suite()),
        "TLS13_CHACHA20_POLY1305_SHA256"
    );
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
    // The next tunnel (a handover) resumes: one round trip less.
    let (c2, s2, r2) = connect(&ccfg, &scfg);
    r2.unwrap();
    assert_eq!(c2.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(
        peer_box_id(s2.peer_certificates()).unwrap(),
        BoxId::new("box-1").unwrap()
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn aes_preference_is_honoured_by_the_server() {
    let (pki, d) = setup("aes");
    let (bc, bk) = pki.box_files("box-1");
    let (sc, sk) = pki.server_files("snapt");
    let ccfg = client_config(&pki.ca_cert(), &bc, &bk, CipherPreference::Chacha20).unwrap();
    let scfg = server_config(&pki.ca_cert(), &sc, &sk, None, CipherPreference::Aes).unwrap();
    let (_, s, r) = connect(&ccfg, &scfg);
    r.unwrap();
    assert_eq!(
        format!("{:?}", s.negotiated_cipher_suite().unwrap().suite()),
        "TLS13_AES_128_GCM_SHA256"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn revoked_box_is_refused_during_the_handshake() {
    let (pki, d) = setup("revoked");
    let (bc, bk) = pki.box_files("box-1");
    let saved = (std::fs::read(&bc).unwrap(), std::fs::read(&bk).unwrap());
    pki.revoke("box", "box-1").unwrap();
    std::fs::write(&bc, &saved.0).unwrap();
    std::fs::write(&bk, &saved.1).unwrap();
    let (sc, sk) = pki.server_files("snapt");
    let ccfg = client_config(&pki.ca_cert(), &bc, &bk, CipherPreference::Chacha20).unwrap();
    let scfg = server_config(
        &pki.ca_cert(),
        &sc,
        &sk,
        Some(&pki.crl()),
        CipherPreference::Chacha20,
    )
    .unwrap();
    let (_, _, r) = connect(&ccfg, &scfg);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("Revoked"), "{e}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let (pki, d) = setup("ours");
    let (other, d2) = setup("theirs");
    let (bc, bk) = other.box_files("box-1");
    let (sc, sk) = pki.server_files("snapt");
    // The box trusts our server, but its certificate comes from another CA.
    let ccfg = client_config(&pki.ca_cert(), &bc, &bk, CipherPreference::Chacha20).unwrap();
    let scfg = server_config(
        &pki.ca_cert(),
        &sc,
        &sk,
        Some(&pki.crl()),
        CipherPreference::Chacha20,
    )
    .unwrap();
    let (_, _, r) = connect(&ccfg, &scfg);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("invalid peer certificate"), "{e}");
    let _ = std::fs::remove_dir_all(d);
    let _ = std::fs::remove_dir_all(d2);
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let (pki, d) = setup("anon");
    let (sc, sk) = pki.server_files("snapt");
    let scfg = server_config(
        &pki.ca_cert(),
        &sc,
        &sk,
        Some(&pki.crl()),
        CipherPreference::Chacha20,
    )
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in tls::config::load_certs(&pki.ca_cert()).unwrap() {
        roots.add(c).unwrap();
    }
    let anon = rustls::ClientConfig::builder_with_provider(tls::config::provider(
        CipherPreference::Chacha20,
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (_, _, r) = connect(&Arc::new(anon), &scfg);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("no certificates"), "{e}");
    let _ = std::fs::remove_dir_all(d);
}
