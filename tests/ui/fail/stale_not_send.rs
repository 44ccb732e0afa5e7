use cached_api::cached_api;

#[cached_api(key = "{id}", ttl = 60, stale = 30)]
async fn get(id: u64) -> u64 {
    let counted = std::rc::Rc::new(id);
    std::future::ready(()).await;
    *counted
}

fn main() {}
