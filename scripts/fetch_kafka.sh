#!/usr/bin/env bash
# Fetch a real Apache Kafka broker (KRaft, broker + controller in one JVM) from Maven Central.
#
# Why: the test suite and the benchmarks need a real broker for what the embedded broker (Tansu)
# lacks (transactions, idempotence, compaction, correct end offsets). Kafka ships as plain jars on
# Maven Central, so no tarball download from outside the package registries is needed.
#
# Puts org.apache.kafka:kafka_2.13 with all its runtime dependencies, plus the log4j2 binding for
# slf4j (without it the broker logs nothing), into ~/.cache/aerogrid/kafka/<version>/libs/.
# The Maven repository is the default ~/.m2.
#
# `fetch_kafka.sh tools` fetches org.apache.kafka:kafka-tools instead (the console producer and
# consumer, the consumer-groups tool; run by the broker compatibility suite, tests/devkit/compat)
# into ~/.cache/aerogrid/kafka/<version>/tools/, a classpath of its own beside the broker's.
#
# Idempotent: does nothing when the stamp file exists; a half-finished run (no stamp) is redone.
# The libs directory is printed as the last line of stdout; everything else goes to stderr.
#
# Environment: AEROGRID_KAFKA_VERSION (default 4.4.0), AEROGRID_CACHE (default ~/.cache/aerogrid).
set -euo pipefail

KAFKA_VERSION="${AEROGRID_KAFKA_VERSION:-4.4.0}"
# Kafka 4.4.0 itself depends on log4j-core/log4j-api 2.25.5 and slf4j-api 1.7.36, so the binding is
# log4j-slf4j-impl (slf4j 1.x); log4j-slf4j2-impl would not bind to slf4j-api 1.7.
LOG4J_VERSION="${AEROGRID_LOG4J_VERSION:-2.25.5}"
DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

CACHE_ROOT="${AEROGRID_CACHE:-$HOME/.cache/aerogrid}"
KAFKA_HOME="$CACHE_ROOT/kafka/$KAFKA_VERSION"
case "${1:-broker}" in
    broker) ARTIFACT=kafka_2.13; LIBS="$KAFKA_HOME/libs"; STAMP="$KAFKA_HOME/.complete" ;;
    tools) ARTIFACT=kafka-tools; LIBS="$KAFKA_HOME/tools"; STAMP="$KAFKA_HOME/.tools-complete" ;;
    *) echo "fetch_kafka.sh: unknown set '$1' (broker or tools)" >&2; exit 2 ;;
esac

if [[ -f "$STAMP" && -d "$LIBS" ]]; then
    echo "$LIBS"
    exit 0
fi

for tool in java mvn; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "fetch_kafka.sh: '$tool' not found on PATH (need a JDK 17+ and Maven)" >&2
        exit 3
    fi
done

mkdir -p "$KAFKA_HOME"

# Serialise concurrent runs (two test sessions starting at once) when flock is available.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$KAFKA_HOME/.lock"
    flock 9
    if [[ -f "$STAMP" && -d "$LIBS" ]]; then
        echo "$LIBS"
        exit 0
    fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aerogrid-fetch-kafka.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

cat >"$WORK/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.aerogrid.testbed</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>$ARTIFACT</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF

PARTIAL="$LIBS.partial"
rm -rf "$LIBS" "$PARTIAL"
echo "fetch_kafka.sh: resolving $ARTIFACT $KAFKA_VERSION with Maven into $LIBS" >&2
# Maven's own output goes to a log that is shown only when it fails.
if ! mvn -B -q -f "$WORK/pom.xml" \
    "$DEPENDENCY_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime \
    -DoutputDirectory="$PARTIAL" >"$WORK/mvn.log" 2>&1; then
    cat "$WORK/mvn.log" >&2
    echo "fetch_kafka.sh: Maven could not resolve $ARTIFACT $KAFKA_VERSION (log above)" >&2
    exit 1
fi

if ! ls "$PARTIAL/$ARTIFACT-$KAFKA_VERSION.jar" >/dev/null 2>&1; then
    echo "fetch_kafka.sh: Maven finished but $ARTIFACT-$KAFKA_VERSION.jar is missing" >&2
    exit 1
fi

mv "$PARTIAL" "$LIBS"
printf '%s %s\nlog4j %s\n' "$ARTIFACT" "$KAFKA_VERSION" "$LOG4J_VERSION" >"$STAMP"
echo "$LIBS"
