use cached_api::cached_api;

struct Page {
    number: u32,
}

#[cached_api(key = "p:{page.number}", ttl = "1m")]
fn get(page: Page) -> u32 {
    page.number
}

fn main() {}
