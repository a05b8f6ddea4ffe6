//! `parking-bridge demo --nodes 3`: the simulated lot as a cluster (a lot node and two
//! lane nodes, separate bridges with separate databases, on the embedded broker), with
//! vehicles entering on one node and leaving on another; the demo's own exact-match
//! check of the platform's record must pass.

mod process_common;

use std::time::Duration;

#[test]
fn demo_as_a_three_node_cluster_leaves_an_exact_record() {
    let dir = tempfile::tempdir().unwrap();
    let child = process_common::demo_command(
        dir.path(),
        &[
            "--nodes",
            "3",
            "--vehicles",
            "16",
            "--speed",
            "1",
            "--seed",
            "7",
            "--lanes",
            "2:2",
            "--status-listen",
            "",
        ],
    )
    .spawn()
    .unwrap();
    let mut guard = process_common::Guard(child);
    let status = guard.wait_at_most(Duration::from_secs(240), "demo did not finish in time");
    let mut stdout = String::new();
    if let Some(mut o) = guard.0.stdout.take() {
        use std::io::Read;
        let _ = o.read_to_string(&mut stdout);
    }
    assert!(status.success(), "demo failed:\n{stdout}");
    assert!(
        stdout.contains("node lane-1 (lane node)") && stdout.contains("node lane-2 (lane node)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PASS: the platform's record matches the simulation exactly"),
        "{stdout}"
    );
    // Each node has its own database; the lane nodes' queues are empty at the end.
    for node in ["lane-1", "lane-2"] {
        let state = dir.path().join("nodes").join(node).join("state");
        let q = parking_bridge::cluster::queue::LaneQueue::open(&state, u64::MAX).unwrap();
        let depth = q.depth().unwrap();
        assert_eq!(depth.passages, 0, "{node}'s queue drained");
        assert!(q.last_seq().unwrap() > 0, "{node} sent passages");
    }
}
