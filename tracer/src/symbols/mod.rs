//! From what the user typed (`--fn`) to probe sites: which objects, which functions, which file
//! offsets, and what DWARF says about each function (source position, parameters, types).
//!
//! Objects are opened once per request and read lazily: symbol tables when a pattern asks,
//! DWARF one compilation unit at a time. Aliases at one address (`malloc`/`__libc_malloc`)
//! become one site; one file reached through two paths is one object.

pub(crate) mod debug_file;
pub(crate) mod demangle;
pub(crate) mod dwarf;
pub(crate) mod elf;
pub(crate) mod exits;
pub(crate) mod glob;
pub(crate) mod go_runtime;
pub(crate) mod gopclntab;
pub(crate) mod object_files;
pub(crate) mod placement;
mod resolver;
pub(crate) mod site;
pub(crate) mod source_places;
pub(crate) mod spec;
pub(crate) mod stacks;
pub(crate) mod types;

use crate::{error::Result, target::Target};
pub use glob::glob_match;
pub use resolver::{Detail, Resolver, open_objects};
pub use site::{ProbeSite, ReturnChoice, SourceLocation, file_name, group_by_object};
pub use spec::FunctionSpec;

/// Opens the target's objects and resolves `specs` in one step, returns probed as `returns`
/// says.
pub fn resolve(
    target: &Target,
    specs: &[FunctionSpec],
    returns: ReturnChoice,
) -> Result<Vec<ProbeSite>> {
    let objects = open_objects(target, specs)?;
    Resolver::new(target, &objects)
        .with_returns(returns)
        .resolve(specs)
}
