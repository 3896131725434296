#!/usr/bin/env bash
# Build the real Apicurio Registry 2.4.2.Final (Confluent-compatible API at /apis/ccompat/v7) from
# Maven Central into ${AEROGRID_CACHE:-~/.cache/aerogrid}/schema-registry/2.4.2.Final/.
#
# Why: the registry-format tests (Avro, Protobuf, JSON Schema) and `aerogrid broker up
# --schema-registry` need a real schema registry. Confluent's is not on Maven Central and Karapace is
# not on PyPI; Apicurio's application jar and all its dependencies are on Central, so the Maven
# project in scripts/schema_registry/ re-runs its Quarkus build (recipe and traps: FACTS.md).
#
# Output: <cache>/schema-registry/2.4.2.Final/app/apicurio-registry-runner.jar and its lib/ (a
# Quarkus "legacy-jar", the packaging the registry's own properties choose; run it with java -jar);
# that folder is printed as the last line of stdout, everything else goes to stderr.
# Idempotent: does nothing when the stamp exists; a half-finished run (no stamp) is redone.
# Exit 3: no java or mvn on PATH (the tests skip locally, fail under CI=true).
set -euo pipefail

VERSION="2.4.2.Final"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROJECT="$REPO_ROOT/scripts/schema_registry"
CACHE_ROOT="${AEROGRID_CACHE:-$HOME/.cache/aerogrid}"
HOME_DIR="$CACHE_ROOT/schema-registry/$VERSION"
APP="$HOME_DIR/app"
RUNNER="apicurio-registry-runner.jar"
STAMP="$HOME_DIR/.complete"
# The stamp names the recipe it was built from: a changed pom or properties rebuilds.
RECIPE="recipe $(cat "$PROJECT/pom.xml" "$PROJECT/application.properties" | sha256sum | cut -c1-16)"

if [[ -f "$STAMP" && -f "$APP/$RUNNER" ]] && grep -qxF "$RECIPE" "$STAMP"; then
    echo "$APP"
    exit 0
fi

for tool in java mvn; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build_schema_registry.sh: '$tool' not found on PATH (need a JDK 17+ and Maven)" >&2
        exit 3
    fi
done

mkdir -p "$HOME_DIR"
# Serialise concurrent runs (two test sessions, or make and a test, at once).
exec 9>"$HOME_DIR/.lock"
flock 9
if [[ -f "$STAMP" && -f "$APP/$RUNNER" ]] && grep -qxF "$RECIPE" "$STAMP"; then
    echo "$APP"
    exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aerogrid-schema-registry.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
cp "$PROJECT/pom.xml" "$WORK/pom.xml"
mkdir -p "$WORK/src/main/resources"
cp "$PROJECT/application.properties" "$WORK/src/main/resources/application.properties"

echo "build_schema_registry.sh: building Apicurio Registry $VERSION with Maven into $APP" >&2
started=$SECONDS
# Maven's own output goes to a log that is shown only when it fails.
if ! mvn -B -q -s "$PROJECT/settings.xml" -f "$WORK/pom.xml" -DskipTests package \
    >"$WORK/mvn.log" 2>&1; then
    tail -n 80 "$WORK/mvn.log" >&2
    echo "build_schema_registry.sh: the Maven build failed (log tail above)" >&2
    exit 1
fi
BUILT="$WORK/target/apicurio-registry-$VERSION-runner.jar"
if [[ ! -f "$BUILT" || ! -d "$WORK/target/lib" ]]; then
    echo "build_schema_registry.sh: Maven finished but $(basename "$BUILT") or lib/ is missing" >&2
    exit 1
fi

# The runner's manifest names its classpath relative to itself (lib/...), so the two move together.
rm -rf "$APP" "$APP.partial"
mkdir -p "$APP.partial"
mv "$BUILT" "$APP.partial/$RUNNER"
mv "$WORK/target/lib" "$APP.partial/lib"
mv "$APP.partial" "$APP"
printf 'apicurio-registry %s\n%s\nbuilt in %ss\n' "$VERSION" "$RECIPE" "$((SECONDS - started))" >"$STAMP"
echo "build_schema_registry.sh: built in $((SECONDS - started))s" >&2
echo "$APP"
