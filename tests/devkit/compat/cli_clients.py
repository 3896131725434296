"""The command-line clients under test: Debian's kcat and Apache Kafka's console tools.

Each runs as a child process bounded by `scenario.CALL_TIMEOUT`, so a client that hangs (as
the Java console consumer does against the embedded broker) costs seconds. A failure's reason
is one line taken from what the tool printed, with addresses and topic names replaced, so the
table stays the same from run to run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from compat.scenario import (
    CALL_TIMEOUT,
    ORDERS,
    ClientFailure,
    Record,
    Scenario,
    check_orders,
    expect,
    one_line,
    produced_by_client,
)
from support.brokers import KAFKA_VERSION, BrokerUnavailable, fetch_kafka, java_executable

#: librdkafka's log line: ``%4|<time>|FAIL|rdkafka#producer-1| [thrd:...]: <broker>: <what>``.
_LIBRDKAFKA_LOG = re.compile(r"^%\d\|[\d.]+\|\w+\|[^|]+\| \[[^\]]*\]: \S+: (.*?)(?: \(after .*)?$")
#: A Java exception's first line: ``org.apache.kafka.common.errors.TimeoutException: message``.
_JAVA_EXCEPTION = re.compile(r"^(?:[a-z]\w*\.)+([A-Z]\w*(?:Exception|Error))(?::\s*(.*))?$")


def _error(said: str) -> str:
    """The first error a tool reported: librdkafka's log line, or a Java exception's line."""
    for line in said.splitlines():
        if found := _LIBRDKAFKA_LOG.match(line.strip()):
            return found[1]
        if found := _JAVA_EXCEPTION.match(line.strip()):
            return f"{found[1]}: {found[2]}" if found[2] else found[1]
    return ""


def _reason(said: str, scenario: Scenario) -> str:
    """One stable line for what a tool said: its first error, else its last line."""
    line = one_line(_error(said) or said, scenario)
    return re.sub(r"\d+ ms", "N ms", line)


def _run(
    argv: Sequence[str], scenario: Scenario, what: str, stdin: str = "", *, reads: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a tool; raise ClientFailure when it reports an error, exits non-zero or times out.

    A tool that reports an error may exit or hang (closing a Kafka client can wait on the
    broker), so an error is reported the same either way; `reads`: the tool prints records,
    so the reason says how many it read first.
    """
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=CALL_TIMEOUT, check=False
        )
        out, err = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        out, err = (
            stream.decode(errors="replace") if isinstance(stream, bytes) else ""
            for stream in (exc.stdout, exc.stderr)
        )
        done = None
    read = f"read {len(out.splitlines())} records, then " if reads else ""
    if _error(err):
        raise ClientFailure(f"{what}: {read}{_reason(err, scenario)}")
    if done is None:
        raise ClientFailure(f"{what}: {read}no result within {CALL_TIMEOUT:.0f} s")
    if done.returncode != 0:
        raise ClientFailure(f"{what}: exit {done.returncode}: {_reason(err, scenario)}")
    return done


class Kcat:
    """kcat (Debian's: librdkafka 2.0.2), or the one AEROGRID_KCAT names."""

    name = "kcat"

    @staticmethod
    def binary() -> str | None:
        return os.environ.get("AEROGRID_KCAT") or shutil.which("kcat")

    def title(self) -> str:
        binary = self.binary()
        if binary is None:
            return "kcat (not installed)"
        said = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False).stdout
        found = re.search(r"Version (\S+) \(.*librdkafka (\S+)", said)
        return f"kcat {found[1]} (librdkafka {found[2]})" if found else "kcat"

    def unavailable_reason(self) -> str | None:
        if self.binary() is None:
            return "no kcat on PATH (make kcat, or set AEROGRID_KCAT)"
        return None

    def run(self, scenario: Scenario) -> None:
        kcat = [self.binary() or "kcat", "-b", scenario.bootstrap, "-X", "message.timeout.ms=5000"]
        lines = "".join(f"{key.decode()}\t{value.decode()}\n" for key, value in ORDERS)
        produce = [*kcat, "-P", "-t", scenario.produced, "-p", "0", "-K", "\t"]
        _run(produce, scenario, "produce", lines)
        produced_by_client(scenario)
        check_orders(self._consume(kcat, scenario, scenario.orders, len(ORDERS)), "consume orders")
        letters = scenario.dead_letters
        got = self._consume(kcat, scenario, scenario.dlq, len(letters))
        expect(got, letters, "dead-letter headers", headers=True)

    @staticmethod
    def _consume(kcat: list[str], scenario: Scenario, topic: str, count: int) -> list[Record]:
        argv = [*kcat, "-C", "-t", topic, "-p", "0", "-e", "-J"]
        argv += ["-o", "beginning", "-c", str(count)]
        done = _run(argv, scenario, "consume", reads=True)
        got = []
        for line in done.stdout.splitlines():
            message = json.loads(line)
            pairs = message.get("headers") or []
            headers = tuple(
                (pairs[i], (pairs[i + 1] or "").encode()) for i in range(0, len(pairs), 2)
            )
            key, value = message.get("key"), message.get("payload")
            got.append(Record(key and key.encode(), value and value.encode(), headers))
        return got


#: The console tools' JVM: a short-lived one starts fastest with C1 only and the serial GC.
_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m", "-XX:-UsePerfData")
#: The tools' log: errors only, on standard error (standard output is what they read).
_LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="error">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR"><PatternLayout pattern="%p %m%n"/></Console>
  </Appenders>
  <Loggers><Root level="ERROR"><AppenderRef ref="stderr"/></Root></Loggers>
