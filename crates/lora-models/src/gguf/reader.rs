//! The byte-level GGUF parser: a bounds-checked cursor and [`GgufFile::parse`].
use super::file::GgufFile;
use super::types::{ggml_type_layout, GgufTensorInfo, GgufValue, GGUF_DEFAULT_ALIGNMENT};
use crate::ModelError;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Cursor over the file bytes; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

/// Arrays nested deeper than this are refused (llama.cpp writes none deeper than 1).
const MAX_ARRAY_DEPTH: usize = 8;

impl<'a> Reader<'a> {
    fn err(&self, msg: impl Into<String>) -> ModelError {
        ModelError::format(self.path, msg)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            self.err(format!(
                "truncated GGUF file: needs {n} more bytes at offset {} for {what}, file is {} bytes",
                self.pos,
                self.buf.len()
            ))
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ModelError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ModelError> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// A count read from the file, refused if `count * min_bytes` exceeds what is left.
    fn count(&mut self, min_bytes: usize, what: &str) -> Result<usize, ModelError> {
        let at = self.pos;
        let n = self.u64(what)?;
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(min_bytes.max(1)))
            .is_some_and(|b| b <= self.remaining());
        if !fits {
            return Err(self.err(format!(
                "truncated or corrupt GGUF file: {what} = {n} at offset {at} needs at least \
                 {min_bytes} bytes each but only {} bytes remain",
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, ModelError> {
        let len = self.count(1, &format!("length of {what}"))?;
        let at = self.pos;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| self.err(format!("{what} at offset {at} is not valid UTF-8: {e}")))
    }

    /// Smallest encoded size of a value of type `ty` (to bound array counts).
    fn min_size(ty: u32) -> usize {
        match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 12,
            _ => 1,
        }
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<GgufValue, ModelError> {
        let what = || format!("value of `{key}`");
        Ok(match ty {
            0 => GgufValue::U8(u8::from_le_bytes(self.arr(&what())?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.arr(&what())?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.arr(&what())?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.arr(&what())?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.arr(&what())?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.arr(&what())?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.arr(&what())?)),
            7 => {
                let at = self.pos;
                match self.arr::<1>(&what())?[0] {
                    0 => GgufValue::Bool(false),
                    1 => GgufValue::Bool(true),
                    b => {
                        return Err(self.err(format!(
                            "bool value of `{key}` at offset {at} is {b}, expected 0 or 1"
                        )))
                    }
                }
            }
            8 => GgufValue::String(self.string(&what())?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!(
                        "array value of `{key}` is nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let at = self.pos;
                let elem = self.u32(&format!("array element type of `{key}`"))?;
                if elem > 12 {
                    return Err(self.err(format!(
                        "array `{key}` at offset {at} has unknown element type {elem} \
                         (GGUF value types are 0..=12)"
                    )));
                }
                let n = self.count(Self::min_size(elem), &format!("length of array `{key}`"))?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(elem, key, depth + 1)?);
                }
                GgufValue::Array(v)
            }
            10 => GgufValue::U64(u64::from_le_bytes(self.arr(&what())?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.arr(&what())?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.arr(&what())?)),
            other => {
                return Err(self.err(format!(
                    "metadata key `{key}` has unknown value type {other} (GGUF value types are \
                     0..=12)"
                )))
            }
        })
    }
}

impl GgufFile {
    /// Reads and parses a whole GGUF v2/v3 file (metadata, tensor table, and the tensor bytes,
    /// kept in memory).
    ///
    /// # Errors
    /// [`ModelError::Io`] if the file cannot be read; [`ModelError::Format`] naming the file for
    /// a bad magic, an unsupported version (1, big-endian, or unknown), an unknown metadata value
    /// type, invalid UTF-8, a duplicate key or tensor name, a tensor with more than 4 dimensions
    /// or a first dimension not a multiple of its block size, a misaligned tensor offset, or a
    /// file truncated anywhere (header or tensor data); [`ModelError::Config`] if
    /// `general.alignment` is not a positive power of two.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, ModelError> {
        let path = path.as_ref().to_path_buf();
        let bytes = lora_io::read_regular_file(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        Self::parse(path, bytes)
    }

    /// Parses GGUF bytes already in memory; `path` is only used in error messages.
    ///
    /// # Errors
    /// As [`GgufFile::open`], without [`ModelError::Io`].
    pub fn parse(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<GgufFile, ModelError> {
        let path = path.into();
        let mut r = Reader {
            buf: &bytes,
            pos: 0,
            path: &path,
        };
        let magic = r.arr::<4>("magic")?;
        if &magic != b"GGUF" {
            return Err(r.err(format!(
                "bad magic {magic:?} (\"{}\"), expected \"GGUF\": not a GGUF file",
                String::from_utf8_lossy(&magic).escape_debug()
            )));
        }
        let version = r.u32("version")?;
        match version {
            2 | 3 => {}
            1 => return Err(r.err("GGUF version 1 is not supported (only 2 and 3)")),
            v if v.swap_bytes() <= 3 => {
                return Err(r.err(format!(
                    "GGUF version field is {v:#x}: a big-endian GGUF file, not supported"
                )))
            }
            v => return Err(r.err(format!("unsupported GGUF version {v}, expected 2 or 3"))),
        }
        // Each tensor info takes at least 8+4+4+8 bytes, each KV at least 8+4+1.
        let tensor_count_raw = r.u64("tensor_count")?;
        let kv_count = r.count(13, "kv_count")?;
        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = r.string(&format!("metadata key #{i}"))?;
            let ty = r.u32(&format!("value type of `{key}`"))?;
            let value = r.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(r.err(format!("duplicate metadata key `{key}`")));
            }
        }
        let tensor_count = usize::try_from(tensor_count_raw)
            .ok()
            .filter(|&n| n.checked_mul(24).is_some_and(|b| b <= r.remaining()))
            .ok_or_else(|| {
                r.err(format!(
                    "truncated or corrupt GGUF file: tensor_count = {tensor_count_raw} but only \
                     {} bytes remain after the metadata",
                    r.remaining()
                ))
            })?;
        let mut tensors = Vec::with_capacity(tensor_count);
        let mut index = HashMap::with_capacity(tensor_count);
        for i in 0..tensor_count {
            let name = r.string(&format!("name of tensor #{i}"))?;
            let n_dims = r.u32(&format!("n_dims of tensor `{name}`"))?;
            if n_dims > 4 {
                return Err(r.err(format!(
                    "tensor `{name}` has {n_dims} dimensions, GGUF allows at most 4"
                )));
            }
            let mut ne = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let d = r.u64(&format!("dimensions of tensor `{name}`"))?;
                let d = usize::try_from(d)
                    .map_err(|_| r.err(format!("tensor `{name}` has dimension {d}, too large")))?;
                ne.push(d);
            }
            let ggml_type = r.u32(&format!("type of tensor `{name}`"))?;
            let offset = r.u64(&format!("offset of tensor `{name}`"))?;
            let shape: Vec<usize> = ne.iter().rev().copied().collect();
            if index.insert(name.clone(), i).is_some() {
                return Err(r.err(format!("duplicate tensor name `{name}`")));
            }
            tensors.push(GgufTensorInfo {
                name,
                shape,
                ggml_type,
                offset,
            });
        }
        let alignment = match metadata.get("general.alignment") {
            None => GGUF_DEFAULT_ALIGNMENT,
            Some(v) => match v.as_int() {
                Some(a) if a > 0 && (a as u128).is_power_of_two() && a <= u32::MAX as i128 => {
                    a as u64
                }
                _ => {
                    return Err(ModelError::Config {
                        path,
                        key: "general.alignment".into(),
                        msg: format!("{v:?}: expected a positive power of two (u32)"),
                    })
                }
            },
        };
        let header_end = r.pos as u64;
        let data_start = header_end.div_ceil(alignment) * alignment;
        let data_len = (bytes.len() as u64).saturating_sub(data_start);
        let mut ranges = Vec::with_capacity(tensors.len());
        for t in &tensors {
            if t.offset % alignment != 0 {
                return Err(ModelError::format(
                    &path,
                    format!(
                        "tensor `{}` has offset {} not a multiple of the alignment {alignment}",
                        t.name, t.offset
                    ),
                ));
            }
            let Some((tname, block, block_bytes)) = ggml_type_layout(t.ggml_type) else {
                ranges.push(None);
                continue;
            };
            let n = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let first = t.shape.last().copied().unwrap_or(1);
            let size = match n {
                Some(n) if first % block == 0 => (n / block).checked_mul(block_bytes),
                Some(_) => {
                    return Err(ModelError::format(
                        &path,
                        format!(
                            "tensor `{}` of type {tname} has first dimension ne[0] = {first}, \
                             not a multiple of its block size {block}",
                            t.name
                        ),
                    ))
                }
                None => None,
            };
            match size.and_then(|s| Some((s, (s as u64).checked_add(t.offset)?))) {
                Some((size, end)) if end <= data_len => {
                    // In bounds of `bytes`, so these fit a usize.
                    let start = (data_start + t.offset) as usize;
                    ranges.push(Some((start, start + size)));
                }
                _ => {
                    return Err(ModelError::format(
                        &path,
                        format!(
                            "truncated GGUF file: tensor `{}` ({tname}, shape {:?}) needs {} bytes \
                             at data offset {} but the data section is {data_len} bytes",
                            t.name,
                            t.shape,
                            size.map_or("too many".to_string(), |s| s.to_string()),
                            t.offset
                        ),
                    ))
                }
            }
        }
        Ok(GgufFile {
            path,
            version,
            metadata,
            tensors,
            index,
            ranges,
            bytes,
            data_start: data_start as usize,
        })
    }
}
