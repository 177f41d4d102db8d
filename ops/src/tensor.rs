//! Host tensors: a dtype, a shape and contiguous row-major storage.
//!
//! Storage is a typed `Vec` per dtype ([`Data`]) so kernels get aligned slices
//! without copying; [`Tensor::to_le_bytes`] gives the raw row-major bytes that
//! device backends upload.

use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use half::{bf16, f16};
use std::any::Any;
use std::borrow::Cow;
use std::sync::OnceLock;

/// Typed, contiguous element storage.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    F8E4M3FN(Vec<crate::narrow::F8E4M3FN>),
    F8E4M3FNUZ(Vec<crate::narrow::F8E4M3FNUZ>),
    F8E5M2(Vec<crate::narrow::F8E5M2>),
    F8E5M2FNUZ(Vec<crate::narrow::F8E5M2FNUZ>),
    F8E8M0(Vec<crate::narrow::F8E8M0>),
    F4E2M1(Vec<crate::narrow::F4E2M1>),
    I4(Vec<crate::narrow::I4>),
    U4(Vec<crate::narrow::U4>),
    I2(Vec<crate::narrow::I2>),
    U2(Vec<crate::narrow::U2>),
}

/// Runs `$body` with `$v` bound to the typed `Vec` inside a [`Data`], for
/// every dtype. `$T` names the element type inside the body.
#[macro_export]
macro_rules! dispatch_data {
    ($data:expr, $v:ident, $T:ident => $body:expr) => {
        match $data {
            $crate::Data::F32($v) => {
                type $T = f32;
                $body
            }
            $crate::Data::F64($v) => {
                type $T = f64;
                $body
            }
            $crate::Data::F16($v) => {
                type $T = half::f16;
                $body
            }
            $crate::Data::BF16($v) => {
                type $T = half::bf16;
                $body
            }
            $crate::Data::I8($v) => {
                type $T = i8;
                $body
            }
            $crate::Data::I16($v) => {
                type $T = i16;
                $body
            }
            $crate::Data::I32($v) => {
                type $T = i32;
                $body
            }
            $crate::Data::I64($v) => {
                type $T = i64;
                $body
            }
            $crate::Data::U8($v) => {
                type $T = u8;
                $body
            }
            $crate::Data::U16($v) => {
                type $T = u16;
                $body
            }
            $crate::Data::U32($v) => {
                type $T = u32;
                $body
            }
            $crate::Data::U64($v) => {
                type $T = u64;
                $body
            }
            $crate::Data::Bool($v) => {
                type $T = bool;
                $body
            }
            $crate::Data::F8E4M3FN($v) => {
                type $T = $crate::narrow::F8E4M3FN;
                $body
            }
            $crate::Data::F8E4M3FNUZ($v) => {
                type $T = $crate::narrow::F8E4M3FNUZ;
                $body
            }
            $crate::Data::F8E5M2($v) => {
                type $T = $crate::narrow::F8E5M2;
                $body
            }
            $crate::Data::F8E5M2FNUZ($v) => {
                type $T = $crate::narrow::F8E5M2FNUZ;
                $body
            }
            $crate::Data::F8E8M0($v) => {
                type $T = $crate::narrow::F8E8M0;
                $body
            }
            $crate::Data::F4E2M1($v) => {
                type $T = $crate::narrow::F4E2M1;
                $body
            }
            $crate::Data::I4($v) => {
                type $T = $crate::narrow::I4;
                $body
            }
            $crate::Data::U4($v) => {
                type $T = $crate::narrow::U4;
                $body
            }
            $crate::Data::I2($v) => {
                type $T = $crate::narrow::I2;
                $body
            }
            $crate::Data::U2($v) => {
                type $T = $crate::narrow::U2;
                $body
            }
        }
    };
}

