"""What the worker changes in Faust's stock aiokafka driver: nothing but the table manager.

``TableManager`` is Faust's without its fixed 1 s sleep before the tables register (it waits in
case tables are added late; ours are all declared before the worker starts), so a restarted
worker starts recovering its tables at once.
"""

from __future__ import annotations

import asyncio

from faust.tables import TableManager as FaustTableManager

from instore.settings import Settings


class TableManager(FaustTableManager):  # type: ignore[misc]
    """Faust's table manager without the fixed 1 s sleep before the tables register."""

    async def on_start(self) -> None:
        await asyncio.sleep(0)
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def broker_url(settings: Settings) -> str:
    """Faust's broker URL for the configured bootstrap servers (the aiokafka driver)."""
    return ";".join(f"kafka://{h.strip()}" for h in settings.bootstrap_servers.split(","))
