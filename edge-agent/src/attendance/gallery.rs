//! `Gallery`: the enrolled templates of a section (or a whole school) held as one matrix in memory,
//! so that all faces of a frame are scored against every student in one pass.
//!
//! A per-face sqlite-vec scan of 15k templates cost ~22-27 ms here (650-820 ms for 30 faces); this
//! matrix product scores 30 faces against the same templates in ~7 ms on two cores, 2.5x a
//! single-thread sgemm (docs/PERFORMANCE.md).

use crate::store::TemplateRecord;

/// Above this many multiply-adds a product is split across two threads.
const PARALLEL_WORK: usize = 4_000_000;

/// Template rows per cache tile of the half-float product: 24 rows of 512 dimensions are 24 KiB.
#[cfg(target_arch = "x86_64")]
const HALF_TILE: usize = 24;

pub struct Gallery {
    dims: usize,
    students: Vec<String>,
    /// Row `i` of `vectors` belongs to `students[owner[i]]`.
    owner: Vec<u32>,
    vectors: Vec<f32>,
    /// The vectors as IEEE half floats, for big galleries (`compact`, which then empties
    /// `vectors`): half the memory traffic per product, scores within ~1e-4 of the f32 ones.
    /// x86_64 only: the conversion and the product need F16C.
    #[cfg(target_arch = "x86_64")]
    half: Option<Vec<u16>>,
}