/// Runs `$body` with `$T` bound to the element type of a [`DType`].
#[macro_export]
macro_rules! dispatch_dtype {
    ($dt:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::F16 => {
                type $T = half::f16;
                $body
            }
            $crate::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            $crate::DType::I8 => {
                type $T = i8;
                $body
            }
            $crate::DType::I16 => {
                type $T = i16;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::DType::U16 => {
                type $T = u16;
                $body
            }
            $crate::DType::U32 => {
                type $T = u32;
                $body
            }
            $crate::DType::U64 => {
                type $T = u64;
                $body
            }
            $crate::DType::Bool => {
                type $T = bool;
                $body
            }
            $crate::DType::F8E4M3FN => {
                type $T = $crate::narrow::F8E4M3FN;
                $body
            }
            $crate::DType::F8E4M3FNUZ => {
                type $T = $crate::narrow::F8E4M3FNUZ;
                $body
            }
            $crate::DType::F8E5M2 => {
                type $T = $crate::narrow::F8E5M2;
                $body
            }
            $crate::DType::F8E5M2FNUZ => {
                type $T = $crate::narrow::F8E5M2FNUZ;
                $body
            }
            $crate::DType::F8E8M0 => {
                type $T = $crate::narrow::F8E8M0;
                $body
            }
            $crate::DType::F4E2M1 => {
                type $T = $crate::narrow::F4E2M1;
                $body
            }
            $crate::DType::I4 => {
                type $T = $crate::narrow::I4;
                $body
            }
            $crate::DType::U4 => {
                type $T = $crate::narrow::U4;
                $body
            }
            $crate::DType::I2 => {
                type $T = $crate::narrow::I2;
                $body
            }
            $crate::DType::U2 => {
                type $T = $crate::narrow::U2;
                $body
            }
        }
    };
}

/// Element types that can be stored in and borrowed from [`Data`].
pub trait Storable: Element + crate::pool::Poolable {
    /// Wraps a vector into [`Data`].
    fn wrap(v: Vec<Self>) -> Data;
    /// Borrows the slice if `data` holds this type.
    fn slice(data: &Data) -> Option<&[Self]>;
    /// Mutably borrows the slice if `data` holds this type.
    fn slice_mut(data: &mut Data) -> Option<&mut [Self]>;
    /// Takes the vector if `data` holds this type.
    fn unwrap(data: Data) -> std::result::Result<Vec<Self>, Data>;
}

macro_rules! storable {
    ($t:ty, $v:ident) => {
        impl crate::pool::Poolable for $t {
            fn bucket() -> &'static crate::pool::Bucket<Self> {
                static BUCKET: crate::pool::Bucket<$t> = crate::pool::Bucket::new();
                &BUCKET
            }
        }
        impl Storable for $t {
            fn wrap(v: Vec<Self>) -> Data {
                Data::$v(v)
            }
            fn slice(data: &Data) -> Option<&[Self]> {
                match data {
                    Data::$v(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(data: &mut Data) -> Option<&mut [Self]> {
                match data {
                    Data::$v(v) => Some(v),
                    _ => None,
                }
            }
            fn unwrap(data: Data) -> std::result::Result<Vec<Self>, Data> {
                match data {
                    Data::$v(v) => Ok(v),
                    other => Err(other),
                }
            }
        }
    };
}
storable!(f32, F32);
storable!(f64, F64);
storable!(f16, F16);
storable!(bf16, BF16);
storable!(i8, I8);
storable!(i16, I16);
storable!(i32, I32);
storable!(i64, I64);
storable!(u8, U8);
storable!(u16, U16);
storable!(u32, U32);
storable!(u64, U64);
storable!(bool, Bool);
storable!(crate::narrow::F8E4M3FN, F8E4M3FN);
storable!(crate::narrow::F8E4M3FNUZ, F8E4M3FNUZ);
storable!(crate::narrow::F8E5M2, F8E5M2);
storable!(crate::narrow::F8E5M2FNUZ, F8E5M2FNUZ);
storable!(crate::narrow::F8E8M0, F8E8M0);
storable!(crate::narrow::F4E2M1, F4E2M1);
storable!(crate::narrow::I4, I4);
storable!(crate::narrow::U4, U4);
storable!(crate::narrow::I2, I2);
storable!(crate::narrow::U2, U2);

impl Data {
    /// The dtype of the stored elements.
    pub fn dtype(&self) -> DType {
        dispatch_data!(self, _v, T => <T as Element>::DTYPE)
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        dispatch_data!(self, v, _T => v.len())
    }
    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `n` zero elements of `dtype`.
    pub fn zeros(dtype: DType, n: usize) -> Data {
        dispatch_dtype!(dtype, T => <T as Storable>::wrap(vec![T::default(); n]))
    }
}

/// A host tensor: dtype, shape, contiguous row-major elements.
///
/// A tensor that a kernel reads many times unchanged (a weight) may carry
/// one *prepared* form of itself, made once on request (see
/// [`crate::kernels::prepare`]): a GEMM operand already packed into the
/// kernel's panel layout. It is not part of the value: clones, equality and
/// `Debug` ignore it, and any mutable access drops it.
pub struct Tensor {
    shape: Vec<usize>,
    data: Data,
    prepared: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape)
            .field("data", &self.data)
            .finish()
    }
}

