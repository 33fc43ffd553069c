"""``python -m sie_mcp``: the MCP server (same flags as ``sie-agents mcp``)."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
