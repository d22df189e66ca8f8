//! Several nodes need one shared database: a node refuses to start in
//! cluster mode (REDIS_URL set) on SQLite, and says why.

#[test]
fn cluster_mode_refuses_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        crate::simmer_process::command(dir.path(), &[("REDIS_URL", "redis://127.0.0.1:1")])
            .arg("serve")
            .output()
            .unwrap();
    assert!(!output.status.success(), "it must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SQLite") && stderr.contains("PostgreSQL"),
        "the error names the problem: {stderr}"
    );
}
