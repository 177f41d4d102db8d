//! Strict loading (issue 18): what onnxruntime refuses at load, hetflow
//! refuses too, with an error naming the node, attribute, domain or value.
//! Each case starts from a model that loads and changes one thing.

use hetflow_ops::onnx::{load_model_bytes, proto};
use prost::Message;
use proto::attribute_proto::AttributeType;

fn vi(name: &str, dims: &[i64]) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension::Value, Dimension};
    proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: Some(1),
                    shape: Some(proto::TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| Dimension {
                                value: Some(Value::DimValue(d)),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn node(name: &str, op: &str, ins: &[&str], out: &str) -> proto::NodeProto {
    proto::NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        ..Default::default()
    }
}

/// x[2, 3] -> Softmax(axis=0) -> Relu -> y, opset 17, IR 8.
fn model() -> proto::ModelProto {
    let mut sm = node("sm", "Softmax", &["x"], "s");
    sm.attribute.push(int_attr("axis", 0));
    proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(proto::GraphProto {
            name: Some("g".into()),
            node: vec![sm, node("act", "Relu", &["s"], "y")],
            input: vec![vi("x", &[2, 3])],
            output: vec![vi("y", &[2, 3])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn graph(m: &mut proto::ModelProto) -> &mut proto::GraphProto {
    m.graph.as_mut().unwrap()
}

/// The load error of `m`, which must fail.
fn refused(m: &proto::ModelProto) -> String {
    match load_model_bytes(&m.encode_to_vec(), None) {
        Ok(_) => panic!("the model loaded but should be refused"),
        Err(e) => e.to_string(),
    }
}

fn expect(m: &proto::ModelProto, needles: &[&str]) {
    let e = refused(m);
    for n in needles {
        assert!(e.contains(n), "'{n}' not in: {e}");
    }
}

#[test]
fn the_base_model_loads() {
    load_model_bytes(&model().encode_to_vec(), None).unwrap();
}

#[test]
fn attribute_types_are_checked() {
    // Typed FLOAT with a stale int beside it: two values.
    let mut m = model();
    let a = &mut graph(&mut m).node[0].attribute[0];
    a.r#type = Some(AttributeType::Float as i32);
    a.f = Some(1.0);
    expect(&m, &["node 'sm'", "attribute 'axis'", "2 values"]);
    // Typed FLOAT holding only a float: Softmax's axis takes an INT.
    let a = &mut graph(&mut m).node[0].attribute[0];
    a.i = None;
    expect(
        &m,
        &[
            "node 'sm'",
            "attribute 'axis' has type FLOAT but Softmax takes INT",
        ],
    );
    // Typed INT but holding a float.
    let a = &mut graph(&mut m).node[0].attribute[0];
    a.r#type = Some(AttributeType::Int as i32);
    expect(
        &m,
        &["attribute 'axis' is typed INT but holds a FLOAT value"],
    );
    // No type at all.
    let a = &mut graph(&mut m).node[0].attribute[0];
    (a.r#type, a.f, a.i) = (None, None, Some(0));
    expect(&m, &["attribute 'axis' has no type"]);
    // Given twice.
    let mut m = model();
    graph(&mut m).node[0].attribute.push(int_attr("axis", 1));
    expect(&m, &["attribute 'axis' is given twice"]);
}

#[test]
fn ir_version_is_checked() {
    let mut m = model();
    m.ir_version = None;
    expect(&m, &["no ir_version"]);
    m.ir_version = Some(99);
    expect(&m, &["IR version 99 is newer"]);
}

#[test]
fn opsets_are_validated_per_domain() {
    for (v, needle) in [
        (0, "version 0"),
        (99, "opset 99 of domain ai.onnx is newer"),
        (-3, "version -3"),
    ] {
        let mut m = model();
        m.opset_import[0].version = Some(v);
        expect(&m, &[needle]);
    }
    let mut m = model();
    m.opset_import.clear();
    expect(
        &m,
        &["imports no opset for the default domain", "node 'sm'"],
    );
    let mut m = model();
    m.opset_import.push(proto::OperatorSetIdProto {
        domain: Some("ai.onnx".into()),
        version: Some(13),
    });
    expect(&m, &["domain 'ai.onnx' twice"]);
    // Another domain's import is fine while no node uses it.
    let mut m = model();
    m.opset_import.push(proto::OperatorSetIdProto {
        domain: Some("ai.onnx.ml".into()),
        version: Some(3),
    });
    load_model_bytes(&m.encode_to_vec(), None).unwrap();
}

#[test]
fn ops_must_exist_in_the_imported_opset() {
    // Gelu arrived in opset 20.
    let mut m = model();
    graph(&mut m).node[1].op_type = Some("Gelu".into());
    expect(
        &m,
        &[
            "node 'act'",
            "Gelu is not in opset 17: it was added in opset 20",
        ],
    );
    m.opset_import[0].version = Some(20);
    load_model_bytes(&m.encode_to_vec(), None).unwrap();
    // Upsample left the default domain in opset 10.
    let mut m = model();
    m.opset_import[0].version = Some(10);
    let g = graph(&mut m);
    g.node[0].attribute[0].i = Some(1); // Softmax-1 coerces to 2-D
    g.node[1] = node("up", "Upsample", &["s", "scales"], "y");
    expect(
        &m,
        &[
            "node 'up'",
            "Upsample was removed from the default domain in opset 10",
        ],
    );
}

#[test]
fn duplicate_names_and_missing_outputs_are_refused() {
    let mut m = model();
    let x = graph(&mut m).input[0].clone();
    graph(&mut m).input.push(x);
    expect(&m, &["graph input 'x' is listed twice"]);

    let mut m = model();
    graph(&mut m).output.clear();
    expect(&m, &["declares no outputs"]);

    let mut m = model();
    let y = graph(&mut m).output[0].clone();
    graph(&mut m).output.push(y);
    expect(&m, &["graph output 'y' is listed twice"]);

    let mut m = model();
    graph(&mut m).node[1].name = Some("sm".into());
    expect(&m, &["two nodes are named 'sm'"]);

    let mut m = model();
    let w = proto::TensorProto {
        name: Some("w".into()),
        dims: vec![1],
        data_type: Some(1),
        float_data: vec![1.0],
        ..Default::default()
    };
    graph(&mut m).initializer = vec![w.clone(), w];
    expect(&m, &["initializer 'w' is defined twice"]);
}
