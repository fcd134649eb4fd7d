"""Payment's memory under a burst of payment-password checks (issue 13, part 3).

Starts payment alone as a process (`kami serve payment`, on the servers of
`KAMI_KAFKA_BOOTSTRAP` / `KAMI_MONGODB_URI`, in a namespace of its own), then
fires `--buyers` concurrent requests twice: each buyer sets a payment
password (an argon2id hash), then turns on password-free payments with it (a
check). A 429 is retried after its Retry-After, as a client would. Prints
the status counts, the wall time and payment's peak RSS (`VmHWM`).

    uv run python scripts/payment_password_burst.py --buyers 200
    uv run python scripts/payment_password_burst.py --buyers 200 \\
        --env KAMI_PAYMENT_ARGON2_TIME_COST=3 --env KAMI_PAYMENT_ARGON2_MEMORY_KIB=65536 \\
        --env KAMI_PAYMENT_ARGON2_PARALLELISM=4 --env KAMI_PAYMENT_PASSWORD_CHECKS_CONCURRENCY=8
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "local"))

from kami_events.catalogue.identity import Role
from kami_events.mongo import connect
from kami_local import Platform
from kami_web.testing import AuthKeys

PIN = "258036"


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


async def burst(
    client: httpx.AsyncClient, requests: list[tuple[str, dict[str, object], dict[str, str]]]
) -> tuple[collections.Counter[int], float]:
    """Send every request at once; retry each 429 after its Retry-After."""
    statuses: collections.Counter[int] = collections.Counter()

    async def one(path: str, body: dict[str, object], headers: dict[str, str]) -> None:
        while True:
            response = await client.put(path, json=body, headers=headers)
            statuses[response.status_code] += 1
            if response.status_code != 429:
                assert response.status_code in (200, 204), response.text
                return
            await asyncio.sleep(float(response.headers["retry-after"]))

    started = time.monotonic()
    await asyncio.gather(*(one(*r) for r in requests))
    return statuses, time.monotonic() - started


async def run(buyers: int, extra_env: dict[str, str]) -> None:
    keys = AuthKeys.generate()
    kafka = os.environ.get("KAMI_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    mongo = os.environ.get("KAMI_MONGODB_URI", "mongodb://127.0.0.1:27018/")
    home = tempfile.mkdtemp(prefix="kami-pwburst-")  # kept: payment's log is in it
    print(f"payment's home (log in logs/): {home}")
    if True:
        platform = Platform.isolated(
            kafka,
            mongo,
            home=Path(home),
            name="pwburst",
            extra_env={
                "KAMI_AUTH_PUBLIC_KEY": keys.public_key_pem,
                "KAMI_SERVICE_TOKEN_SECRET": keys.service_secret,
                **extra_env,
            },
        )
        platform.extra_env = {
            **platform.extra_env,
            "KAMI_PAYMENT_SIMULATOR_DATABASE": f"{platform.database_prefix}_paysim",
        }
        try:
            with platform.running(["payment"]):
                pid = platform.pid("payment")
                assert pid is not None
                peak_sampled = 0
                stop = threading.Event()

                def sample() -> None:
                    nonlocal peak_sampled
                    while not stop.wait(0.02):
                        peak_sampled = max(peak_sampled, rss_kib(pid, "VmRSS"))

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                idle = rss_kib(pid, "VmRSS")
                # No keep-alive: a connection idle through a Retry-After may be closed.
                limits = httpx.Limits(max_connections=buyers, max_keepalive_connections=0)
                async with httpx.AsyncClient(
                    base_url=platform.url("payment"), timeout=120, limits=limits
                ) as client:
                    tokens = {
                        f"burst-buyer-{n}": {
                            "Authorization": "Bearer "
                            + keys.user_token(f"burst-buyer-{n}", Role.BUYER)
                        }
                        for n in range(buyers)
                    }
                    set_pins, set_seconds = await burst(
                        client,
                        [
                            ("/wallet/payment-password", {"new_password": PIN}, h)
                            for h in tokens.values()
                        ],
                    )
                    checks, check_seconds = await burst(
                        client,
                        [
                            (
                                "/wallet/password-free",
                                {
                                    "enabled": True,
                                    "per_payment_limit": 2_000,
                                    "daily_cap": 5_000,
                                    "payment_password": PIN,
                                },
                                h,
                            )
                            for h in tokens.values()
                        ],
                    )
                    metrics = (await client.get("/metrics")).text
                stop.set()
                sampler.join()
                peak = rss_kib(pid, "VmHWM")
        finally:
            client_db = connect(mongo, app_name="kami-password-burst")
            for name in await client_db.list_database_names():
                if name.startswith(f"{platform.database_prefix}_"):
                    await client_db.drop_database(name)
            await client_db.close()
    rejected = [
        line
        for line in metrics.splitlines()
        if line.startswith("kami_payment_password_checks_rejected_total")
    ]
    print(f"buyers: {buyers}, extra env: {extra_env or 'none'}")
    print(f"set passwords (hash):     {dict(set_pins)} in {set_seconds:.2f} s")
    print(f"password-free on (check): {dict(checks)} in {check_seconds:.2f} s")
    print(
        f"payment RSS: idle {idle / 1024:.0f} MiB, sampled peak {peak_sampled / 1024:.0f} MiB, "
        f"VmHWM {peak / 1024:.0f} MiB"
    )
    print("\n".join(rejected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buyers", type=int, default=200)
    parser.add_argument("--env", action="append", default=[], help="KAMI_X=value for payment")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    asyncio.run(run(args.buyers, extra))


if __name__ == "__main__":
    main()
