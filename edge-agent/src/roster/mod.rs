//! The school roster from a OneRoster 1.1 CSV bulk export in a folder on the box: reads the files
//! and hands them to `shared_proto::oneroster`, which checks them with the same rules as the server.
//!
//! The store applies a `RosterImport` in one transaction, so everything is checked first: an
//! export is either wholly valid or refused with every problem listed as `file:line`.

use std::path::Path;
use std::{fs, io};

pub use shared_proto::oneroster::{
    AcademicSession, Enrolment, EnrolmentRole, Org, Person, Problem, RosterError, RosterFiles,
    RosterImport, RowError, Section,
};

/// Reads and checks the OneRoster 1.1 bulk export in `dir`: the files Rollcall reads, by their
/// OneRoster names; the folder's other files are left alone. A file that exists but cannot be read
/// is `RosterError::Read` naming its path; a missing one is reported by the parser, naming `dir`.
pub fn read_oneroster(dir: &Path) -> Result<RosterImport, RosterError> {
    let mut files = Vec::new();
    for file in RosterFiles::FILE_NAMES {
        let path = dir.join(file);
        match fs::read(&path) {
            Ok(bytes) => files.push((file, bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(RosterError::Read { path, source }),
        }
    }
    let files = RosterFiles::from_files(dir.display().to_string(), files)?;
    shared_proto::oneroster::parse_oneroster(&files)
}
