#!/usr/bin/env bash
# Fetches the jars of a Kafka broker from Maven Central into .cache/kafka/<version>/lib, once.
#
# The tests start a single-node KRaft broker from these jars under the machine's Java 17
# (testing/harness/kafka.ts). The folder is reused when its `complete` stamp exists; a fetch that
# was interrupted leaves only a temporary folder, which the next run replaces. Prints the lib folder.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
target="${KAFKA_CACHE_DIR:-$root/.cache/kafka}/$version"

if [[ -f "$target/complete" ]]; then
  echo "$target/lib"
  exit 0
fi

command -v java >/dev/null || { echo "fetch.sh: java (17 or later) is required to run the broker" >&2; exit 1; }
command -v mvn >/dev/null || { echo "fetch.sh: mvn is required to fetch the broker's jars (apt-get install maven)" >&2; exit 1; }

mkdir -p "$(dirname "$target")"
staging="$(mktemp -d "$(dirname "$target")/.fetch-$version-XXXXXX")"
trap 'rm -rf "$staging"' EXIT
mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
  -DoutputDirectory="$staging/lib" >&2
count="$(find "$staging/lib" -name '*.jar' | wc -l)"
[[ "$count" -gt 10 ]] || { echo "fetch.sh: only $count jars fetched into $staging/lib" >&2; exit 1; }
touch "$staging/complete"
rm -rf "$target"
mv "$staging" "$target"
trap - EXIT
echo "$target/lib"
