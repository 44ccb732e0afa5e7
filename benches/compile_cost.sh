#!/usr/bin/env bash
# What an annotated handler costs to compile, against the `cached` crate's
# `#[cached]`: three generated crates of HANDLERS handlers (200 by default),
# each returning its own struct: plain, `#[cached(ttl_secs = 900)]` (which caches `Ok` only),
# and `#[cached_api(key = "p:{id}", user = user, ttl = "15m")]`. Dependencies
# are built first; then each crate's debug build from nothing, and its
# rebuild after a touch, are timed RUNS times (3 by default), interleaved, and the medians printed with
# each attribute's cost over the plain crate and the ratio of the two.
#
#   bash benches/compile_cost.sh            # from the repository's root
#
# Needs the network once, for `cached`'s proc-macro crate.
set -euo pipefail

handlers=${HANDLERS:-200}
runs=${RUNS:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat > "$work/Cargo.toml" <<EOF
[workspace]
members = ["plain", "peer", "ours"]
resolver = "3"

[workspace.dependencies]
serde = { version = "1", features = ["derive"] }
cached = { version = "4", features = ["async"] }
cached-api = { path = "$repo" }

[profile.dev.package."*"]
debug = false
EOF

generate() {
    local name=$1 deps=$2 attribute=$3
    mkdir -p "$work/$name/src"
    printf '[package]\nname = "%s"\nversion = "0.0.0"\nedition = "2024"\n\n[dependencies]\nserde.workspace = true\n%s\n' \
        "$name" "$deps" > "$work/$name/Cargo.toml"
    {
        for i in $(seq 1 "$handlers"); do
            cat <<EOF
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Profile$i {
    pub id: u64,
    pub user: u64,
    pub name: String,
}

$attribute
pub async fn handler_$i(user: u64, id: u64) -> Result<Profile$i, String> {
    Ok(Profile$i { id, user, name: format!("profile {id} of {user}") })
}

EOF
        done
    } > "$work/$name/src/lib.rs"
}

generate plain "" ""
generate peer "cached.workspace = true" "#[cached::proc_macro::cached(ttl_secs = 900)]"
generate ours "cached-api.workspace = true" '#[cached_api::cached_api(key = "p:{id}", user = user, ttl = "15m")]'

cd "$work"
echo "building the dependencies and each crate once..." >&2
cargo build --quiet --workspace

# Each build is of the whole workspace, so that every crate's dependencies
# keep the features the workspace unifies (a `-p` build of one crate would
# rebuild them with its own). `fresh`: the crate compiled from nothing (its
# artifacts and incremental state removed). `touched`: its lib.rs touched,
# which times rustc's incremental recheck of an unchanged crate (it reuses
# the code it generated before): the rebuild a service pays for an edit
# elsewhere.
build_time() {
    local start end
    start=$(date +%s.%N)
    cargo build --quiet --workspace
    end=$(date +%s.%N)
    calc "$end - $start"
}

fresh() {
    cargo clean --quiet -p "$1"
    build_time
}

touched() {
    touch "$1/src/lib.rs"
    build_time
}

calc() {
    awk "BEGIN { print $1 }"
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

declare -A times
for _ in $(seq 1 "$runs"); do
    for crate in plain peer ours; do
        times[fresh-$crate]+="$(fresh "$crate")"$'\n'
        times[touched-$crate]+="$(touched "$crate")"$'\n'
    done
done

report() {
    local mode=$1 plain peer ours peer_extra ours_extra
    plain=$(printf '%s' "${times[$mode-plain]}" | median)
    peer=$(printf '%s' "${times[$mode-peer]}" | median)
    ours=$(printf '%s' "${times[$mode-ours]}" | median)
    peer_extra=$(calc "$peer - $plain")
    ours_extra=$(calc "$ours - $plain")
    echo
    echo "$2 ($handlers handlers, median of $runs, dependencies built):"
    printf '| crate | build | over plain | per handler |\n|---|---|---|---|\n'
    printf '| plain | %.2f s | | |\n' "$plain"
    printf '| `cached` `#[cached]` | %.2f s | %.2f s | %.1f ms |\n' "$peer" "$peer_extra" "$(calc "$peer_extra * 1000 / $handlers")"
    printf '| `#[cached_api]` | %.2f s | %.2f s | %.1f ms |\n' "$ours" "$ours_extra" "$(calc "$ours_extra * 1000 / $handlers")"
    printf 'cached_api / cached, over plain: %.2fx\n' "$(calc "$ours_extra / $peer_extra")"
}

report fresh "Debug build from nothing"
report touched "Debug rebuild after a touch (incremental)"
