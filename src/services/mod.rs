//! Several services in one container (`--services FILE`): the file and the validated table of services.
// Nothing outside this module calls it until the supervisor starts services from the table.
#![allow(dead_code)]

pub mod file;
pub mod table;
