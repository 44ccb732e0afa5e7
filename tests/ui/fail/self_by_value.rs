use cached_api::cached_api;

struct Repo;

impl Repo {
    #[cached_api(key = "{id}")]
    fn get(self, id: u64) -> u64 {
        id
    }
}

fn main() {}
