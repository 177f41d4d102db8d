//! Transport tests: message encoding, per-session mailboxes, device names
//! to ranks and control broadcasts.

use super::*;

#[test]
fn messages_survive_the_wire() {
    let t = Arc::new(Tensor::from_vec(vec![2, 3], vec![1f32, -2.0, 3.5, 0.0, 7.0, 8.0]).unwrap());
    let b = encode(
        7,
        &Msg::Data {
            edge: 3,
            mb: 41,
            tensor: t.clone(),
        },
    );
    match decode(&b).unwrap() {
        (
            7,
            Msg::Data {
                edge: 3,
                mb: 41,
                tensor,
            },
        ) => {
            assert_eq!(tensor.shape(), &[2, 3]);
            assert_eq!(
                tensor.as_slice::<f32>().unwrap(),
                t.as_slice::<f32>().unwrap()
            );
        }
        other => panic!("decoded {other:?}"),
    }
    let b = encode(
        2,
        &Msg::Control {
            tag: 9,
            bytes: vec![1, 2, 3],
        },
    );
    assert!(
        matches!(decode(&b).unwrap(), (2, Msg::Control { tag: 9, bytes }) if bytes == [1, 2, 3])
    );
    // A truncated tensor is an error, not a panic.
    let mut b = encode(
        1,
        &Msg::Data {
            edge: 0,
            mb: 0,
            tensor: t,
        },
    );
    b.truncate(b.len() - 1);
    assert!(decode(&b).is_err());
    assert!(decode(&[]).is_err());
    assert!(decode(&[99, 0, 0, 0, 0]).is_err());
}

#[test]
fn wire_messages_survive_the_wire() {
    let id: Vec<u8> = (0..128).map(|i| i as u8).collect();
    let b = encode(
        4,
        &Msg::WireOpen {
            pair: 2,
            id: id.clone(),
        },
    );
    assert!(matches!(decode(&b).unwrap(), (4, Msg::WireOpen { pair: 2, id: got }) if got == id));
    let b = encode(
        4,
        &Msg::WireData {
            edge: 9,
            mb: 1 << 40,
            dtype: DType::BF16,
            shape: vec![3, 0, 5],
        },
    );
    match decode(&b).unwrap() {
        (
            4,
            Msg::WireData {
                edge: 9,
                mb,
                dtype: DType::BF16,
                shape,
            },
        ) => {
            assert_eq!(mb, 1 << 40);
            assert_eq!(shape, [3, 0, 5]);
        }
        other => panic!("decoded {other:?}"),
    }
    // Trailing bytes or a shape whose size overflows are errors.
    let mut long = b.clone();
    long.push(0);
    assert!(decode(&long).unwrap_err().to_string().contains("trailing"));
    let huge = encode(
        4,
        &Msg::WireData {
            edge: 0,
            mb: 0,
            dtype: DType::F32,
            shape: vec![usize::MAX / 2, 4],
        },
    );
    assert!(decode(&huge).unwrap_err().to_string().contains("overflows"));
    assert!(decode(&b[..b.len() - 3]).is_err());
}

#[test]
fn early_messages_wait_for_their_session() {
    let hubs = local_group(2).unwrap();
    let s = hubs[0].new_session();
    assert_eq!(hubs[1].new_session(), s);
    hubs[1].send(0, s, &Msg::Credit { edge: 5 }).unwrap();
    let (tx, rx) = unbounded();
    hubs[0].open(
        s,
        Arc::new(move |from, m| {
            if let Msg::Credit { edge } = m {
                let _ = tx.send((from, edge));
            }
        }),
    );
    assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap(), (1, 5));
    hubs[1].send(0, s, &Msg::Credit { edge: 6 }).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap(), (1, 6));
    hubs[0].close(s);
    hubs[1].send(0, s, &Msg::Credit { edge: 7 }).unwrap();
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
}

#[test]
fn device_names_resolve_to_ranks() {
    let hubs = local_group(3).unwrap();
    let h = &hubs[1];
    assert_eq!(h.rank_of("cpu:0").unwrap(), 0);
    assert_eq!(h.rank_of("rank2/cpu:0").unwrap(), 2);
    assert_eq!(h.rank_of("local1/opencl:0").unwrap(), 1);
    assert!(h
        .rank_of("rank3/cpu:0")
        .unwrap_err()
        .to_string()
        .contains("3 rank"));
    assert!(h
        .rank_of("nohost/cpu:0")
        .unwrap_err()
        .to_string()
        .contains("nohost"));
    assert_eq!(local_name("rank2/cpu:1"), "cpu:1");
    assert_eq!(local_name("cpu:1"), "cpu:1");
}

#[test]
fn control_broadcast_reaches_every_rank() {
    let hubs = local_group(3).unwrap();
    hubs[0].broadcast(4, b"plan").unwrap();
    for h in &hubs[1..] {
        let (from, tag, bytes) = h.recv_control(Some(Duration::from_secs(1))).unwrap();
        assert_eq!((from, tag, bytes.as_slice()), (0, 4, &b"plan"[..]));
    }
    assert!(hubs[0]
        .recv_control(Some(Duration::from_millis(60)))
        .is_err());
}

/// The in-process group's all-reduce: every rank gets the sum of every
/// rank's buffer, round after round (ranks run ahead of each other), and a
/// length mismatch is an error, not a hang.
#[test]
fn allreduce_sums_over_the_group() {
    let hubs = local_group(3).unwrap();
    let handles: Vec<_> = hubs
        .iter()
        .cloned()
        .map(|h| {
            std::thread::spawn(move || {
                let r = h.rank() as f32;
                (0..20)
                    .map(|round| {
                        let v = vec![r + round as f32, 1.0, -r * 0.5];
                        h.allreduce_sum(v).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        let sums = h.join().unwrap();
        for (round, s) in sums.iter().enumerate() {
            // Ranks 0, 1, 2: (0+1+2) + 3·round, 3, -(0+1+2)/2.
            assert_eq!(
                s,
                &vec![3.0 + 3.0 * round as f32, 3.0, -1.5],
                "round {round}"
            );
        }
    }
    // A single rank needs no partner.
    let one = local_group(1).unwrap();
    assert_eq!(one[0].allreduce_sum(vec![2.0]).unwrap(), vec![2.0]);
    // Mismatched lengths.
    let two = local_group(2).unwrap();
    let h1 = two[1].clone();
    let t = std::thread::spawn(move || h1.allreduce_sum(vec![1.0, 2.0]));
    std::thread::sleep(std::time::Duration::from_millis(50));
    let e = two[0].allreduce_sum(vec![1.0]);
    assert!(
        e.is_err() || t.join().unwrap().is_err(),
        "a length mismatch must fail"
    );
}
