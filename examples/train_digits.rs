//! Training example: an MLP and a small CNN (BatchNorm, Dropout) on
//! scikit-learn's digits, through the embedding API ([`hetflow::train`]),
//! then the trained CNN served by an ordinary inference session.
//!
//! ```text
//! bash scripts/setup.sh            # writes train-data/ (digits, models)
//! cargo run --release --example train_digits
//! ```
//!
//! `hetflow train` does the same from the command line (docs/training.md).

use hetflow::train::data::Dataset;
use hetflow::train::optim::{Config, Schedule};
use hetflow::train::{Loss, TrainOptions, Trainer};
use hetflow::{Model, SessionBuilder};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var_os("HETFLOW_TRAIN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("train-data"));
    if !dir.join("models/mlp.onnx").is_file() {
        return Err(format!(
            "{}: no training data; run `bash scripts/setup.sh` first",
            dir.display()
        )
        .into());
    }
    let train = Dataset::load(dir.join("digits/train"))?;
    let test = Dataset::load(dir.join("digits/test"))?;
    println!(
        "digits: {} training and {} test images",
        train.len(),
        test.len()
    );

    for (name, epochs, batch, lr, decay) in [("mlp", 40, 16, 0.1, 5e-4), ("cnn", 20, 32, 0.05, 0.0)]
    {
        let model = Model::load_unoptimized(dir.join(format!("models/{name}.onnx")))?;
        let mut optimizer = Config::sgd(lr, 0.9);
        optimizer.weight_decay = decay;
        optimizer.schedule = Schedule::Cosine {
            total: (epochs * (train.len() / batch)) as u64,
        };
        let opts = TrainOptions {
            loss: Loss::CrossEntropy,
            optimizer,
            ..TrainOptions::default()
        };
        let mut trainer = Trainer::new(&model, opts)?;
        let started = Instant::now();
        for epoch in 0..epochs {
            let m = trainer.epoch(&train, batch, epoch, 0, |_, _| {})?;
            if (epoch + 1) % 10 == 0 {
                println!("{name} epoch {:>2}: train loss {:.4}", epoch + 1, m.loss);
            }
        }
        let m = trainer.evaluate(&test.x, &test.y, 360)?;
        println!(
            "{name}: test accuracy {:.2}% after {epochs} epochs ({:.1} s)",
            100.0 * m.accuracy,
            started.elapsed().as_secs_f64()
        );
        if name == "cnn" {
            // The trained weights in an inference session.
            let served = trainer.model()?;
            let mut session = SessionBuilder::new(&served)
                .input_shapes(vec![vec![1, 1, 8, 8]])
                .build()?;
            let x = hetflow::train::rows(&test.x, 0, 1, &[1, 1, 8, 8])?;
            let y = session.run(vec![Arc::new(x)])?;
            let logits = y[0].to_f32_vec();
            let best = (0..logits.len()).fold(0, |b, k| if logits[k] > logits[b] { k } else { b });
            println!(
                "first test image: predicted {best}, label {}",
                test.y.to_i64_vec()[0]
            );
        }
    }
    Ok(())
}
