//! `Gallery`: the enrolled templates of a section (or a whole school) held as one matrix in memory,
//! so that all faces of a frame are scored against every student in one pass.
//!
//! A per-face sqlite-vec scan of 15k templates cost ~22 ms here (650 ms for 30 faces); this
//! matrix product scores 30 faces against the same templates in ~16 ms (docs/PERFORMANCE.md).

use crate::store::TemplateRecord;

/// Above this many multiply-adds a product is split across two threads.
const PARALLEL_WORK: usize = 4_000_000;

pub struct Gallery {
    dims: usize,
    students: Vec<String>,
    /// Row `i` of `vectors` belongs to `students[owner[i]]`.
    owner: Vec<u32>,
    vectors: Vec<f32>,
}

impl Gallery {
    /// Builds a gallery from templates; students keep the order of their first template.
    pub fn new(dims: usize, templates: impl IntoIterator<Item = TemplateRecord>) -> Gallery {
        let mut gallery = Gallery {
            dims,
            students: Vec::new(),
            owner: Vec::new(),
            vectors: Vec::new(),
        };
        let mut index = std::collections::HashMap::new();
        for t in templates {
            if t.vector.len() != dims {
                continue;
            }
            let idx = *index.entry(t.student_id.clone()).or_insert_with(|| {
                gallery.students.push(t.student_id.clone());
                gallery.students.len() as u32 - 1
            });
            gallery.owner.push(idx);
            gallery.vectors.extend_from_slice(&t.vector);
        }
        gallery
    }

    pub fn students(&self) -> &[String] {
        &self.students
    }

    pub fn n_templates(&self) -> usize {
        self.owner.len()
    }

    /// `result[face_idx][student_idx]`: each student's best similarity over their templates.
    pub fn best_per_student(&self, faces: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let n_students = self.students.len();
        let mut best = vec![vec![f32::MIN; n_students]; faces.len()];
        let faces: Vec<&[f32]> = faces
            .iter()
            .map(|f| f.as_slice())
            .filter(|f| f.len() == self.dims)
            .collect();
        if faces.len() != best.len() || self.owner.is_empty() {
            return best;
        }
        let work = faces.len() * self.vectors.len();
        if work < PARALLEL_WORK {
            self.score_rows(&faces, 0..self.owner.len(), &mut best);
            return best;
        }
        // Two halves of the templates on two threads, merged by max.
        let mid = self.owner.len() / 2;
        let mut other = best.clone();
        std::thread::scope(|scope| {
            scope.spawn(|| self.score_rows(&faces, mid..self.owner.len(), &mut other));
            self.score_rows(&faces, 0..mid, &mut best);
        });
        for (row, other_row) in best.iter_mut().zip(other) {
            for (b, o) in row.iter_mut().zip(other_row) {
                *b = b.max(o);
            }
        }
        best
    }

    /// Templates outer, faces inner: each template row is read once while the faces stay in cache.
    fn score_rows(&self, faces: &[&[f32]], rows: std::ops::Range<usize>, best: &mut [Vec<f32>]) {
        let dot = dot_kernel();
        for row in rows {
            let template = &self.vectors[row * self.dims..(row + 1) * self.dims];
            let student = self.owner[row] as usize;
            for (face_idx, face) in faces.iter().enumerate() {
                let s = dot(face, template);
                if s > best[face_idx][student] {
                    best[face_idx][student] = s;
                }
            }
        }
    }
}

type DotFn = fn(&[f32], &[f32]) -> f32;

/// The fastest dot product this CPU runs: AVX2+FMA where present, else portable code.
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
    dot_portable
}

/// Sixteen independent lanes let the compiler keep the sum in vector registers.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
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

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(student: &str, vector: Vec<f32>) -> TemplateRecord {
        TemplateRecord {
            uuid: String::new(),
            student_id: student.into(),
            vector,
        }
    }

    #[test]
    fn best_template_per_student() {
        let gallery = Gallery::new(
            2,
            [
                template("a", vec![1.0, 0.0]),
                template("b", vec![0.0, 1.0]),
                template("a", vec![0.6, 0.8]),
            ],
        );
        assert_eq!(gallery.students(), ["a", "b"]);
        let scores = gallery.best_per_student(&[vec![0.0, 1.0]]);
        assert_eq!(scores, vec![vec![0.8, 1.0]]);
    }

    #[test]
    fn kernels_agree_with_a_plain_dot_product() {
        let a: Vec<f32> = (0..515)
            .map(|i| ((i * 7919) % 101) as f32 / 101.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..515)
            .map(|i| ((i * 104_729) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot_kernel()(&a, &b) - plain).abs() < 1e-4);
        assert!((dot_portable(&a, &b) - plain).abs() < 1e-4);
    }

    #[test]
    fn parallel_and_serial_products_agree() {
        let dims = 512;
        let templates: Vec<TemplateRecord> = (0..8_000)
            .map(|i| {
                template(
                    &format!("s{}", i % 700),
                    (0..dims)
                        .map(|d| (((i * 31 + d * 17) % 23) as f32) - 11.0)
                        .collect(),
                )
            })
            .collect();
        let gallery = Gallery::new(dims, templates);
        let faces: Vec<Vec<f32>> = (0..3)
            .map(|f| (0..dims).map(|d| ((f + d) % 5) as f32).collect())
            .collect();
        let parallel = gallery.best_per_student(&faces);
        let mut serial = vec![vec![f32::MIN; gallery.students().len()]; faces.len()];
        let refs: Vec<&[f32]> = faces.iter().map(|f| f.as_slice()).collect();
        gallery.score_rows(&refs, 0..gallery.n_templates(), &mut serial);
        assert_eq!(parallel, serial);
    }
}
