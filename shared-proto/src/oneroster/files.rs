//! The files of one export, in memory, by their OneRoster names: whoever has the export (the box
//! reading a folder, the server receiving an upload) gathers the bytes, and parsing never asks for
//! more.

use std::collections::BTreeMap;

use super::RosterError;

pub(super) const MANIFEST: &str = "manifest.csv";
pub(super) const ORGS: &str = "orgs.csv";
pub(super) const ACADEMIC_SESSIONS: &str = "academicSessions.csv";
pub(super) const CLASSES: &str = "classes.csv";
pub(super) const USERS: &str = "users.csv";
pub(super) const ENROLLMENTS: &str = "enrollments.csv";
/// The order problems are listed in: the order a person would fix them, referenced files first.
pub(super) const FILE_ORDER: [&str; 6] = [
    MANIFEST,
    ORGS,
    ACADEMIC_SESSIONS,
    CLASSES,
    USERS,
    ENROLLMENTS,
];

/// The files of one OneRoster 1.1 bulk export that Rollcall reads, by file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterFiles {
    export: String,
    bytes_by_file: BTreeMap<&'static str, Vec<u8>>,
}

impl RosterFiles {
    /// The file names Rollcall reads, as OneRoster spells them; an export's other files
    /// (courses.csv, demographics.csv, ...) are not needed.
    pub const FILE_NAMES: [&'static str; 6] = FILE_ORDER;

    /// Takes an export's files as (file name, bytes) pairs. `export` names the export in errors
    /// ("users.csv: not found in {export}"): the folder or upload a person would look in.
    ///
    /// Names are bare file names matched exactly (`users.csv`, not `export/users.csv` or
    /// `Users.csv`), as a folder on the box would have them. Files not in [`Self::FILE_NAMES`]
    /// are ignored, because a full export has them too. A name given twice is refused: which of
    /// the two is the export cannot be guessed.
    pub fn from_files<Name, Bytes>(
        export: impl Into<String>,
        files: impl IntoIterator<Item = (Name, Bytes)>,
    ) -> Result<RosterFiles, RosterError>
    where
        Name: AsRef<str>,
        Bytes: Into<Vec<u8>>,
    {
        let export = export.into();
        let mut bytes_by_file = BTreeMap::new();
        for (name, bytes) in files {
            let Some(file) = FILE_ORDER.into_iter().find(|&file| file == name.as_ref()) else {
                continue;
            };
            if bytes_by_file.insert(file, bytes.into()).is_some() {
                return Err(RosterError::DuplicateFile { file, export });
            }
        }
        Ok(RosterFiles {
            export,
            bytes_by_file,
        })
    }

    /// What the export is called in errors.
    pub fn export(&self) -> &str {
        &self.export
    }

    /// The bytes of `file`, if the export has it.
    pub fn get(&self, file: &str) -> Option<&[u8]> {
        self.bytes_by_file.get(file).map(Vec::as_slice)
    }
}