</Configuration>
"""
#: Separators that never occur in the orders or the dead letters.
_KEY_SEPARATOR, _HEADERS_SEPARATOR = "\x1f", "\x1e"


class KafkaTool:
    """One of Apache Kafka's command-line tools, run from the jars fetch_kafka.sh caches."""

    name: str
    main_class: str

    def title(self) -> str:
        return f"Apache Kafka {KAFKA_VERSION} {self.name}"

    def unavailable_reason(self) -> str | None:
        if java_executable() is None:
            return "the Kafka tools need Java 17+: no `java` on PATH or in JAVA_HOME"
        try:
            fetch_kafka(jars="tools")
        except BrokerUnavailable as exc:
            return str(exc)
        return None

    def tool(
        self, scenario: Scenario, what: str, *args: str, stdin: str = "", reads: bool = False
    ) -> str:
        """Run the tool with `args` (its log on standard error); its standard output."""
        java = java_executable() or "java"
        classpath = str(Path(fetch_kafka(jars="tools")) / "*")
        with tempfile.TemporaryDirectory(prefix="aerogrid-compat-") as folder:
            log_config = Path(folder) / "log4j2.xml"
            log_config.write_text(_LOG4J2_XML)
            argv = [
                *(java, *_JVM_OPTIONS, f"-Dlog4j2.configurationFile={log_config}"),
                *("-cp", classpath, self.main_class, *args),
            ]
            return _run(argv, scenario, what, stdin, reads=reads).stdout


class ConsoleProducer(KafkaTool):
    """kafka-console-producer: one order a line, key and value split by a tab."""

    name = "console producer"
    main_class = "org.apache.kafka.tools.ConsoleProducer"

    def run(self, scenario: Scenario) -> None:
        lines = "".join(f"{key.decode()}\t{value.decode()}\n" for key, value in ORDERS)
        self.tool(
            scenario,
            "produce",
            *("--bootstrap-server", scenario.bootstrap, "--topic", scenario.produced),
            *("--reader-property", "parse.key=true", "--max-block-ms", "5000"),
            *("--command-property", "delivery.timeout.ms=5000"),
            *("--command-property", "request.timeout.ms=4000"),
            stdin=lines,
        )
        produced_by_client(scenario)


class ConsoleConsumer(KafkaTool):
    """kafka-console-consumer: the orders and the dead letters with their headers, in one run."""

    name = "console consumer"
    main_class = "org.apache.kafka.tools.consumer.ConsoleConsumer"

    def run(self, scenario: Scenario) -> None:
        letters = scenario.dead_letters
        count = len(ORDERS) + len(letters)
        topics = "|".join(re.escape(topic) for topic in (scenario.orders, scenario.dlq))
        out = self.tool(
            scenario,
            "consume orders and dead letters",
            *("--bootstrap-server", scenario.bootstrap, "--include", f"({topics})"),
            *("--from-beginning", "--max-messages", str(count), "--timeout-ms", "5000"),
            *("--formatter-property", "print.key=true"),
            *("--formatter-property", "print.headers=true"),
            *("--formatter-property", f"key.separator={_KEY_SEPARATOR}"),
            *("--formatter-property", f"headers.separator={_HEADERS_SEPARATOR}"),
            reads=True,
        )
        # Not splitlines(): it splits at the separators too.
        got = [self._record(line) for line in out.split("\n") if _KEY_SEPARATOR in line]
        want = [Record(key, value) for key, value in ORDERS] + list(letters)
        expect(got, want, "consume orders and dead-letter headers", headers=True)

    @staticmethod
    def _record(line: str) -> Record:
        headers_text, key, value = line.split(_KEY_SEPARATOR, 2)
        headers: tuple[tuple[str, bytes], ...] = ()
        if headers_text != "NO_HEADERS":
            pairs = (pair.split(":", 1) for pair in headers_text.split(_HEADERS_SEPARATOR))
            headers = tuple((name, text.encode()) for name, text in pairs)
        return Record(key.encode(), value.encode(), headers)


class ConsumerGroupsTool(KafkaTool):
    """kafka-consumer-groups --describe: the committed offset and the lag of the orders' group."""

    name = "consumer-groups tool"
    main_class = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"

    def run(self, scenario: Scenario) -> None:
        out = self.tool(
            scenario,
            "describe the group",
            *("--bootstrap-server", scenario.bootstrap, "--describe", "--group", scenario.group),
            *("--timeout", "5000"),
        )
        rows = [line.split() for line in out.splitlines()]
        header = next((row for row in rows if "LAG" in row), None)
        mine = [row for row in rows if scenario.orders in row]
        if header is None or len(mine) != 1:
            raise ClientFailure("describe the group: no row for the orders' partition")
        row = dict(zip(header, mine[0], strict=False))
        offset, end, lag = row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"]
        n = len(ORDERS)
        if lag.lstrip("-").isdigit() and int(lag) < 0:
            raise ClientFailure(
                f"negative lag: LOG-END-OFFSET {end} after {n} records in one batch, LAG {lag}"
            )
        if (offset, end, lag) != (str(n), str(n), "0"):
            raise ClientFailure(
                f"CURRENT-OFFSET {offset}, LOG-END-OFFSET {end}, LAG {lag}; expected {n}, {n}, 0"
            )