impl PartialEq for Tensor {
    fn eq(&self, o: &Tensor) -> bool {
        self.shape == o.shape && self.data == o.data
    }
}

/// Clones take their storage from the buffer pool.
impl Clone for Tensor {
    fn clone(&self) -> Tensor {
        let data = dispatch_data!(&self.data, v, T => {
            let mut n = crate::pool::take::<T>(v.len());
            n.extend_from_slice(v);
            <T as Storable>::wrap(n)
        });
        Tensor::raw(self.shape.clone(), data)
    }
}

/// Dropped tensors give their storage to the buffer pool ([`crate::pool`]).
impl Drop for Tensor {
    fn drop(&mut self) {
        dispatch_data!(&mut self.data, v, T => crate::pool::give::<T>(std::mem::take(v)))
    }
}

impl Tensor {
    /// A tensor from parts already known to agree.
    fn raw(shape: Vec<usize>, data: Data) -> Tensor {
        Tensor {
            shape,
            data,
            prepared: OnceLock::new(),
        }
    }

    /// The prepared form of this tensor, when one of type `P` was made.
    pub(crate) fn prepared<P: Any>(&self) -> Option<&P> {
        self.prepared.get()?.downcast_ref::<P>()
    }

    /// Attaches a prepared form made by `make` unless one exists already
    /// (the first one stays: a weight has one layout). Returns whether a
    /// form of type `P` is attached afterwards.
    pub(crate) fn prepare_with<P: Any + Send + Sync>(
        &self,
        make: impl FnOnce() -> Result<P>,
    ) -> Result<bool> {
        if self.prepared.get().is_none() {
            let p = make()?;
            let _ = self.prepared.set(Box::new(p));
        }
        Ok(self.prepared::<P>().is_some())
    }