impl Gallery {
    /// Builds a gallery from templates; students keep the order of their first template.
    pub fn new(dims: usize, templates: impl IntoIterator<Item = TemplateRecord>) -> Gallery {
        let mut gallery = Gallery {
            dims,
            students: Vec::new(),
            owner: Vec::new(),
            vectors: Vec::new(),
            #[cfg(target_arch = "x86_64")]
            half: None,
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

    /// Every template of the school in `space`: built once by a long-running caller and
    /// kept, it replaces a sqlite-vec scan per unmatched face (~22 ms each at 15k templates).
    pub fn of_school(
        store: &crate::store::Store,
        space: &str,
        dims: usize,
    ) -> Result<Gallery, crate::store::StoreError> {
        Ok(Gallery::new(dims, store.all_templates(space)?).compact())
    }

    /// Scores from half-float copies of the vectors where the CPU converts them in hardware
    /// (F16C): a school's 15k templates are 29 MiB as f32, more than the caches hold, and the
    /// product is then limited by memory. Similarities move by ~1e-3 at most, far inside the
    /// gap between the decision thresholds. Elsewhere the gallery stays as it is.
    // `mut` is used on x86_64 only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    pub fn compact(mut self) -> Gallery {
        #[cfg(target_arch = "x86_64")]
        {
            if half_supported() && self.dims.is_multiple_of(8) {
                let mut half = vec![0u16; self.vectors.len()];
                // SAFETY: the features were checked just above; both slices have equal lengths,
                // a multiple of eight.
                unsafe { to_half(&self.vectors, &mut half) };
                self.half = Some(half);
                // The products read only the half floats from now on.
                self.vectors = Vec::new();
            }
        }
        self
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
        let work = faces.len() * self.owner.len() * self.dims;
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

    fn score_rows(&self, faces: &[&[f32]], rows: std::ops::Range<usize>, best: &mut [Vec<f32>]) {
        let dims = self.dims;
        #[cfg(target_arch = "x86_64")]
        if let Some(half) = &self.half {
            return self.score_rows_half(half, faces, rows, best);
        }
        let row = |r: usize| &self.vectors[r * dims..(r + 1) * dims];
        let (block, dot) = (block_kernel(), crate::vision::dot);
        self.score_with(
            faces,
            rows,
            best,
            |f, r| block(f, &[row(r[0]), row(r[1])]),
            |face, r| dot(face, row(r)),
        );
    }

    /// The half-float product, blocked for the caches: a tile of `HALF_TILE` template rows (24 KiB)
    /// stays in L1 while every group of four faces passes over it, three templates at a time, so
    /// each step of eight dimensions does twelve multiply-adds for seven loads. Faces are padded
    /// to a multiple of four with copies of the last one, whose scores are dropped.
    #[cfg(target_arch = "x86_64")]
    fn score_rows_half(
        &self,
        half: &[u16],
        faces: &[&[f32]],
        rows: std::ops::Range<usize>,
        best: &mut [Vec<f32>],
    ) {
        let dims = self.dims;
        let row = |r: usize| &half[r * dims..(r + 1) * dims];
        let n_faces = faces.len();
        let mut padded: Vec<&[f32]> = faces.to_vec();
        while !padded.len().is_multiple_of(4) {
            padded.push(faces[n_faces - 1]);
        }
        let mut update = |face_idx: usize, r: usize, s: f32| {
            let student = self.owner[r] as usize;
            if face_idx < n_faces && s > best[face_idx][student] {
                best[face_idx][student] = s;
            }
        };
        let mut tile = rows.start;
        while tile < rows.end {
            let tile_end = (tile + HALF_TILE).min(rows.end);
            for (group, f) in padded.chunks_exact(4).enumerate() {
                let f: &[&[f32]; 4] = f.try_into().expect("chunks of four");
                let mut r = tile;
                while r + 3 <= tile_end {
                    // SAFETY: `half` exists only where `compact` found AVX2, FMA and F16C, with
                    // rows a multiple of eight long.
                    let scores = unsafe { block_half(f, [row(r), row(r + 1), row(r + 2)]) };
                    for (i, triple) in scores.iter().enumerate() {
                        for (j, &s) in triple.iter().enumerate() {
                            update(4 * group + i, r + j, s);
                        }
                    }
                    r += 3;
                }
                for r in r..tile_end {
                    for (i, face) in f.iter().enumerate() {
                        // SAFETY: as above.
                        update(4 * group + i, r, unsafe { dot_half(face, row(r)) });
                    }
                }
            }
            tile = tile_end;
        }
    }

    /// Templates outer, faces inner: each template row is read once from memory while the faces
    /// stay in cache. Pairs of templates against groups of four faces (eight dot products at once)
    /// keep the CPU's multiply-add units busy instead of waiting on one sum at a time.
    fn score_with(
        &self,
        faces: &[&[f32]],
        rows: std::ops::Range<usize>,
        best: &mut [Vec<f32>],
        block: impl Fn(&[&[f32]; 4], [usize; 2]) -> [[f32; 2]; 4],
        dot: impl Fn(&[f32], usize) -> f32,
    ) {
        let mut update = |face_idx: usize, row: usize, s: f32| {
            let student = self.owner[row] as usize;
            if s > best[face_idx][student] {
                best[face_idx][student] = s;
            }
        };
        let n_face_blocks = faces.len() / 4;
        let mut row = rows.start;
        while row + 2 <= rows.end {
            for b in 0..n_face_blocks {
                let f = [
                    faces[4 * b],
                    faces[4 * b + 1],
                    faces[4 * b + 2],
                    faces[4 * b + 3],
                ];
                let scores = block(&f, [row, row + 1]);
                for (i, pair) in scores.iter().enumerate() {
                    update(4 * b + i, row, pair[0]);
                    update(4 * b + i, row + 1, pair[1]);
                }
            }
            for (face_idx, face) in faces.iter().enumerate().skip(4 * n_face_blocks) {
                update(face_idx, row, dot(face, row));
                update(face_idx, row + 1, dot(face, row + 1));
            }
            row += 2;
        }
        if row < rows.end {
            for (face_idx, face) in faces.iter().enumerate() {
                update(face_idx, row, dot(face, row));
            }
        }
    }
}

/// Four faces against two templates: `result[face][template]`.
type BlockFn = fn(&[&[f32]; 4], &[&[f32]; 2]) -> [[f32; 2]; 4];

fn block_kernel() -> BlockFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return |f, t| {
                // SAFETY: the features it was compiled for were detected on this CPU just above.
                unsafe { block_avx2(f, t) }
            };
        }
    }
    block_portable
}

fn block_portable(f: &[&[f32]; 4], t: &[&[f32]; 2]) -> [[f32; 2]; 4] {
    let mut out = [[0.0; 2]; 4];
    for (i, face) in f.iter().enumerate() {
        for (j, template) in t.iter().enumerate() {
            out[i][j] = crate::vision::dot_lanes(face, template);
        }
    }
    out
}

