//! Lenient loading (issue 18): one-change structural mutants of the
//! hand-built fixtures (`scripts/gen_fixtures.py`, `write_mutants`: wrong
//! or missing attribute types, duplicated attributes, inputs, outputs,
//! initializers and node names, bad opsets and IR versions, dangling
//! inputs, unknown ops and domains, ...), each with onnxruntime's verdict
//! (load, then run on the case's inputs). Every mutant onnxruntime refuses,
//! hetflow must refuse too (at load, build or run, with an error, never a
//! panic). Before strict loading, hetflow ran 181 of 235 such mutants that
//! onnxruntime refuses.

mod common;
use hetflow::{Model, SessionBuilder};
use std::sync::Arc;

#[test]
fn mutants_onnxruntime_refuses_are_refused() {
    let dir = common::fixtures().join("mutants");
    let text = std::fs::read_to_string(dir.join("verdicts.json"))
        .unwrap_or_else(|e| panic!("{}: {e} (run `bash scripts/setup.sh`)", dir.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mutants = v["mutants"].as_array().unwrap();
    assert!(mutants.len() >= 200, "only {} mutants", mutants.len());
    let (mut refused, mut lenient, mut stricter) = (0, Vec::new(), 0);
    for m in mutants {
        let file = m["file"].as_str().unwrap();
        let ort_accepts = m["onnxruntime_accepts"].as_bool().unwrap();
        let case = common::case(m["base"].as_str().unwrap());
        let outcome = std::panic::catch_unwind(|| -> Result<(), String> {
            let model = Model::load(dir.join(file)).map_err(|e| e.to_string())?;
            let mut s = SessionBuilder::new(&model)
                .build()
                .map_err(|e| e.to_string())?;
            let inputs = case
                .inputs
                .iter()
                .map(|(_, f)| Arc::new(common::read(f)))
                .collect();
            s.run(inputs).map(|_| ()).map_err(|e| e.to_string())
        });
        let ours = match outcome {
            Ok(r) => r,
            Err(_) => panic!("{file}: hetflow panicked"),
        };
        match (ort_accepts, ours) {
            (false, Err(_)) => refused += 1,
            (false, Ok(())) => lenient.push(format!(
                "{file} (onnxruntime: {})",
                m["onnxruntime_error"].as_str().unwrap_or("")
            )),
            (true, Err(e)) => {
                stricter += 1;
                eprintln!("{file}: onnxruntime runs it, hetflow refuses: {e}");
            }
            (true, Ok(())) => {}
        }
    }
    eprintln!(
        "{} mutants: onnxruntime refuses {}, hetflow refuses {refused} of those; hetflow also refuses {stricter} that onnxruntime runs",
        mutants.len(),
        refused + lenient.len()
    );
    assert!(
        lenient.is_empty(),
        "hetflow runs {} mutant(s) that onnxruntime refuses:\n{}",
        lenient.len(),
        lenient.join("\n")
    );
}
