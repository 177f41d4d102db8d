//! Checkpoints: safetensors files (the `safetensors` crate) holding the
//! weights (`param/<name>`), running statistics (`stat/<name>`) and the
//! optimizer's moments (`opt.m/<name>`, `opt.v/<name>`), with the step and
//! epoch in the metadata (and in bf16 the loss scale, its run of good
//! steps and the skipped steps). [`Trainer::resume`] restores all of it,
//! so a resumed run continues exactly where the saved one stopped.

use super::Trainer;
use crate::Error;
use hetflow_ops::{DType, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;

fn st_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Setting(format!("{}: {e}", path.display()))
}

impl Trainer {
    /// Writes a checkpoint after `epoch` epochs.
    pub fn save_checkpoint(&self, path: &Path, epoch: usize) -> Result<(), Error> {
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, t) in self.tensors()? {
            let kind = if self.names.contains(&name) {
                "param"
            } else {
                "stat"
            };
            owned.push((
                format!("{kind}/{name}"),
                t.shape().to_vec(),
                f32_bytes(&t.to_f32_vec()),
            ));
        }
        for (i, name) in self.names.iter().enumerate() {
            for (kind, v) in [
                ("opt.m", &self.optimizer.m[i]),
                ("opt.v", &self.optimizer.v[i]),
            ] {
                if !v.is_empty() {
                    owned.push((
                        format!("{kind}/{name}"),
                        self.shapes[i].clone(),
                        f32_bytes(v),
                    ));
                }
            }
        }
        let mut views = Vec::new();
        for (n, s, b) in &owned {
            views.push((
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).map_err(|e| st_err(path, e))?,
            ));
        }
        let mut meta = HashMap::from([
            ("format".to_string(), "hetflow-train-1".to_string()),
            ("step".to_string(), self.optimizer.step.to_string()),
            ("epoch".to_string(), epoch.to_string()),
        ]);
        if let Some(s) = &self.scaler {
            meta.insert("loss_scale".into(), s.scale.to_string());
            meta.insert("loss_scale_good".into(), s.good_steps.to_string());
            meta.insert("loss_scale_skipped".into(), s.skipped.to_string());
        }
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| st_err(path, e))?;
        std::fs::write(path, bytes).map_err(|e| st_err(path, e))
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`] for
    /// the same model; returns the epochs it had completed.
    pub fn resume(&mut self, path: &Path) -> Result<usize, Error> {
        let bytes = std::fs::read(path).map_err(|e| st_err(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| st_err(path, e))?;
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| st_err(path, e))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some("hetflow-train-1") {
            return Err(st_err(path, "not a hetflow training checkpoint"));
        }
        let num = |k: &str| -> Result<u64, Error> {
            meta.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| st_err(path, format!("metadata '{k}' missing")))
        };
        let read = |name: &str, shape: &[usize]| -> Result<Option<Vec<f32>>, Error> {
            let Ok(v) = st.tensor(name) else {
                return Ok(None);
            };
            if v.dtype() != Dtype::F32 || v.shape() != shape {
                return Err(st_err(
                    path,
                    format!(
                        "'{name}' is {:?} {:?}, the model's is F32 {shape:?}",
                        v.dtype(),
                        v.shape()
                    ),
                ));
            }
            Ok(Some(
                v.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ))
        };
        let mut weights = Vec::new();
        for (name, shape) in self.names.iter().zip(&self.shapes) {
            let w = read(&format!("param/{name}"), shape)?.ok_or_else(|| {
                st_err(
                    path,
                    format!("no weight '{name}' (a checkpoint of another model?)"),
                )
            })?;
            weights.push(w);
        }
        let mut stats = Vec::new();
        for (name, t) in &self.stats {
            let v = read(&format!("stat/{name}"), t.shape())?
                .ok_or_else(|| st_err(path, format!("no running statistic '{name}'")))?;
            stats.push((name.clone(), Tensor::from_vec(t.shape().to_vec(), v)?));
        }
        for (i, name) in self.names.iter().enumerate() {
            for (kind, slot) in [
                ("opt.m", &mut self.optimizer.m[i]),
                ("opt.v", &mut self.optimizer.v[i]),
            ] {
                if slot.is_empty() {
                    continue;
                }
                match read(&format!("{kind}/{name}"), &self.shapes[i])? {
                    Some(v) => *slot = v,
                    None => {
                        return Err(st_err(
                            path,
                            format!("no '{kind}/{name}' (saved with another optimizer?)"),
                        ))
                    }
                }
            }
        }
        self.weights = weights;
        for (k, t) in stats {
            debug_assert_eq!(t.dtype(), DType::F32);
            self.stats.insert(k, t);
        }
        self.optimizer.step = num("step")?;
        if let Some(s) = &mut self.scaler {
            // A checkpoint of an f32 run starts the scale afresh.
            if let Some(scale) = meta.get("loss_scale").and_then(|v| v.parse().ok()) {
                s.scale = scale;
                s.good_steps = num("loss_scale_good")?;
                s.skipped = num("loss_scale_skipped")?;
            }
        }
        Ok(num("epoch")? as usize)
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
