//! Dropout with a `seed` attribute and a training_mode input (opset 12+):
//! in training mode the keep mask is drawn as the ONNX reference draws it,
//! `RandomState(seed).uniform(0, 1, shape) >= ratio` with numpy's legacy
//! Mersenne Twister (MT19937, `init_genrand` seeding, 53-bit doubles), so
//! a seeded node gives the same mask on every run and every device as the
//! reference. Without training mode (or with ratio 0) it is the identity.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, opt_input};
use crate::tensor::Tensor;

/// MT19937 as numpy's legacy `RandomState` runs it.
struct Mt {
    state: [u32; 624],
    pos: usize,
}

impl Mt {
    fn new(seed: u32) -> Mt {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let p = state[i - 1];
            state[i] = 1812433253u32
                .wrapping_mul(p ^ (p >> 30))
                .wrapping_add(i as u32);
        }
        Mt { state, pos: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.pos = 0;
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A double in [0, 1) from 53 random bits (numpy's `random_sample`).
    fn next_f64(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67108864.0 + b) / 9007199254740992.0
    }
}

/// Inputs data, optional ratio (default 0.5), optional training_mode
/// (default false); outputs Y and, when asked, the bool keep mask.
pub(crate) fn dropout_seeded(
    seed: i64,
    inputs: &[Option<&Tensor>],
    n_out: usize,
) -> Result<Vec<Tensor>> {
    let x = input(inputs, 0, "data")?;
    let ratio = match opt_input(inputs, 1) {
        Some(r) if r.len() == 1 && r.dtype().is_float() => f64::from(r.to_f32_vec()[0]),
        Some(r) => crate::bail!(
            "Dropout: ratio must be one float, got {} {:?}",
            r.dtype(),
            r.shape()
        ),
        None => 0.5,
    };
    let training = match opt_input(inputs, 2) {
        Some(t) if t.len() == 1 && t.dtype() == DType::Bool => t.to_f32_vec()[0] != 0.0,
        Some(t) => crate::bail!(
            "Dropout: training_mode must be one bool, got {} {:?}",
            t.dtype(),
            t.shape()
        ),
        None => false,
    };
    if !(0.0..1.0).contains(&ratio) {
        crate::bail!("Dropout: ratio {ratio} is not in [0, 1)");
    }
    let (y, mask) = if !training || ratio == 0.0 {
        (x.clone(), vec![true; x.len()])
    } else {
        if !x.dtype().is_float() {
            crate::bail!("Dropout: data must be a float tensor, got {}", x.dtype());
        }
        let seed = u32::try_from(seed)
            .map_err(|_| crate::Error::msg(format!("Dropout: seed {seed} is not in 0..2^32")))?;
        let mut mt = Mt::new(seed);
        let mask: Vec<bool> = (0..x.len()).map(|_| mt.next_f64() >= ratio).collect();
        let scale = 1.0 / (1.0 - ratio);
        let v: Vec<f64> = x
            .cast(DType::F64)
            .as_slice::<f64>()?
            .iter()
            .zip(&mask)
            .map(|(&v, &k)| if k { v * scale } else { 0.0 })
            .collect();
        (
            Tensor::from_vec(x.shape().to_vec(), v)?.cast(x.dtype()),
            mask,
        )
    };
    let mut outs = vec![y];
    if n_out > 1 {
        outs.push(Tensor::from_vec(x.shape().to_vec(), mask)?);
    }
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use super::Mt;

    /// numpy: `np.random.RandomState(0).random_sample(3)` and the first
    /// raw draw of `RandomState(5489)` (MT19937's reference output).
    #[test]
    fn matches_numpy_random_state() {
        let mut mt = Mt::new(0);
        for want in [0.5488135039273248, 0.7151893663724195, 0.6027633760716439] {
            assert_eq!(mt.next_f64(), want);
        }
        assert_eq!(Mt::new(5489).next_u32(), 3499211612);
    }
}
