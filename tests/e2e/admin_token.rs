//! The admin token at start: it goes to `<data-dir>/admin.token` only (the node prints the
//! file's path, never the token, on stdout or in its log), and a file left without a
//! token (empty, or cut short by a crash) is replaced with a warning naming it.

use crate::common::{sigterm_and_wait, spawn_axon, Spawned};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Sends a note with `token`; answers the status.
fn note_status(s: &Spawned, token: &str) -> u16 {
    axon_drivers::tls::client_builder()
        .build()
        .unwrap()
        .post(format!("{}/v1/journal/notes", s.base))
        .bearer_auth(token)
        .json(&serde_json::json!({"text": "the token works"}))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn token_path(dir: &Path) -> String {
    dir.join("admin.token").display().to_string()
}

#[test]
fn the_token_goes_to_its_file_only_and_the_path_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    // The data directory does not exist yet: the node creates it.
    let data = dir.path().join("data");
    let s = spawn_axon(&data, &[], true);
    let token = s.token.clone();
    assert_eq!(token.len(), 64);
    let stdout = s.stdout_lines.join("\n");
    assert!(
        stdout.contains(&format!(
            "axon: admin token written to {}",
            token_path(&data)
        )),
        "{stdout}"
    );
    assert!(!stdout.contains(&token), "the token is on stdout: {stdout}");
    assert_eq!(note_status(&s, &token), 201);
    let (code, stderr) = sigterm_and_wait(s);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.is_empty(), "the node logged nothing");
    assert!(
        !stderr.contains(&token),
        "the token is in the log: {stderr}"
    );
}

#[test]
fn a_file_without_a_token_is_replaced_with_a_warning() {
    for left in ["", "9f86d081884c7d65"] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.token");
        std::fs::write(&p, left).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = spawn_axon(dir.path(), &[], true);
        assert_eq!(s.token.len(), 64, "{left:?}");
        assert_ne!(s.token, left);
        assert!(
            s.stdout_lines
                .iter()
                .any(|l| l.starts_with("axon: admin token written to")),
            "{:?}",
            s.stdout_lines
        );
        assert_eq!(note_status(&s, &s.token), 201);
        assert_eq!(note_status(&s, left), 401);
        let token = s.token.clone();
        let (code, stderr) = sigterm_and_wait(s);
        assert_eq!(code, 0, "{stderr}");
        let warning = stderr
            .lines()
            .find(|l| l.contains("WARN") && l.contains("admin token file holds no valid token"))
            .unwrap_or_else(|| panic!("no warning for {left:?}: {stderr}"));
        assert!(warning.contains(&token_path(dir.path())), "{warning}");
        assert!(!stderr.contains(&token));
        // The new token stays: the next start reuses it and writes nothing.
        let again = spawn_axon(dir.path(), &[], false);
        assert_eq!(again.token, token);
        assert!(!again.stdout_lines.iter().any(|l| l.contains("admin token")));
        assert_eq!(sigterm_and_wait(again).0, 0);
    }
}
