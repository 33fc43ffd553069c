"""Ray stays out of every package but sie_ray's Ray modules, and out of the command line until `ray serve` runs."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_packages_and_building_the_cli_never_imports_ray() -> None:
    code = (
        "import sys\n"
        "import sie_core, sie_mcp, sie_server, sie_ray, sie_ray.cli, sie_ray.settings\n"
        "import sie_server.app, sie_server.serve, sie_mcp.server\n"
        "from sie_core.cli import build_parser\n"
        "parser, _ = build_parser()\n"
        "parser.parse_args(['ray', 'serve', '--replicas', '2', '--num-gpus', '0.5'])\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout
