//! `Embedder`: aligned faces -> L2-normalised vectors, in batches, each stamped with its model id
//! and embedding space.

use ort::session::Session;
use ort::value::TensorRef;
use shared_proto::{EmbeddingSpace, ModelId};

use super::VisionError;
use super::align::AlignedFace;
use super::manifest::EmbedderSpec;

/// Faces per inference call. On CPU, 4-8 faces a call is ~25 % faster per face than 1 or 30:
/// enough work per kernel to amortise the call, activations still in cache (docs/PERFORMANCE.md).
pub const DEFAULT_BATCH: usize = 8;

/// A face template vector. Similarity between two of the same space is their dot product.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    /// The file that made it.
    pub model: ModelId,
    /// What its numbers mean.
    pub space: EmbeddingSpace,
    pub vector: Vec<f32>,
}

impl Embedding {
    /// Cosine similarity, or `None` when the two are in different spaces and must not be compared.
    pub fn similarity(&self, other: &Embedding) -> Option<f32> {
        (self.space == other.space).then(|| dot(&self.vector, &other.vector))
    }
}

/// The dot product of two vectors, with the fastest kernel this CPU runs (AVX2+FMA where present,
/// else portable code): a matcher's and the ML service's look-alike check's inner loop.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    static KERNEL: std::sync::LazyLock<DotFn> = std::sync::LazyLock::new(dot_kernel);
    KERNEL(a, b)
}

type DotFn = fn(&[f32], &[f32]) -> f32;

fn dot_kernel() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return |a, b| {
                // SAFETY: the features it was compiled for were detected on this CPU just above.
                unsafe { dot_avx2(a, b) }
            };
        }
    }
    dot_lanes
}

/// Sixteen independent lanes let the compiler keep the sum in vector registers. A plain
/// `zip().map().sum()` adds one product at a time (float addition is not reassociated): at 512
/// dimensions the look-alike check over a 6,000-template gallery spent ~1.3 s of a 500-photo
/// bulk enrolment in it.
#[inline(always)]
pub(crate) fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (a_chunks, b_chunks) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..16 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

pub struct Embedder {
    session: Session,
    spec: EmbedderSpec,
    model_id: ModelId,
    space: EmbeddingSpace,
}

impl Embedder {
    pub(super) fn new(
        session: Session,
        spec: EmbedderSpec,
        model_id: ModelId,
        space: EmbeddingSpace,
    ) -> Embedder {
        Embedder {
            session,
            spec,
            model_id,
            space,
        }
    }

    pub fn model_id(&self) -> &ModelId {
        &self.model_id
    }

    pub fn space(&self) -> &EmbeddingSpace {
        &self.space
    }

    pub fn input_size(&self) -> u32 {
        self.spec
            .input
            .size
            .expect("checked when the manifest was parsed")
    }

    /// Embeds faces in batches of [`DEFAULT_BATCH`]; the result is in input order.
    pub fn embed<'a>(
        &mut self,
        faces: impl IntoIterator<Item = &'a AlignedFace>,
    ) -> Result<Vec<Embedding>, VisionError> {
        self.embed_in_batches(faces, DEFAULT_BATCH)
    }

    /// Embeds faces in batches of up to `batch_size` per inference call.
    pub fn embed_in_batches<'a>(
        &mut self,
        faces: impl IntoIterator<Item = &'a AlignedFace>,
        batch_size: usize,
    ) -> Result<Vec<Embedding>, VisionError> {
        let faces: Vec<&AlignedFace> = faces.into_iter().collect();
        let mut embeddings = Vec::with_capacity(faces.len());
        for batch in faces.chunks(batch_size.max(1)) {
            self.embed_batch(batch, &mut embeddings)?;
        }
        Ok(embeddings)
    }

    fn embed_batch(
        &mut self,
        faces: &[&AlignedFace],
        out: &mut Vec<Embedding>,
    ) -> Result<(), VisionError> {
        let size = self.input_size() as usize;
        let name = &self.spec.name;
        let mut input = Vec::with_capacity(faces.len() * 3 * size * size);
        for face in faces {
            if face.size as usize != size {
                return Err(VisionError::inference(
                    name,
                    format!(
                        "aligned face is {0}x{0}, the model takes {size}x{size}",
                        face.size
                    ),
                ));
            }
            self.spec.input.push_planar(&face.rgb, &mut input);
        }
        let tensor = TensorRef::from_array_view(([faces.len(), 3, size, size], input.as_slice()))
            .map_err(|e| VisionError::inference(name, e))?;
        let outputs = self
            .session
            .run(ort::inputs![self.spec.input.name.as_str() => tensor])
            .map_err(|e| VisionError::inference(name, e))?;
        let (_, data) = outputs[self.spec.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| VisionError::inference(name, e))?;
        let dims = self.spec.dimensions;
        if data.len() != faces.len() * dims {
            return Err(VisionError::inference(
                name,
                format!(
                    "{} values for {} faces of {dims} dimensions",
                    data.len(),
                    faces.len()
                ),
            ));
        }
        for raw in data.chunks_exact(dims) {
            out.push(Embedding {
                model: self.model_id.clone(),
                space: self.space.clone(),
                vector: l2_normalised(raw),
            });
        }
        Ok(())
    }
}

fn l2_normalised(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_to_unit_length() {
        let v = l2_normalised(&[3.0, 4.0]);
        assert_eq!(v, vec![0.6, 0.8]);
        assert_eq!(l2_normalised(&[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn different_spaces_are_never_compared() {
        let of = |model: &str, space: &str| Embedding {
            model: model.parse().unwrap(),
            space: space.parse().unwrap(),
            vector: vec![1.0],
        };
        let a = of("a@000000000000", "a-v1");
        // Another file of the same space (a proven-equivalent rewrite) is compared ...
        assert_eq!(a.similarity(&of("a@111111111111", "a-v1")), Some(1.0));
        // ... another space never, whatever the file's name.
        assert_eq!(a.similarity(&of("a@000000000000", "a-v2")), None);
    }
}
