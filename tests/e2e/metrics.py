"""Reading every service's `/metrics` the way Prometheus does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kami_local import Platform

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """One scrape of one service: sample name and labels -> value."""

    samples: dict[tuple[str, Labels], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(samples)

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def series(self, name: str, **labels: str) -> dict[Labels, float]:
        wanted = set(labels.items())
        return {ls: v for (n, ls), v in self.samples.items() if n == name and wanted <= ls}


async def scrape(platform: Platform, service: str) -> Scrape:
    async with httpx.AsyncClient(base_url=platform.url(service), timeout=10) as client:
        response = await client.get("/metrics")
    response.raise_for_status()
    return Scrape.parse(response.text)


async def scrape_all(platform: Platform, services: Iterable[str]) -> dict[str, Scrape]:
    names = list(services)
    scrapes = await asyncio.gather(*(scrape(platform, name) for name in names))
    return dict(zip(names, scrapes, strict=True))


async def until_metrics(
    platform: Platform,
    services: Iterable[str],
    check: Callable[[dict[str, Scrape]], list[str]],
    *,
    timeout: float = 30.0,
) -> dict[str, Scrape]:
    """Scrape until `check` finds no mismatch (gauges refresh every second in the e2e run)."""
    names = list(services)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        scrapes = await scrape_all(platform, names)
        mismatches = check(scrapes)
        if not mismatches:
            return scrapes
        if loop.time() > deadline:
            raise AssertionError("metrics never matched:\n" + "\n".join(mismatches))
        await asyncio.sleep(0.5)
