//! Turning faces into attendance: the decision bands of the manifest thresholds, the one-to-one
//! assignment of faces to enrolled people, capture sessions (`capture`) and the rules that turn
//! a burst's evidence into marks (`evidence`), the timetable's lesson now (`lesson`) and a session's roll with the teacher's acts on it (`roll`).

pub mod capture;
pub mod evidence;
mod gallery;
pub mod lesson;
pub mod roll;

pub use gallery::Gallery;

/// How sure a match is, from the embedder's two thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Below `review`: an unknown face.
    Unknown,
    /// Between `review` and `confident`: a person must look.
    Review,
    /// At or above `confident`.
    Confident,
}

#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    pub confident: f32,
    pub review: f32,
}

impl Thresholds {
    /// The running embedder's thresholds, from its manifest.
    pub fn of(pipeline: &crate::vision::Pipeline) -> Thresholds {
        let spec = &pipeline.manifest().embedder;
        Thresholds {
            confident: spec.confident,
            review: spec.review,
        }
    }

    pub fn verdict(&self, similarity: f32) -> Verdict {
        if similarity >= self.confident {
            Verdict::Confident
        } else if similarity >= self.review {
            Verdict::Review
        } else {
            Verdict::Unknown
        }
    }
}

/// A face matched to a person.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Assignment {
    pub face_idx: usize,
    pub person_idx: usize,
    pub similarity: f32,
}

/// Assigns each face to at most one person and each person to at most one face, best pairs first,
/// keeping only pairs at or above `min_similarity`.
///
/// `similarity[face_idx][person_idx]`. Greedy on sorted pairs: with the thresholds' wide margin
/// between a right and a wrong match it equals the optimal assignment in practice, at a fraction
/// of the cost.
pub fn assign(similarity: &[Vec<f32>], min_similarity: f32) -> Vec<Assignment> {
    let mut pairs: Vec<Assignment> = similarity
        .iter()
        .enumerate()
        .flat_map(|(face_idx, row)| {
            row.iter()
                .enumerate()
                .map(move |(person_idx, &similarity)| Assignment {
                    face_idx,
                    person_idx,
                    similarity,
                })
        })
        .filter(|pair| pair.similarity >= min_similarity)
        .collect();
    pairs.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    let n_people = similarity.first().map_or(0, Vec::len);
    let mut face_taken = vec![false; similarity.len()];
    let mut person_taken = vec![false; n_people];
    let mut assigned = Vec::new();
    for pair in pairs {
        if !face_taken[pair.face_idx] && !person_taken[pair.person_idx] {
            face_taken[pair.face_idx] = true;
            person_taken[pair.person_idx] = true;
            assigned.push(pair);
        }
    }
    assigned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_face_and_person_is_used_once() {
        // Face 0 looks most like person 0, but face 1 is an even better match for person 0.
        let similarity = vec![vec![0.6, 0.5], vec![0.9, 0.1], vec![0.2, 0.3]];
        let assigned = assign(&similarity, 0.35);
        let pairs: Vec<(usize, usize)> = assigned
            .iter()
            .map(|a| (a.face_idx, a.person_idx))
            .collect();
        assert_eq!(pairs, vec![(1, 0), (0, 1)]);
    }

    #[test]
    fn verdict_bands() {
        let t = Thresholds {
            confident: 0.45,
            review: 0.35,
        };
        assert_eq!(t.verdict(0.45), Verdict::Confident);
        assert_eq!(t.verdict(0.40), Verdict::Review);
        assert_eq!(t.verdict(0.34), Verdict::Unknown);
        assert!(assign(&[], 0.35).is_empty());
    }
}
