use std::os::unix::fs::PermissionsExt;

use super::*;

fn tmp() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "cbox-pki-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = fs::remove_dir_all(&d);
    d
}

#[test]
fn issues_with_operator_permissions_and_revokes_into_the_crl() {
    let dir = tmp();
    let pki = Pki::new(&dir);
    pki.init("test CA", 10).unwrap();
    assert!(matches!(pki.init("again", 1), Err(PkiError::CaExists(_))));
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    let id = BoxId::new("box-7").unwrap();
    let (cert, key) = pki.issue_box(&id, 30).unwrap();
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&cert), 0o644);
    assert!(matches!(
        pki.issue_box(&id, 30),
        Err(PkiError::AlreadyIssued { .. })
    ));
    pki.issue_server("snapt", &["127.0.0.1".into(), "snapt.example".into()], 30)
        .unwrap();
    let serial = pki.revoke("box", "box-7").unwrap();
    let idx = pki.index().unwrap();
    assert!(
        idx.iter()
            .any(|e| e.serial == serial && e.revoked_at.is_some())
    );
    assert!(!cert.exists(), "revoked certificate moved aside");
    // A new certificate for the same box may be issued after revocation.
    pki.issue_box(&id, 30).unwrap();
    assert!(matches!(
        pki.revoke("box", "nobody"),
        Err(PkiError::NotIssued { .. })
    ));
    let crls = crate::config::load_crls(&pki.crl()).unwrap();
    assert_eq!(crls.len(), 1);
    let _ = fs::remove_dir_all(&dir);
}
