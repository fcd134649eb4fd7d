"""Fresh secrets for a Kami deployment: signing keys, encryption keys, gateway secrets.

    uv run python deploy/local/kami_secrets.py env > deploy/kami-secrets.env    # docker compose
    uv run python deploy/local/kami_secrets.py kubernetes --name kami-secrets \\
        | kubectl apply -n kami -f -                                       # the Helm chart

The same keys as the local platform generates (deploy/local/kami_local.py);
each run makes new ones. Keep them: a lost KAMI_INVENTORY_MASTER_KEY loses
every card key in stock, a lost KAMI_DELIVERY_VAULT_KEY every buyer's vault.
Real payment gateways give their own secrets: replace KAMI_PAYMENT_* with them.
"""

from __future__ import annotations

import argparse
import json
import sys

from kami_local import generate_secrets


def env_file(values: dict[str, str]) -> str:
    """KEY="value" lines; newlines (PEM keys) escaped as \\n inside double quotes,
    which docker compose's env_file reads back."""
    lines = []
    for key, value in sorted(values.items()):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"


def kubernetes_secret(values: dict[str, str], name: str) -> str:
    """A Secret manifest (JSON is YAML) for `kubectl apply -f -`."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "kami"}},
        "type": "Opaque",
        "stringData": dict(sorted(values.items())),
    }
    return json.dumps(manifest, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate secrets for a Kami deployment.")
    commands = parser.add_subparsers(dest="format", required=True)
    commands.add_parser("env", help="an env file for docker compose")
    kube = commands.add_parser("kubernetes", help="a Kubernetes Secret manifest")
    kube.add_argument("--name", default="kami-secrets")
    args = parser.parse_args(argv)
    values = generate_secrets()
    if args.format == "env":
        sys.stdout.write(env_file(values))
    else:
        sys.stdout.write(kubernetes_secret(values, args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