    /// Builds a tensor, checking that the element count matches the shape.
    pub fn new(shape: Vec<usize>, data: Data) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::msg(format!(
                "tensor of shape {:?} needs {} elements, got {}",
                shape,
                n,
                data.len()
            )));
        }
        Ok(Tensor::raw(shape, data))
    }

    /// Builds a tensor from a typed vector.
    pub fn from_vec<T: Storable>(shape: Vec<usize>, v: Vec<T>) -> Result<Tensor> {
        Tensor::new(shape, T::wrap(v))
    }

    /// A rank-0 tensor.
    pub fn scalar<T: Storable>(v: T) -> Tensor {
        Tensor::raw(vec![], T::wrap(vec![v]))
    }

    /// Zero-filled tensor.
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor::raw(shape, Data::zeros(dtype, n))
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }
    /// Dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Rank (number of dimensions).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Size of the elements in bytes.
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype().size()
    }
    /// The storage.
    pub fn data(&self) -> &Data {
        &self.data
    }
    /// Consumes the tensor into shape and storage.
    pub fn into_parts(mut self) -> (Vec<usize>, Data) {
        self.prepared.take();
        (std::mem::take(&mut self.shape), self.take_data())
    }
    /// Moves the storage out, leaving an empty one (whose drop is free).
    fn take_data(&mut self) -> Data {
        std::mem::replace(&mut self.data, Data::Bool(Vec::new()))
    }

    /// Borrows the elements as `T`, failing if the dtype differs.
    pub fn as_slice<T: Storable>(&self) -> Result<&[T]> {
        T::slice(&self.data).ok_or_else(|| {
            Error::msg(format!(
                "expected a {} tensor, got {}",
                T::DTYPE,
                self.dtype()
            ))
        })
    }
    /// Mutably borrows the elements as `T`.
    pub fn as_mut_slice<T: Storable>(&mut self) -> Result<&mut [T]> {
        self.prepared.take();
        let dt = self.dtype();
        T::slice_mut(&mut self.data)
            .ok_or_else(|| Error::msg(format!("expected a {} tensor, got {}", T::DTYPE, dt)))
    }
    /// Takes the elements as `Vec<T>`.
    pub fn into_vec<T: Storable>(mut self) -> Result<Vec<T>> {
        T::unwrap(self.take_data())
            .map_err(|d| Error::msg(format!("expected a {} tensor, got {}", T::DTYPE, d.dtype())))
    }

    /// Gives the tensor `shape` in place (element count must match;
    /// unchanged on error). Drops what was prepared for the old shape.
    pub fn set_shape(&mut self, shape: Vec<usize>) -> Result<()> {
        let n: usize = shape.iter().product();
        if n != self.data.len() {
            return Err(Error::msg(format!(
                "tensor of {} elements cannot take shape {:?}",
                self.data.len(),
                shape
            )));
        }
        self.shape = shape;
        self.prepared = OnceLock::new();
        Ok(())
    }

    /// Same elements, new shape (element count must match).
    pub fn reshape(mut self, shape: Vec<usize>) -> Result<Tensor> {
        Tensor::new(shape, self.take_data())
    }

    /// Converts every element to `dtype` (ONNX Cast semantics for the numeric
    /// types: floats to ints truncate toward zero, to bool is `!= 0`).
    pub fn cast(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        let data = dispatch_data!(&self.data, src, S => {
            dispatch_dtype!(dtype, D => {
                <D as Storable>::wrap(src.iter().map(|&x| cast_one::<S, D>(x)).collect())
            })
        });
        Tensor::raw(self.shape.clone(), data)
    }

    /// [`Tensor::cast`] with the Cast attributes that only the narrow float
    /// targets read: `saturate` (clamp out-of-range values instead of
    /// making them NaN or infinite) and `round` (E8M0's rounding).
    pub fn cast_with(
        &self,
        dtype: DType,
        saturate: bool,
        round: crate::narrow::RoundMode,
    ) -> Tensor {
        if !dtype.is_narrow_float()
            || dtype == self.dtype()
            || (saturate && round == crate::narrow::RoundMode::Up)
        {
            return self.cast(dtype);
        }
        let wide = self.cast(DType::F64);
        let bits: Vec<u8> = match wide.data() {
            Data::F64(v) => v
                .iter()
                .map(|&x| crate::narrow::encode_float(dtype, x, saturate, round).unwrap_or(0))
                .collect(),
            _ => Vec::new(),
        };
        // Infallible: one byte per element of a one-byte dtype.
        Tensor::from_le_bytes(dtype, self.shape.clone(), &bits).unwrap_or_else(|_| self.cast(dtype))
    }

    /// The elements widened to f32 (any dtype).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            d => dispatch_data!(d, v, _T => v.iter().map(|x| x.to_f32()).collect()),
        }
    }

    /// The elements as i64 (integer and bool tensors; floats truncate). Used
    /// for shape-like inputs (Reshape shape, Slice starts, axes, ...).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            Data::I64(v) => v.clone(),
            Data::U64(v) => v.iter().map(|&x| x as i64).collect(),
            d => dispatch_data!(d, v, _T => v.iter().map(|x| x.to_f64() as i64).collect()),
        }
    }

    /// Raw little-endian row-major bytes (bool as one byte 0/1, the narrow
    /// types of [`crate::narrow`] one byte each: a float's bits, an
    /// integer's two's-complement value).
    pub fn to_le_bytes(&self) -> Cow<'_, [u8]> {
        match &self.data {
            Data::Bool(v) => Cow::Owned(v.iter().map(|&b| b as u8).collect()),
            Data::F32(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Data::F64(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Data::F16(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Data::BF16(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Data::I8(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Data::I16(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Data::I32(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Data::I64(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Data::U8(v) => Cow::Borrowed(v),
            Data::U16(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Data::U32(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Data::U64(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            Data::F8E4M3FN(v) => Cow::Owned(v.iter().map(|x| x.0).collect()),
            Data::F8E4M3FNUZ(v) => Cow::Owned(v.iter().map(|x| x.0).collect()),
            Data::F8E5M2(v) => Cow::Owned(v.iter().map(|x| x.0).collect()),
            Data::F8E5M2FNUZ(v) => Cow::Owned(v.iter().map(|x| x.0).collect()),
            Data::F8E8M0(v) => Cow::Owned(v.iter().map(|x| x.0).collect()),
            Data::F4E2M1(v) => Cow::Owned(v.iter().map(|x| x.0).collect()),
            Data::I4(v) => Cow::Owned(v.iter().map(|x| x.0 as u8).collect()),
            Data::U4(v) => Cow::Owned(v.iter().map(|x| x.0).collect()),
            Data::I2(v) => Cow::Owned(v.iter().map(|x| x.0 as u8).collect()),
            Data::U2(v) => Cow::Owned(v.iter().map(|x| x.0).collect()),
        }
    }

    /// Builds a tensor from little-endian row-major bytes.
    pub fn from_le_bytes(dtype: DType, shape: Vec<usize>, bytes: &[u8]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if bytes.len() != n * dtype.size() {
            return Err(Error::msg(format!(
                "{} tensor of shape {:?} needs {} bytes, got {}",
                dtype,
                shape,
                n * dtype.size(),
                bytes.len()
            )));
        }
        let data = match dtype {
            DType::Bool => Data::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DType::U8 => Data::U8(bytes.to_vec()),
            _ => dispatch_dtype!(dtype, T => {
                let mut v = vec![<T as Default>::default(); n];
                #[allow(clippy::unnecessary_cast)] // T = u8 in one expansion
                let dst: &mut [u8] = unsafe {
                    // SAFETY: every dtype reaching this arm is a plain-old-data
                    // numeric type (or a `repr(transparent)` byte of `narrow`) of
                    // exactly dtype.size() bytes; any bit
                    // pattern is a valid value.
                    std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, n * dtype.size())
                };
                dst.copy_from_slice(bytes);
                <T as Storable>::wrap(v)
            }),
        };
        Tensor::new(shape, data)
    }
}

/// Converts one element between types with ONNX Cast semantics.
pub fn cast_one<S: Element, D: Element>(x: S) -> D {
    // Integers wider than f64's mantissa go through i64/u64 directly.
    match (S::DTYPE, D::DTYPE) {
        (DType::I64, DType::I64) | (DType::U64, DType::U64) => D::from_f64(x.to_f64()),
        (_, DType::Bool) => D::from_f64(if x.to_f64() != 0.0 { 1.0 } else { 0.0 }),
        _ => {
            let v = x.to_f64();
            if D::DTYPE.is_int() && v.is_nan() {
                D::from_f64(0.0)
            } else {
                D::from_f64(v)
            }
        }
    }
}
