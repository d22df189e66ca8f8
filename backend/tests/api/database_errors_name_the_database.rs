//! A database that cannot be opened stops `simmer` with one line that names
//! it (the SQLite path; PostgreSQL's host:port/database, never the password)
//! and the operating system's reason. The files `simmer` keeps (database,
//! its WAL and shared-memory files, the signing secret) are private to its
//! user under a normal umask.

use std::process::Output;
use std::time::Duration;

use crate::simmer_process::{command, Simmer};

/// `simmer migrate` with these variables; its output.
fn migrate(dir: &std::path::Path, env: &[(&str, &str)]) -> Output {
    command(dir, env).arg("migrate").output().unwrap()
}

/// Asserts a failed start whose stderr is one line containing all of `parts`.
#[track_caller]
fn fails_with_one_line(out: &Output, parts: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert!(!out.status.success(), "it started: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line:\n{stderr}");
    for part in parts {
        assert!(stderr.contains(part), "{part:?} missing from: {stderr}");
    }
    stderr
}

#[test]
fn a_sqlite_file_that_cannot_be_opened_names_its_path_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where a file is: no user, root included, can create it.
    std::fs::write(dir.path().join("blocker"), "").unwrap();
    let data_dir = dir.path().join("blocker").join("data");
    let out = migrate(
        dir.path(),
        &[("SIMMER_DATA_DIR", data_dir.to_str().unwrap())],
    );
    fails_with_one_line(
        &out,
        &[
            &data_dir.join("simmer.db").display().to_string(),
            "Not a directory",
        ],
    );

    // A URL that may not create the file, to a file that is not there.
    let missing = dir.path().join("missing.db");
    let url = format!("sqlite://{}", missing.display());
    let out = migrate(dir.path(), &[("DATABASE_URL", &url)]);
    fails_with_one_line(
        &out,
        &[&missing.display().to_string(), "No such file or directory"],
    );
}

#[test]
fn a_sqlite_directory_without_write_permission_says_permission_denied() {
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        eprintln!("skipped: root ignores file permissions");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    let out = migrate(dir.path(), &[("SIMMER_DATA_DIR", locked.to_str().unwrap())]);
    fails_with_one_line(
        &out,
        &[
            &locked.join("simmer.db").display().to_string(),
            "Permission denied",
        ],
    );
}

#[test]
fn a_closed_postgresql_port_names_host_port_and_database_not_the_password() {
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://simmer:hunter2@127.0.0.1:{port}/simmer");
    let started = std::time::Instant::now();
    let out = migrate(dir.path(), &[("DATABASE_URL", &url)]);
    let line = fails_with_one_line(
        &out,
        &[&format!("127.0.0.1:{port}/simmer"), "Connection refused"],
    );
    assert!(!line.contains("hunter2"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[actix_rt::test]
async fn database_and_secret_files_are_private_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut simmer = Simmer::start(dir.path(), &[]);
    // Writes make SQLite create its WAL and shared-memory files.
    simmer.rest().register().await;
    for name in [
        "simmer.db",
        "simmer.db-wal",
        "simmer.db-shm",
        "simmer.secret",
    ] {
        let path = dir.path().join(name);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{name} has mode {:o}", mode & 0o777);
    }
    simmer.signal("TERM");
    assert!(simmer.wait_exit(Duration::from_secs(40)).await.0.success());
}
