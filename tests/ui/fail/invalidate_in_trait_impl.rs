//! An attribute sees its function, not the `impl` around it: a companion
//! cannot be added to a trait's impl, and rustc says so. The README says to
//! use `invalidate_user` or `invalidate_function` there.

use cached_api::cached_api;

trait Profiles {
    fn profile(&self, id: u64) -> String;
}

struct Db;

impl Profiles for Db {
    #[cached_api(key = "{id}", invalidate = forget_profile)]
    fn profile(&self, id: u64) -> String {
        format!("{id}")
    }
}

fn main() {}
