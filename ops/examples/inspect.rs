//! Loads an ONNX model and prints its nodes with inferred facts.
//! `cargo run -p hetflow-ops --example inspect -- model.onnx`
fn main() {
    let path = std::env::args().nth(1).expect("usage: inspect MODEL.onnx");
    match hetflow_ops::onnx::load_model(&path) {
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
        Ok(g) => {
            println!(
                "opset {} inputs {} outputs {} nodes {} weights {} bytes",
                g.opset,
                g.inputs.len(),
                g.outputs.len(),
                g.nodes.len(),
                g.weight_bytes()
            );
            for n in &g.nodes {
                let outs: Vec<String> = n
                    .outputs
                    .iter()
                    .map(|o| {
                        let f = &g.value(*o).fact;
                        format!(
                            "{}:{:?}{}",
                            g.name(*o),
                            f.dtype,
                            f.shape
                                .as_ref()
                                .map(|s| hetflow_ops::graph::fmt_shape(s))
                                .unwrap_or("?".into())
                        )
                    })
                    .collect();
                println!("{:30} {:20} -> {}", n.name, n.op.name(), outs.join(", "));
            }
        }
    }
}
