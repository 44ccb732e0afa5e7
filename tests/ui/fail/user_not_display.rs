use cached_api::cached_api;

struct Account;

#[cached_api(key = "orders", user = account)]
fn orders(account: Account) -> u64 {
    let _ = account;
    1
}

fn main() {}
