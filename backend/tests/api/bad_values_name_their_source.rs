//! A bad setting is reported with where its value came from: an environment
//! variable by its name and value (not as a flag nobody typed), a flag by the
//! flag, the config file by its path and key. Bad variables and flags are
//! usage errors (exit 2, like every clap error); nothing panics.

use std::process::{Command, Output};

/// `simmer` with these arguments and only these variables, in `dir`.
fn simmer(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simmer"))
        .current_dir(dir)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Asserts a usage error (exit 2, no panic); its stderr.
#[track_caller]
fn usage_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

#[test]
fn a_bad_environment_variable_is_named_with_its_value() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&[][..], &["serve"], &["migrate"]] {
        let out = simmer(dir.path(), args, &[("SIMMER_PAGE_SIZE_MAX", "abc")]);
        let stderr = usage_error(&out);
        assert!(
            stderr.starts_with("error: environment variable SIMMER_PAGE_SIZE_MAX=abc: "),
            "simmer {args:?}: {stderr}"
        );
        assert!(stderr.contains("invalid digit"), "{stderr}");
        assert!(stderr.contains("--help"), "{stderr}");
    }
    // One of a fixed set: the possible values are still listed.
    let out = simmer(dir.path(), &["migrate"], &[("SIMMER_LOG_FORMAT", "xml")]);
    let stderr = usage_error(&out);
    assert!(
        stderr.starts_with("error: environment variable SIMMER_LOG_FORMAT=xml: "),
        "{stderr}"
    );
    assert!(stderr.contains("text, json"), "{stderr}");
    // Nothing was started: no database in the working directory.
    assert!(!dir.path().join("simmer.db").exists());
}

#[test]
fn a_bad_flag_is_named_as_the_flag_even_with_its_variable_set() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["migrate", "--page-size-max", "abc"][..],
        &["migrate", "--page-size-max=abc"],
    ] {
        let out = simmer(dir.path(), args, &[("SIMMER_PAGE_SIZE_MAX", "7")]);
        let stderr = usage_error(&out);
        assert!(
            stderr.starts_with("error: invalid value 'abc' for '--page-size-max"),
            "simmer {args:?}: {stderr}"
        );
        assert!(!stderr.contains("SIMMER_PAGE_SIZE_MAX"), "{stderr}");
    }
}

#[test]
fn a_bad_config_file_value_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("simmer.toml");
    std::fs::write(&config, "page_size_max = \"abc\"\n").unwrap();
    let out = simmer(
        dir.path(),
        &["migrate"],
        &[("SIMMER_CONFIG", config.to_str().unwrap())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(&format!("parsing config file {}", config.display())),
        "{stderr}"
    );
    assert!(stderr.contains("page_size_max"), "{stderr}");
}