/// Eight accumulators (4 faces x 2 templates) of eight lanes each: per step of eight dimensions,
/// six loads feed eight independent multiply-adds, so neither the FMA latency nor the loads limit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(f: &[&[f32]; 4], t: &[&[f32]; 2]) -> [[f32; 2]; 4] {
    use std::arch::x86_64::*;

    let dims = f.iter().chain(t).map(|v| v.len()).min().unwrap_or(0);
    let whole = dims - dims % 8;
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    let mut k = 0;
    while k < whole {
        // SAFETY: k + 8 <= whole <= the length of every slice, so each 8-float load is in bounds.
        unsafe {
            let t0 = _mm256_loadu_ps(t[0].as_ptr().add(k));
            let t1 = _mm256_loadu_ps(t[1].as_ptr().add(k));
            for i in 0..4 {
                let fi = _mm256_loadu_ps(f[i].as_ptr().add(k));
                acc[i][0] = _mm256_fmadd_ps(fi, t0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(fi, t1, acc[i][1]);
            }
        }
        k += 8;
    }
    let mut out = [[0.0f32; 2]; 4];
    for i in 0..4 {
        for j in 0..2 {
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` holds exactly eight f32.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[i][j]) };
            let tail: f32 = (whole..dims).map(|d| f[i][d] * t[j][d]).sum();
            out[i][j] = lanes.iter().sum::<f32>() + tail;
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
fn half_supported() -> bool {
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
}

/// f32 -> IEEE half, rounding to nearest, eight at a time. `from.len()` is a multiple of eight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn to_half(from: &[f32], to: &mut [u16]) {
    use std::arch::x86_64::*;
    for (f, t) in from.chunks_exact(8).zip(to.chunks_exact_mut(8)) {
        // SAFETY: each chunk holds exactly eight values of the loaded or stored width.
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(f.as_ptr()));
            _mm_storeu_si128(t.as_mut_ptr() as *mut __m128i, h);
        }
    }
}

/// Four faces against three half-float templates, `result[face][template]`: twelve accumulators
/// and three converted template registers fill fifteen of the sixteen vector registers, and the
/// faces come straight from memory into the multiply-adds. Every slice is `dims` long, a multiple
/// of eight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_half(f: &[&[f32]; 4], t: [&[u16]; 3]) -> [[f32; 3]; 4] {
    use std::arch::x86_64::*;

    let dims = f
        .iter()
        .map(|v| v.len())
        .chain(t.iter().map(|v| v.len()))
        .min()
        .unwrap_or(0);
    let whole = dims - dims % 8;
    let mut acc = [[_mm256_setzero_ps(); 3]; 4];
    let mut k = 0;
    while k < whole {
        // SAFETY: k + 8 <= whole <= the length of every slice, so each 8-lane load is in bounds.
        unsafe {
            let t0 = _mm256_cvtph_ps(_mm_loadu_si128(t[0].as_ptr().add(k) as *const __m128i));
            let t1 = _mm256_cvtph_ps(_mm_loadu_si128(t[1].as_ptr().add(k) as *const __m128i));
            let t2 = _mm256_cvtph_ps(_mm_loadu_si128(t[2].as_ptr().add(k) as *const __m128i));
            for i in 0..4 {
                let fi = _mm256_loadu_ps(f[i].as_ptr().add(k));
                acc[i][0] = _mm256_fmadd_ps(fi, t0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(fi, t1, acc[i][1]);
                acc[i][2] = _mm256_fmadd_ps(fi, t2, acc[i][2]);
            }
        }
        k += 8;
    }
    let mut out = [[0.0f32; 3]; 4];
    for i in 0..4 {
        for j in 0..3 {
            out[i][j] = hsum(acc[i][j]);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_half(a: &[f32], t: &[u16]) -> f32 {
    use std::arch::x86_64::*;

    let whole = a.len().min(t.len()) / 8 * 8;
    let mut acc = _mm256_setzero_ps();
    let mut k = 0;
    while k < whole {
        // SAFETY: k + 8 <= whole <= both lengths.
        unsafe {
            let tk = _mm256_cvtph_ps(_mm_loadu_si128(t.as_ptr().add(k) as *const __m128i));
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(k)), tk, acc);
        }
        k += 8;
    }
    hsum(acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn hsum(v: std::arch::x86_64::__m256) -> f32 {
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds exactly eight f32.
    unsafe { std::arch::x86_64::_mm256_storeu_ps(lanes.as_mut_ptr(), v) };
    lanes.iter().sum()
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
        assert!((crate::vision::dot(&a, &b) - plain).abs() < 1e-4);
        assert!((crate::vision::dot_lanes(&a, &b) - plain).abs() < 1e-4);
        // Lengths that are not a multiple of eight exercise the tails.
        let faces: Vec<&[f32]> = (0..4).map(|i| &a[i..i + 509]).collect();
        let templates = [&b[..509], &b[3..512]];
        let faces: [&[f32]; 4] = [faces[0], faces[1], faces[2], faces[3]];
        for kernel in [block_kernel(), block_portable as BlockFn] {
            let scores = kernel(&faces, &templates);
            for (i, face) in faces.iter().enumerate() {
                for (j, template) in templates.iter().enumerate() {
                    let plain: f32 = face.iter().zip(*template).map(|(x, y)| x * y).sum();
                    assert!((scores[i][j] - plain).abs() < 1e-3, "{i} {j}");
                }
            }
        }
    }

    #[test]
    fn half_float_gallery_scores_like_the_f32_one() {
        let dims = 512;
        // Unit vectors, as the embedder makes them.
        let unit = |seed: usize| -> Vec<f32> {
            let v: Vec<f32> = (0..dims)
                .map(|d| (((seed * 7919 + d * 104_729) % 1009) as f32 / 1009.0) - 0.5)
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        };
        let templates: Vec<TemplateRecord> = (0..301)
            .map(|i| template(&format!("s{}", i % 100), unit(i)))
            .collect();
        let exact = Gallery::new(dims, templates.clone());
        let compact = Gallery::new(dims, templates).compact();
        // Faces near some templates, so some scores are high.
        let faces: Vec<Vec<f32>> = (0..7).map(|f| unit(f * 40 + 3)).collect();
        let (a, b) = (
            exact.best_per_student(&faces),
            compact.best_per_student(&faces),
        );
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() < 2e-3, "{x} vs {y}");
        }
        // Whoever wins in half floats is, in f32, within the same 2e-3 of the best.
        for (ra, rb) in a.iter().zip(&b) {
            let winner = (0..rb.len())
                .max_by(|&p, &q| rb[p].total_cmp(&rb[q]))
                .unwrap();
            let best = ra.iter().copied().fold(f32::MIN, f32::max);
            assert!(ra[winner] >= best - 2e-3, "{} vs {best}", ra[winner]);
        }
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
        // Seven faces: one block of four plus three taken one at a time.
        let faces: Vec<Vec<f32>> = (0..7)
            .map(|f| (0..dims).map(|d| ((f + d) % 5) as f32).collect())
            .collect();
        let parallel = gallery.best_per_student(&faces);
        let plain: Vec<Vec<f32>> = faces
            .iter()
            .map(|face| {
                let mut row = vec![f32::MIN; gallery.students().len()];
                for t in 0..gallery.n_templates() {
                    let v = &gallery.vectors[t * dims..(t + 1) * dims];
                    let s: f32 = face.iter().zip(v).map(|(a, b)| a * b).sum();
                    let o = gallery.owner[t] as usize;
                    row[o] = row[o].max(s);
                }
                row
            })
            .collect();
        for (p, q) in parallel.iter().flatten().zip(plain.iter().flatten()) {
            assert!((p - q).abs() <= 1e-3 * q.abs().max(1.0), "{p} vs {q}");
        }
        let mut serial = vec![vec![f32::MIN; gallery.students().len()]; faces.len()];
        let refs: Vec<&[f32]> = faces.iter().map(|f| f.as_slice()).collect();
        gallery.score_rows(&refs, 0..gallery.n_templates(), &mut serial);
        assert_eq!(parallel, serial);
        // The half-float product (tiles, padded face groups, two threads) on the same data: small
        // integers are exact in half floats, so the scores are too.
        let compact = gallery.compact();
        assert_eq!(compact.best_per_student(&faces), plain);
    }
}
