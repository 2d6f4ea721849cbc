//! Crash safety: the node is killed with SIGKILL while clients append as fast as they can
//! and fetch checkpoints; after each restart every acknowledged append is there, with the
//! same id, and the journal opened only after checking every record. Several rounds on the
//! same data directory; at the end `axon audit` passes, and so does every checkpoint the
//! node handed out before it was killed.

use crate::common::spawn_axon;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every acknowledged (index, id) is served with that id.
fn assert_all_present(base: &str, acked: &[(u64, String)]) {
    let c = axon_drivers::tls::client_builder().build().unwrap();
    for (index, id) in acked {
        let e: Value = c
            .get(format!("{base}/v1/journal/entries/{index}"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(e["id"].as_str(), Some(id.as_str()), "entry {index}");
    }
}

#[test]
fn every_acknowledged_append_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(u64, String)> = Vec::new();
    let served: Arc<Mutex<Vec<String>>> = Arc::default();
    // A fixed sequence of kill points, different each round.
    for (round, kill_after) in [137usize, 41, 263].into_iter().enumerate() {
        let crate::common::Spawned {
            mut child, base, ..
        } = spawn_axon(dir.path(), &[], false);
        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        let token = token.trim().to_owned();

        // Everything acknowledged before this start is still there.
        assert_all_present(&base, &acked);

        let this_round: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let (base, token) = (base.clone(), token.clone());
                let (acks, stop) = (this_round.clone(), stop.clone());
                std::thread::spawn(move || {
                    let c = axon_drivers::tls::client_builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let res = c
                            .post(format!("{base}/v1/journal/notes"))
                            .bearer_auth(&token)
                            .json(&json!({"text": format!("round {round} writer {t} note {i}")}))
                            .send();
                        let Ok(res) = res else { break };
                        if res.status() != 201 {
                            break;
                        }
                        let Ok(v) = res.json::<Value>() else { break };
                        let index = v["index"].as_u64().unwrap();
                        acks.lock()
                            .unwrap()
                            .push((index, v["id"].as_str().unwrap().to_owned()));
                        i += 1;
                    }
                })
            })
            .collect();
        // A client that keeps the checkpoints it is handed.
        let reader = {
            let (base, served, stop) = (base.clone(), served.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = axon_drivers::tls::client_builder().build().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(res) = c.get(format!("{base}/v1/journal/checkpoint")).send() else {
                        break;
                    };
                    if res.status() != 200 {
                        break;
                    }
                    let Ok(note) = res.text() else { break };
                    served.lock().unwrap().push(note);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        axon_harness::wait_until(
            "the round's appends are acknowledged",
            Duration::from_secs(60),
            || this_round.lock().unwrap().len() >= kill_after,
        )
        .unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        reader.join().unwrap();
        let mut got = this_round.lock().unwrap().clone();
        assert!(got.len() >= kill_after);
        got.sort();
        acked.extend(got);
    }
    // A last start checks the last round, then the checkpoint covers everything.
    let crate::common::Spawned {
        mut child, base, ..
    } = spawn_axon(dir.path(), &[], false);
    assert_all_present(&base, &acked);
    let c = axon_drivers::tls::client_builder().build().unwrap();
    let note = c
        .get(format!("{base}/v1/journal/checkpoint"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    let max = acked.iter().map(|(i, _)| *i).max().unwrap();
    assert!(
        size > max,
        "checkpoint size {size} <= acknowledged index {max}"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // The audit passes on the killed node's data, and every checkpoint it handed out
    // holds against the journal (a sample, one file each).
    let served = served.lock().unwrap().clone();
    assert!(!served.is_empty(), "no checkpoint was served");
    let mut args = vec![];
    let step = served.len().div_ceil(20);
    for (k, note) in served.iter().step_by(step).enumerate() {
        let f = dir.path().join(format!("served-{k}.checkpoint"));
        std::fs::write(&f, note).unwrap();
        args.push(std::ffi::OsString::from("--checkpoint"));
        args.push(f.into_os_string());
    }
    let (code, text, _) = crate::common::audit(dir.path(), &args);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("given checkpoint(s) hold"), "{text}");
}
