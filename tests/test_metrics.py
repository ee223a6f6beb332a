"""Prometheus metrics added up over every worker: real processes, real signals."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import threading
from typing import Any

import pytest
from support import Service, http_get

from sprockets_http import app

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import parser  # noqa: E402
from prometheus_client.openmetrics import parser as openmetrics_parser  # noqa: E402

from sprockets_http import metrics  # noqa: E402

FACTORY = "tests.apps.observe_app:make_app"
HELLO = "tests.apps.observe_app.Hello"


def start(services: type[Service], **env: str) -> tuple[Service, int]:
    service = services(
        ["-m", "sprockets_http", "--procs", "2", FACTORY],
        env={"SHUTDOWN_LIMIT": "2", **env},
    )
    service.wait_for("all 2 workers ready")
    return service, service.wait_serving()


def scrape(port: int, accept: str | None = None) -> dict[tuple[str, Any], float]:
    """Every sample of one scrape: (name, sorted labels) to value."""
    status, _, body = http_get(port, "/metrics", {"Accept": accept} if accept else None)
    assert status == 200, body
    samples = {}
    for family in parser.text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict[tuple[str, Any], float], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


def hello_count(port: int) -> float:
    return total(scrape(port), "http_requests_total", handler=HELLO)


def send_hellos(port: int, at_least: int) -> tuple[int, set[int]]:
    """GET / until both workers answered and ``at_least`` were sent."""
    pids: set[int] = set()
    sent = 0
    while sent < at_least or (len(pids) < 2 and sent < 400):
        status, _, body = http_get(port, "/")
        assert status == 200
        pids.add(json.loads(body)["pid"])
        sent += 1
    assert len(pids) == 2, "one worker answered every request"
    return sent, pids


def wait_exact(port: int, expected: int) -> None:
    """Scrape until the count is exact (a worker records a request right after
    answering it), then require it to stay so."""
    for _ in range(100):
        if hello_count(port) == expected:
            break
    assert [hello_count(port) for _ in range(10)] == [expected] * 10


def test_the_scrape_counts_exactly_the_requests_of_both_workers_through_restarts(
    services: type[Service],
) -> None:
    service, port = start(services)
    sent, first_workers = send_hellos(port, 30)
    wait_exact(port, sent)
    samples = scrape(port)
    route = {"handler": HELLO, "route": "/"}
    assert total(samples, "http_request_duration_seconds_count", **route) == sent
    assert total(samples, "http_response_size_bytes_count", **route) == sent
    assert total(samples, "http_requests_total", handler=HELLO, status="200") == sent
    assert total(samples, "observe_hellos_total") == sent  # the application's own
    # One series per worker process, named by pid.
    assert len([k for k in samples if k[0] == "process_resident_memory_bytes"]) == 2

    # Scrapes keep answering the same exact count while workers come and go.
    seen: list[float | str] = []
    stop_scraping = threading.Event()

    def keep_scraping() -> None:
        while not stop_scraping.is_set():
            try:
                seen.append(hello_count(port))
            except OSError as error:  # the killed worker's connection
                seen.append(type(error).__name__)

    scraper = threading.Thread(target=keep_scraping, daemon=True)
    scraper.start()
    try:
        mark = len(service.lines)
        service.send(signal.SIGHUP)
        for pid in first_workers:
            service.wait_for(rf"worker {pid} exited", start=mark)
        _, _, body = http_get(port, "/")
        sent += 1
        victim = json.loads(body)["pid"]
        wait_exact(port, sent)  # the victim's last request is counted
        mark = len(service.lines)
        os.kill(victim, signal.SIGKILL)
        replacement = service.wait_for(
            rf"worker (\d+) started in place of worker {victim}", start=mark
        ).group(1)
        service.wait_for(rf"worker {replacement} ready", start=mark)
    finally:
        stop_scraping.set()
        scraper.join(10)
    answered = [value for value in seen if not isinstance(value, str)]
    assert len(answered) >= 5
    assert set(answered) <= {sent - 1, sent}, collections.Counter(seen)
    assert len(seen) - len(answered) <= 2, collections.Counter(seen)

    more, _ = send_hellos(port, 10)
    wait_exact(port, sent + more)
    samples = scrape(port)
    assert total(samples, "observe_hellos_total") == sent + more
    events = {
        (name.split("_")[3], dict(labels)["cause"]): value
        for (name, labels), value in samples.items()
        if name.startswith("sprockets_http_worker_")
    }
    assert events == {
        ("starts", "start"): 2,
        ("starts", "replaced"): 2,  # by SIGHUP
        ("starts", "crashed"): 1,
        ("replacements", "replaced"): 2,
        ("replacements", "crashed"): 1,
        ("exits", "replaced"): 2,
        ("exits", "crashed"): 1,
    }
    # The scrape itself; a worker counts a request out right after answering
    # it, so the previous scrape may still be in.
    in_flight = [total(scrape(port), "http_requests_in_flight") for _ in range(20)]
    assert set(in_flight) <= {1, 2} and 1 in in_flight, in_flight
    service.send(signal.SIGTERM)
    assert service.wait() == 0


def test_openmetrics_when_asked_and_the_directory_goes_with_the_service(
    services: type[Service],
) -> None:
    service, port = start(services)
    directory = service.wait_for(r'metrics of every process are kept in ([^\s"]+)')[1]
    assert directory != os.environ[metrics.DIRECTORY_VARIABLE]  # not this test's
    assert os.path.isdir(directory)
    wait_exact(port, send_hellos(port, 2)[0])
    status, headers, body = http_get(
        port, "/metrics", {"Accept": "application/openmetrics-text"}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    # Well-formed, and the same values as the text format.
    openmetrics = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in openmetrics_parser.text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name.startswith("http_request_duration")
        and sample.labels.get("handler") == HELLO
    }
    text = scrape(port)
    assert openmetrics and all(text[key] == value for key, value in openmetrics.items())
    service.send(signal.SIGTERM)
    assert service.wait() == 0
    assert not os.path.exists(directory)
    # Scrapes are logged at DEBUG, below the service's INFO.
    assert "/metrics" not in service.output


def test_the_directory_of_a_killed_service_goes_when_another_starts(
    services: type[Service],
) -> None:
    killed, _ = start(services)
    directory = killed.wait_for(r'metrics of every process are kept in ([^\s"]+)')[1]
    killed.kill_group()  # SIGKILL: nothing runs to remove it
    assert os.path.isdir(directory)
    start(services)
    assert not os.path.exists(directory)


def test_a_directory_of_your_own_is_emptied_at_start_and_kept(
    services: type[Service], tmp_path: Any
) -> None:
    stale = prometheus_client.mmap_dict.MmapedDict(str(tmp_path / "counter_999999.db"))
    key = prometheus_client.mmap_dict.mmap_key(
        "http_requests",
        "http_requests_total",
        ["handler"],
        [HELLO],
        "",
    )
    stale.write_value(key, 1000.0, 0.0)
    stale.close()
    service, port = start(services, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    sent, _ = send_hellos(port, 4)
    wait_exact(port, sent)
    service.send(signal.SIGTERM)
    assert service.wait() == 0
    assert tmp_path.is_dir()
    assert not (tmp_path / "counter_999999.db").exists()


def test_a_second_mount_fails_naming_both_paths() -> None:
    with pytest.raises(ValueError, match=re.escape("on '/metrics' and '/m2'")):
        app.Application(
            [("/metrics", metrics.MetricsHandler), ("/m2", metrics.MetricsHandler)]
        )
    application = app.Application([("/metrics", metrics.MetricsHandler)])
    with pytest.raises(ValueError, match="more than once"):
        application.add_handlers(r"admin\.example", [("/m", metrics.MetricsHandler)])


def test_a_metric_named_like_ours_fails_naming_it() -> None:
    with pytest.raises(ValueError, match="http_requests_total"):
        prometheus_client.Counter("http_requests", "mine")


def test_the_files_add_up_as_prometheus_clients_own_collector_adds_them(
    tmp_path: Any,
) -> None:
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector

    from sprockets_http import _metricfiles

    def write(name: str, entries: list[tuple[str, str, dict[str, str], float]]) -> None:
        file = MmapedDict(str(tmp_path / name))
        for metric, sample, labels, value in entries:
            key = mmap_key(metric, sample, list(labels), list(labels.values()), "h")
            file.write_value(key, value, float(len(name)))  # distinct timestamps
        file.close()

    for pid, scale in [("11", 1.0), ("12", 2.0), ("13-http", 5.0)]:
        write(f"counter_{pid}.db", [("c", "c_total", {"a": "x"}, scale)])
        write(
            f"histogram_{pid}.db",
            [
                ("h", "h_bucket", {"a": "x", "le": "0.1"}, scale),
                ("h", "h_bucket", {"a": "x", "le": "1.0"}, 3.0),
                ("h", "h_bucket", {"a": "x", "le": "+Inf"}, 1.0),
                ("h", "h_sum", {"a": "x"}, 7.5 * scale),
            ],
        )
        write(f"summary_{pid}.db", [("s", "s_count", {}, scale), ("s", "s_sum", {}, 9)])
        for mode in ("liveall", "livesum", "max", "min", "mostrecent"):
            write(f"gauge_{mode}_{pid}.db", [(f"g_{mode}", f"g_{mode}", {}, scale)])
    (tmp_path / "counter_14.db").touch()  # a process creating its file

    def samples(metrics_: Any) -> set[tuple[str, str, tuple[Any, ...], float]]:
        return {
            (m.name, s.name, tuple(sorted(s.labels.items())), s.value)
            for m in metrics_
            for s in m.samples
        }

    ours = samples(_metricfiles.collect(str(tmp_path)))
    (tmp_path / "counter_14.db").unlink()  # the library's fails on it
    theirs = samples(MultiProcessCollector(None, path=str(tmp_path)).collect())
    assert ours == theirs
    assert ("c", "c_total", (("a", "x"),), 8.0) in ours


def test_a_key_this_process_made_is_known_as_its_text_says() -> None:
    from sprockets_http import _metricfiles

    # Labels in another order than the key's, which sorts them by name.
    labels = {"method": "GET", "handler": "a.B", "route": "/x", "status": "200"}
    key = metrics._key(metrics._REQUESTS, metrics._REQUESTS + "_total", labels)
    metric, sample, parsed_labels, help_text = json.loads(key)
    # What a scrape takes the key to hold, parsed or not, is what it says.
    assert _metricfiles._parse(key) == (
        metric,
        sample,
        tuple(parsed_labels.items()),
        help_text,
    )
    assert dict(_metricfiles._parse(key)[2]) == labels


def test_a_value_file_is_read_by_prometheus_client_and_continued(
    tmp_path: Any,
) -> None:
    from prometheus_client.mmap_dict import MmapedDict

    from sprockets_http import _metricfiles

    path = str(tmp_path / "counter_7.db")
    written = _metricfiles.ValueFile(path)
    places = {}
    for n in range(3000):  # past the first 64 KiB
        key = f'["m", "m_total", {{"n": "{n}"}}, "help"]'
        places[key] = written.place(key)[0]
        written.write(places[key], float(n))
    written.close()
    read = {
        key: value for key, value, _, _ in MmapedDict.read_all_values_from_file(path)
    }
    assert read == {key: float(n) for n, key in enumerate(places)}
    again = _metricfiles.ValueFile(path)  # a new process with the same pid
    assert again.place(key) == (places[key], 2999.0)
    again.close()
