//! `crate = path` points the expansion at the facade where the user keeps
//! it, as a path or as a string (serde's spelling).

mod facade {
    pub use ::cached_api::*;
}

mod nested {
    pub mod again {
        pub use ::cached_api::*;
    }
}

#[facade::cached_api(crate = self::facade, key = "{id}", ttl = "1m")]
fn by_path(id: u64) -> u64 {
    id
}

#[facade::cached_api(crate = "crate::nested::again", key = "{id}")]
async fn by_string(id: u64) -> u64 {
    id
}

fn main() {
    assert_eq!(by_path(1), 1);
    drop(by_string(2));
}
